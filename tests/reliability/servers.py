"""Throwaway Redis and PostgreSQL servers, for tests that stop and start them.

Each one listens on 127.0.0.1 on a free port, keeps its files in a temporary folder and is
removed with it, whatever happens. CI's shared servers (5432, 6379) are never touched: a fault
injected here stops only what this module started.

PostgreSQL's ``initdb`` and ``postgres`` refuse to run as root, so as root they run as the
``postgres`` user (``runuser -u postgres --``) in a folder owned by it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``condition`` every 50 ms, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: still not true after {timeout:.0f} s")
        time.sleep(0.05)


# --- Redis -----------------------------------------------------------------------------------------
def redis_missing() -> str:
    """Why a throwaway Redis cannot run here, or "" when it can."""
    return "" if shutil.which("redis-server") else "redis-server is not installed"


class RedisServer:
    """``redis-server`` without persistence; ``stop()`` and ``start()`` keep the port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="findme-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None, "already running"
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for(self._answers, timeout=START_TIMEOUT_S, what=f"redis on {self.port}")
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log()}")
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        wait_for(lambda: not port_open(self.port), timeout=STOP_TIMEOUT_S, what="redis port free")

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


# --- PostgreSQL ------------------------------------------------------------------------------------
def _pg_bin() -> Path | None:
    """The newest PostgreSQL's binaries (Debian keeps them out of PATH)."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def postgres_missing() -> str:
    """Why a throwaway PostgreSQL cannot run here, or "" when it can."""
    if _pg_bin() is None:
        return "PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin/initdb)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without runuser: initdb refuses to run as root"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
    return ""


class PostgresServer:
    """A cluster of its own: ``initdb`` in a temporary folder, ``pg_ctl`` to stop and start it."""

    def __init__(self) -> None:
        bin_dir = _pg_bin()
        assert bin_dir is not None, postgres_missing()
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="findme-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.running = False
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({done.returncode}): {done.stdout}\n{done.stderr}\n{self.log()}"
            )

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            timeout=120,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "start",
        )
        self.running = True

    def stop(self) -> None:
        if not self.running:
            return
        self._run(
            "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=STOP_TIMEOUT_S
        )
        self.running = False
        wait_for(lambda: not port_open(self.port), timeout=STOP_TIMEOUT_S, what="pg port free")

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def remove(self) -> None:
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


# FindMe's own variables: a server a test starts gets only what the test gives it.
APP_VARIABLES = (
    "DB_",
    "DATABASE_URL",
    "REDIS_URL",
    "CACHE_",
    "DJANGO_",
    "PHOTO_",
    "TASK_",
    "Q_CLUSTER",
    "SQLITE_",
    "MEDIA_ROOT",
    "FINDME_",
    "AWS_",
    "FACE_",
    "RATELIMIT_",
)


def client_env() -> dict[str, str]:
    """The environment of a client (the watcher): nothing of the server's configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith(APP_VARIABLES)}


def production_env(**settings: str) -> dict[str, str]:
    """The environment of a production-mode server (gunicorn, qcluster, manage.py) that a test
    or a bench starts on loopback: the production settings, reached over plain HTTP because
    there is no TLS proxy in front (no HTTPS redirect, secure-only cookies or HSTS), and static
    files without a manifest (no collectstatic). ``settings`` are added on top."""
    env = client_env()
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_SECURE_COOKIES="0",
        DJANGO_SECURE_HSTS_SECONDS="0",
        DJANGO_STATIC_MANIFEST="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    return env
