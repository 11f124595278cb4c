"""The system check that compares the fleet's PostgreSQL connections with the server's limit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from django.db import connection

from core.checks import Fleet, ServerLimit, check_database_connections_fit, connections_fit
from tests.conftest import ROOT

# The fleet of issue 9: 2 web machines with 4 gunicorn workers, 2 worker machines with 3 workers.
ISSUE_FLEET = {"web_machines": 2, "web_workers": 4, "worker_machines": 2, "queue_workers": 3}
ISSUE_FLEET_ENV = {
    "WEB_MACHINES": "2",
    "WEB_CONCURRENCY": "4",
    "WORKER_MACHINES": "2",
    "PHOTO_QUEUE_WORKERS": "3",
}
POSTGRES_DEFAULT = ServerLimit(max_connections=100, reserved=3, source="the server")


def test_the_issue_fleet_fits_postgres_defaults_with_the_pool_defaults():
    fleet = Fleet(**ISSUE_FLEET, pool_size=0, max_overflow=2)

    assert fleet.connections == (2 * 4 + 2 * (3 + 3)) * 2 == 40
    assert connections_fit(fleet, POSTGRES_DEFAULT) == []


def test_the_issue_fleet_on_the_old_pool_defaults_is_warned_about_with_its_numbers():
    fleet = Fleet(**ISSUE_FLEET, pool_size=20, max_overflow=50)

    [warning] = connections_fit(fleet, POSTGRES_DEFAULT)

    assert warning.id == "core.W001"
    assert "1400" in warning.msg and "97" in warning.msg and "max_connections 100" in warning.msg
    assert "WEB_MACHINES 2 x WEB_CONCURRENCY 4" in warning.hint
    assert "DB_POOL_SIZE 20 + DB_MAX_OVERFLOW 50" in warning.hint
    assert "= 20 x 70 = 1400" in warning.hint


def test_a_fleet_that_needs_exactly_the_usable_slots_fits_and_one_more_does_not():
    limit = ServerLimit(max_connections=43, reserved=3, source="the server")

    assert connections_fit(Fleet(**ISSUE_FLEET, pool_size=0, max_overflow=2), limit) == []
    tighter = ServerLimit(max_connections=42, reserved=3, source="the server")
    assert len(connections_fit(Fleet(**ISSUE_FLEET, pool_size=0, max_overflow=2), tighter)) == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage_check(**env: str) -> subprocess.CompletedProcess:
    """`manage.py check --database default` with the production settings and only these
    variables (none of the test settings' pool sizes)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "DJANGO_", "DB_", "PHOTO_", "WEB_"))
        and not k.startswith("WORKER_")
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("pool", "warned"),
    [({}, False), ({"DB_POOL_SIZE": "20", "DB_MAX_OVERFLOW": "50"}, True)],
    ids=["default pools", "old pools 20+50"],
)
def test_manage_check_falls_back_to_db_max_connections_when_the_server_cannot_be_asked(
    pool: dict[str, str], warned: bool
):
    done = manage_check(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed_port()}/findme",
        DB_POOL_TIMEOUT="1",
        DB_MAX_CONNECTIONS="100",
        **ISSUE_FLEET_ENV,
        **pool,
    )

    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert ("core.W001" in output) is warned, output
    if warned:
        assert "max_connections 100 from DB_MAX_CONNECTIONS" in output
        assert "= 20 x 70 = 1400" in output


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_check_reads_max_connections_from_the_server(settings):
    if connection.vendor != "postgresql":
        pytest.skip("reads PostgreSQL's max_connections: run with DATABASE_URL=postgres://...")
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = int(cursor.fetchone()[0])
        cursor.execute("SHOW superuser_reserved_connections")
        usable = max_connections - int(cursor.fetchone()[0])
        cursor.execute("SELECT current_setting('reserved_connections', true)")
        usable -= int(cursor.fetchone()[0] or 0)  # PostgreSQL 16+
    # One process per connection: a fleet of exactly the usable slots, then one more.
    settings.WEB_MACHINES, settings.WEB_CONCURRENCY = 1, usable
    settings.WORKER_MACHINES, settings.DB_POOL_SIZE, settings.DB_MAX_OVERFLOW = 0, 0, 1
    assert check_database_connections_fit(databases=["default"]) == []

    settings.WEB_CONCURRENCY = usable + 1
    [warning] = check_database_connections_fit(databases=["default"])

    assert warning.id == "core.W001"
    assert f"max_connections {max_connections} from the server" in warning.msg
    # Like Django's own database checks: nothing unless asked for this database.
    assert check_database_connections_fit(databases=None) == []
