"""System checks: the fleet's PostgreSQL connections fit the server.

The formula is the README's ("Sizing database connections"). Every process that queries holds
at most ``DB_POOL_SIZE + DB_MAX_OVERFLOW`` connections (its pool's max_size). Those processes
are each gunicorn worker, and on each worker machine the qcluster's workers plus its sentinel,
monitor and pusher. The fleet's total must fit under the server's ``max_connections`` less the
slots PostgreSQL keeps for superusers.

The check asks the server (``SHOW max_connections``), so it is a database check: it runs with
``manage.py check --database default`` and before ``manage.py migrate``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)

# Processes of one `manage.py qcluster` that query besides its workers: the sentinel (it runs the
# scheduler), the monitor (it saves results) and the pusher (it polls the ORM broker; counted with
# the Redis broker too, which makes the sum an upper bound). The cluster's main process and
# gunicorn's arbiter never query.
QCLUSTER_PROCESSES_BESIDES_WORKERS = 3
# PostgreSQL's default superuser_reserved_connections, assumed when the server cannot be asked.
DEFAULT_RESERVED = 3


@dataclass(frozen=True)
class Fleet:
    web_machines: int
    web_workers: int  # gunicorn workers per web machine (WEB_CONCURRENCY)
    worker_machines: int
    queue_workers: int  # qcluster workers per worker machine (PHOTO_QUEUE_WORKERS)
    pool_size: int  # DB_POOL_SIZE
    max_overflow: int  # DB_MAX_OVERFLOW

    @property
    def per_process(self) -> int:
        return self.pool_size + self.max_overflow

    @property
    def processes(self) -> int:
        return self.web_machines * self.web_workers + self.worker_machines * (
            self.queue_workers + QCLUSTER_PROCESSES_BESIDES_WORKERS
        )

    @property
    def connections(self) -> int:
        return self.processes * self.per_process

    def formula(self) -> str:
        return (
            f"(WEB_MACHINES {self.web_machines} x WEB_CONCURRENCY {self.web_workers}"
            f" + WORKER_MACHINES {self.worker_machines} x (PHOTO_QUEUE_WORKERS"
            f" {self.queue_workers} + {QCLUSTER_PROCESSES_BESIDES_WORKERS}))"
            f" x (DB_POOL_SIZE {self.pool_size} + DB_MAX_OVERFLOW {self.max_overflow})"
            f" = {self.processes} x {self.per_process} = {self.connections}"
        )


@dataclass(frozen=True)
class ServerLimit:
    max_connections: int
    reserved: int  # superuser_reserved_connections (+ reserved_connections on PostgreSQL 16+)
    source: str  # where max_connections came from, for the message

    @property
    def usable(self) -> int:
        return self.max_connections - self.reserved


def fleet_from_settings() -> Fleet:
    return Fleet(
        web_machines=settings.WEB_MACHINES,
        web_workers=settings.WEB_CONCURRENCY,
        worker_machines=settings.WORKER_MACHINES,
        queue_workers=settings.PHOTO_QUEUE_WORKERS,
        pool_size=settings.DB_POOL_SIZE,
        max_overflow=settings.DB_MAX_OVERFLOW,
    )


def server_limit(alias: str = "default") -> ServerLimit:
    """The server's connection limit, or DB_MAX_CONNECTIONS when the server cannot be asked."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SHOW max_connections")
            max_connections = int(cursor.fetchone()[0])
            # current_setting(..., true) is NULL rather than an error for a setting this server
            # version lacks (reserved_connections is PostgreSQL 16+), so no transaction aborts.
            cursor.execute(
                "SELECT current_setting('superuser_reserved_connections')::int"
                " + coalesce(current_setting('reserved_connections', true), '0')::int"
            )
            reserved = int(cursor.fetchone()[0])
    except DatabaseError as exc:
        logger.warning("cannot read max_connections (%s); using DB_MAX_CONNECTIONS", exc)
        return ServerLimit(
            max_connections=settings.DB_MAX_CONNECTIONS,
            reserved=DEFAULT_RESERVED,
            source="DB_MAX_CONNECTIONS (the server could not be asked)",
        )
    return ServerLimit(max_connections=max_connections, reserved=reserved, source="the server")


def connections_fit(fleet: Fleet, limit: ServerLimit) -> list[CheckMessage]:
    if fleet.connections <= limit.usable:
        return []
    remedies = "run fewer processes against this server, or raise its max_connections"
    if fleet.per_process > 2:
        remedies = (
            "lower DB_POOL_SIZE and DB_MAX_OVERFLOW (0 and 2 serve a sync web worker, and a task "
            "with its heartbeat), " + remedies
        )
    return [
        CheckWarning(
            f"The fleet can open {fleet.connections} PostgreSQL connections, more than the "
            f"{limit.usable} the server accepts (max_connections {limit.max_connections} from "
            f"{limit.source}, less {limit.reserved} reserved for superusers).",
            hint=(
                f"Connections = {fleet.formula()}. To fit: {remedies}; see README, "
                "'Sizing database connections'."
            ),
            id="core.W001",
        )
    ]


@register(Tags.database)
def check_database_connections_fit(
    app_configs: Any = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    # Like Django's own database checks: only when asked for this database (check --database,
    # migrate), since it opens a connection.
    if not databases or "default" not in databases:
        return []
    if connections["default"].vendor != "postgresql":
        return []  # SQLite has no connection limit to share
    return connections_fit(fleet_from_settings(), server_limit("default"))
