"""Connections that fit (issue 9, point 4).

One gunicorn (4 workers) and one qcluster (3 workers), on the default pool settings, serve a
burst of requests and process photos. Their PostgreSQL connections never exceed what the
README's formula allows for one web machine and one worker machine, and stay far below the
server's 100.

The pair runs with the production settings module against a database of its own on the shared
server (created and dropped here), so nothing of the test settings, their pool sizes above all,
reaches it. Each backend is traced to the process that opened it through its client port, so a
failure names the kind of process that holds too many.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from core.checks import Fleet
from tests.conftest import ROOT, jpeg_bytes
from tests.reliability.servers import production_env

logger = logging.getLogger(__name__)

DB = settings.DATABASES["default"]
ON_POSTGRES = DB["ENGINE"] == "django.db.backends.postgresql"
PG_HOST = DB.get("HOST") or "127.0.0.1"
PG_PORT = int(DB.get("PORT") or 5432)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.reliability,
    pytest.mark.cluster,
    pytest.mark.skipif(
        not ON_POSTGRES,
        reason="counts PostgreSQL connections: run with DATABASE_URL=postgres://... "
        "(SQLite has no server connections to count)",
    ),
]

WEB_WORKERS = 4
QUEUE_WORKERS = 3
PHOTOS = 6
BURST = 40
# Variables that would change what the pair runs on; the pair gets only those set below.
SETUP = """
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from events.models import Event
staff = get_user_model().objects.create_user(username="staff", password="x" * 12, is_staff=True)
Event.objects.create(name="Census", slug="census", created_by=staff)
print(Token.objects.create(user=staff).key, settings.DB_POOL_SIZE, settings.DB_MAX_OVERFLOW)
"""


def admin_connect() -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=DB.get("USER") or None,
        password=DB.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


@pytest.fixture
def fresh_database() -> Iterator[str]:
    name = f"findme_conn_{os.getpid()}_{secrets.token_hex(3)}"
    with admin_connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with admin_connect() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def pair_env(database: str, media: Path) -> dict[str, str]:
    auth = quote(DB.get("USER") or "")
    if DB.get("PASSWORD"):
        auth += ":" + quote(DB["PASSWORD"])
    env = production_env()
    env.update(
        DJANGO_SECRET_KEY=secrets.token_hex(32),
        DATABASE_URL=f"postgres://{auth}@{PG_HOST}:{PG_PORT}/{database}",
        MEDIA_ROOT=str(media),
        # Its own queue and cache keys: the suite's clusters may share this Redis.
        Q_CLUSTER_NAME=database,
        CACHE_KEY_PREFIX=database,
        PHOTO_QUEUE_WORKERS=str(QUEUE_WORKERS),
        LOG_LEVEL="INFO",  # the cluster's log names each of its processes' pid
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            # The main process stops its own children (a qcluster deadlocks when all of its
            # processes are signalled at once); whatever is left after that is killed.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tails}")


@dataclass
class Census:
    total: int
    by_kind: Counter[str] = field(default_factory=Counter)
    by_process: Counter[tuple[str, int]] = field(default_factory=Counter)

    def describe(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.by_kind.items()))
        return f"{self.total} connections ({kinds})"


class Pair:
    """The two commands' process trees, each process named by its role."""

    def __init__(self, web: subprocess.Popen, cluster: subprocess.Popen, cluster_log: Path):
        self.web, self.cluster, self.cluster_log = web, cluster, cluster_log

    def processes(self) -> list[psutil.Process]:
        found = []
        for root in (self.web.pid, self.cluster.pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                top = psutil.Process(root)
                found += [top, *top.children(recursive=True)]
        return found

    def kinds(self) -> dict[int, str]:
        kinds = {self.web.pid: "gunicorn arbiter", self.cluster.pid: "qcluster main"}
        for parent, kind in ((self.web.pid, "gunicorn worker"), (self.cluster.pid, "sentinel")):
            with contextlib.suppress(psutil.NoSuchProcess):
                kinds.update({child.pid: kind for child in psutil.Process(parent).children()})
        log = self.cluster_log.read_text(errors="replace")
        for kind, pattern in (
            ("qcluster worker", r"ready for work at (\d+)"),
            ("monitor", r"monitoring at (\d+)"),
            ("pusher", r"pushing tasks at (\d+)"),
        ):
            kinds.update({int(pid): kind for pid in re.findall(pattern, log)})
        return kinds

    def connection_owners(self) -> dict[int, int]:
        """Client port -> pid of the process that opened the connection. A forked child
        inherits its parent's sockets, so the holder nearest the root opened it."""
        holders: dict[int, list[tuple[int, int]]] = {}
        for proc in self.processes():
            try:
                depth = len(proc.parents())
                for conn in proc.net_connections(kind="tcp"):
                    if conn.raddr and conn.raddr.port == PG_PORT:
                        holders.setdefault(conn.laddr.port, []).append((depth, proc.pid))
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return {port: min(found)[1] for port, found in holders.items()}

    def census(self, monitor: psycopg.Connection, database: str) -> Census:
        ports = [
            port
            for (port,) in monitor.execute(
                "SELECT client_port FROM pg_stat_activity WHERE datname = %s", [database]
            ).fetchall()
        ]
        owners, kinds = self.connection_owners(), self.kinds()
        result = Census(total=len(ports))
        for port in ports:
            pid = owners.get(port)
            kind = kinds.get(pid, "other process") if pid else "not traced"
            result.by_kind[kind] += 1
            result.by_process[(kind, pid or 0)] += 1
        return result


class PeakWatch(threading.Thread):
    """Samples the database's connection count for as long as the pair runs; keeps the census
    of the highest moment."""

    def __init__(self, pair: Pair, database: str):
        super().__init__(daemon=True)
        self.pair, self.database = pair, database
        self.peak = Census(total=0)
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with admin_connect() as monitor:
                while not self.stopped.wait(0.25):
                    (total,) = monitor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                        [self.database],
                    ).fetchone()
                    if total > self.peak.total:
                        self.peak = self.pair.census(monitor, self.database)
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            self.error = exc


def test_gunicorn_and_qcluster_on_default_pools_hold_what_the_formula_allows(
    fresh_database: str, tmp_path: Path
):
    database = fresh_database
    env = pair_env(database, tmp_path / "media")
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "createcachetable")  # the database cache, when no REDIS_URL is set
    # The last line: shell first says how many objects it imported.
    token, pool_size, max_overflow = manage(env, "shell", "-c", SETUP).splitlines()[-1].split()
    one_of_each = Fleet(
        web_machines=1,
        web_workers=WEB_WORKERS,
        worker_machines=1,
        queue_workers=QUEUE_WORKERS,
        pool_size=int(pool_size),
        max_overflow=int(max_overflow),
    )

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web_log, cluster_log = tmp_path / "gunicorn.log", tmp_path / "qcluster.log"
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    web_command = [gunicorn, "config.wsgi", "-w", str(WEB_WORKERS), "-b", f"127.0.0.1:{port}"]
    logs = [web_log, cluster_log]
    with (
        started(web_command, env, web_log) as web,
        started([sys.executable, "manage.py", "qcluster"], env, cluster_log) as cluster,
    ):
        pair = Pair(web, cluster, cluster_log)
        watch = PeakWatch(pair, database)
        watch.start()
        try:
            kinds = pair.kinds
            wait_for(
                lambda: (
                    list(kinds().values()).count("gunicorn worker") >= WEB_WORKERS
                    and list(kinds().values()).count("qcluster worker") >= QUEUE_WORKERS
                ),
                timeout=120,
                what="gunicorn's and the cluster's workers",
                logs=logs,
            )
            auth = {"Authorization": f"Token {token}"}
            listing = f"{base}/api/events/census/photos/"
            for i in range(PHOTOS):
                answer = httpx.post(
                    listing,
                    headers=auth,
                    files={
                        "file": (f"p{i}.jpg", jpeg_bytes(colour=(40 * i, 90, 200)), "image/jpeg")
                    },
                    timeout=60,
                )
                assert answer.status_code == 201, answer.text

            def get(url: str) -> int:
                return httpx.get(url, headers=auth, timeout=60).status_code

            with ThreadPoolExecutor(BURST) as pool:
                statuses = list(pool.map(get, [f"{base}/api/health/", listing] * (BURST // 2)))
            assert statuses == [200] * BURST

            def photos_done() -> bool:
                answer = httpx.get(f"{listing}?status=done", headers=auth, timeout=60)
                return answer.status_code == 200 and answer.json()["count"] == PHOTOS

            wait_for(photos_done, timeout=180, what=f"{PHOTOS} photos done", logs=logs)
            # The sentinel's scheduler queries every 30 s: the census is complete once it has.
            with admin_connect() as monitor:
                wait_for(
                    lambda: pair.census(monitor, database).by_kind["sentinel"] > 0,
                    timeout=90,
                    what="the sentinel's first scheduler query",
                    logs=logs,
                )
                settled = pair.census(monitor, database)
        finally:
            watch.stopped.set()
            watch.join(timeout=30)
    if watch.error is not None:
        raise watch.error
    peak = watch.peak

    logger.info("peak: %s; settled: %s", peak.describe(), settled.describe())
    logger.info("formula: %s", one_of_each.formula())
    detail = f"peak {peak.describe()}, settled {settled.describe()}; {one_of_each.formula()}"
    assert peak.total <= one_of_each.connections, detail
    # The formula's premises: no process holds more than its pool's maximum, and the two main
    # processes hold none.
    for (kind, pid), held in peak.by_process.items():
        assert held <= one_of_each.per_process, f"{kind} {pid} held {held}: {detail}"
    for kind in ("gunicorn arbiter", "qcluster main", "other process"):
        assert peak.by_kind[kind] == 0, f"{kind}: {detail}"
    # The measurement saw the pair at work, not before it connected.
    assert peak.by_kind["gunicorn worker"] >= 1, detail
    assert peak.by_kind["qcluster worker"] >= 1, detail
    # The fleet is two such pairs, on a server with 100 slots less 3 for superusers.
    assert 2 * peak.total <= 97, detail
