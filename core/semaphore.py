"""A counting semaphore shared by every process and machine: at most N holders at once.

No maintained library offers a cross-process counting semaphore (DESIGN.md), so this is N
mutual-exclusion locks, one per slot; a holder owns one slot. Acquiring tries every slot without
blocking, starting at a random one so that waiters spread, then backs off and tries again until
its deadline.

Backends, chosen from the settings by ``semaphore()``:
- Redis (``REDIS_URL`` set): redis-py ``Lock`` on ``sem:{name}:{i}`` with a TTL, so the slot of a
  killed holder comes back after the lease.
- PostgreSQL without Redis: session advisory locks on a connection of the semaphore's own, so a
  rolled-back or pooled Django connection can never keep a slot; a killed holder's session ends
  and PostgreSQL frees its slot.
- SQLite (one machine): ``fcntl.flock`` on N files; the kernel frees a dead holder's slot.

Set ``FINDME_SEMAPHORE_TRACE`` to a file path to append one line per enter and exit (tests use it
to measure the real peak across processes); unset, nothing is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Protocol

TRACE_ENV = "FINDME_SEMAPHORE_TRACE"


class SemaphoreTimeout(Exception):
    """No slot came free before the deadline; the caller's task should fail and be retried."""


class _Slots(Protocol):
    slots: int

    def try_slot(self, index: int) -> Any | None:
        """Take slot ``index`` without waiting: a token to release it with, or None if held."""

    def release(self, token: Any) -> None: ...


class Semaphore:
    """``with semaphore(name, n):`` holds one of n slots for the duration of the block."""

    def __init__(self, backend: _Slots, *, name: str, wait_s: float = 120.0) -> None:
        self.backend = backend
        self.name = name
        self.wait_s = wait_s
        # Tokens per thread, so one Semaphore object may be shared by threads and nested.
        self._local = threading.local()

    def acquire(self) -> Any:
        deadline = time.monotonic() + self.wait_s
        delay = 0.01
        while True:
            start = random.randrange(self.backend.slots)
            for step in range(self.backend.slots):
                token = self.backend.try_slot((start + step) % self.backend.slots)
                if token is not None:
                    return token
            if time.monotonic() >= deadline:
                raise SemaphoreTimeout(
                    f"no free slot of {self.backend.slots} for {self.name!r} in {self.wait_s} s"
                )
            # Jittered exponential back-off: many waiters must not poll the backend in step.
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.25)

    def _held(self) -> list[Any]:
        held = getattr(self._local, "tokens", None)
        if held is None:
            held = self._local.tokens = []
        return held

    def __enter__(self) -> Semaphore:
        token = self.acquire()
        try:
            _trace("enter", self.name)
        except BaseException:
            self.backend.release(token)
            raise
        self._held().append(token)
        return self

    def __exit__(self, *exc: object) -> None:
        token = self._held().pop()
        try:
            _trace("exit", self.name)
        finally:
            self.backend.release(token)


def _trace(event: str, name: str) -> None:
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    line = f"{time.time():.6f} {event} {name} {os.getpid()} {threading.get_ident()}\n"
    # One short O_APPEND write per line: lines from many processes never interleave, and their
    # order in the file is the order in which they happened.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


# --- backends -----------------------------------------------------------------------------------
class FileSlots:
    """One machine: an exclusive ``flock`` on one of N files. Each ``open`` is a lock of its own,
    so two threads of one process exclude each other too."""

    def __init__(self, *, name: str, slots: int, folder: str | Path) -> None:
        self.slots = slots
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name

    def try_slot(self, index: int) -> int | None:
        fd = os.open(self.folder / f"{self.name}.{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def release(self, token: int) -> None:
        try:
            fcntl.flock(token, fcntl.LOCK_UN)
        finally:
            os.close(token)


class RedisSlots:
    """Every machine: a redis-py ``Lock`` per slot. The TTL must outlast the longest holder
    (a call with all its retries); it only matters when a holder dies without releasing."""

    def __init__(self, *, name: str, slots: int, url: str, lease_s: float) -> None:
        self.slots = slots
        self.name = name
        self.url = url
        self.lease_s = lease_s
        self._client = None
        self._pid = 0

    @property
    def client(self):  # noqa: ANN201 - redis.Redis, imported lazily
        # Built on first use, and again in a forked child: a socket must not cross a fork.
        if self._client is None or self._pid != os.getpid():
            import redis

            self._client = redis.Redis.from_url(
                self.url, socket_connect_timeout=5, socket_timeout=5
            )
            self._pid = os.getpid()
        return self._client

    def try_slot(self, index: int):  # noqa: ANN201 - redis.lock.Lock | None
        lock = self.client.lock(
            f"sem:{self.name}:{index}", timeout=self.lease_s, thread_local=False
        )
        return lock if lock.acquire(blocking=False) else None

    def release(self, token) -> None:  # noqa: ANN001
        from redis.exceptions import LockError

        # LockError: the lease ran out and the slot was handed on; nothing of ours is left.
        with contextlib.suppress(LockError):
            token.release()


class PostgresSlots:
    """Every machine sharing one PostgreSQL: a session advisory lock per slot.

    Each holder uses a connection of its own (one per thread, opened lazily, never shared across
    a fork): session advisory locks are re-entrant within a session, so two threads on one
    connection would both "get" the same slot.
    """

    def __init__(self, *, name: str, slots: int, conninfo: dict[str, Any]) -> None:
        self.slots = slots
        self.name = name
        self.conninfo = conninfo
        # Two 32-bit keys: a namespace for this semaphore, and the slot number.
        self.namespace = zlib.crc32(f"findme:sem:{name}".encode()) & 0x7FFFFFFF
        self._local = threading.local()

    def _connection(self):  # noqa: ANN202 - psycopg.Connection
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or getattr(self._local, "pid", None) != os.getpid():
            import psycopg

            conn = psycopg.connect(autocommit=True, connect_timeout=5, **self.conninfo)
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def try_slot(self, index: int) -> tuple[Any, int] | None:
        conn = self._connection()
        row = conn.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (self.namespace, index)
        ).fetchone()
        return (conn, index) if row and row[0] else None

    def release(self, token: tuple[Any, int]) -> None:
        conn, index = token
        try:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (self.namespace, index))
        except Exception:
            # The connection broke: its session is gone and PostgreSQL has freed the slot.
            # Drop it so that the next holder opens a fresh one.
            self._local.conn = None
            with contextlib.suppress(Exception):
                conn.close()
            raise


def postgres_conninfo(settings_dict: dict[str, Any]) -> dict[str, Any]:
    """psycopg keyword arguments from a Django DATABASES entry."""
    info = {
        "dbname": settings_dict.get("NAME"),
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
    }
    return {k: v for k, v in info.items() if v}


# --- chosen from the settings -------------------------------------------------------------------
_backends: dict[tuple[str, int], _Slots] = {}
_backends_lock = threading.Lock()


def _backend_build(name: str, slots: int) -> _Slots:
    from django.conf import settings
    from django.db import connections

    lease_s = float(getattr(settings, "SEMAPHORE_LEASE_S", 300))
    if getattr(settings, "REDIS_URL", ""):
        return RedisSlots(name=name, slots=slots, url=settings.REDIS_URL, lease_s=lease_s)
    db = connections["default"]
    if db.vendor == "postgresql":
        # The database the app uses (the test database under tests): the one every worker shares.
        return PostgresSlots(name=name, slots=slots, conninfo=postgres_conninfo(db.settings_dict))
    # Beside the SQLite file: exactly the processes that share the database share the slots.
    folder = getattr(settings, "SEMAPHORE_FILE_DIR", "") or f"{db.settings_dict['NAME']}.locks"
    return FileSlots(name=name, slots=slots, folder=folder)


def semaphore(name: str, slots: int) -> Semaphore:
    """The shared semaphore ``name`` with ``slots`` slots, on the backend the settings choose.

    The backend object holds only lazily-built clients; the slots themselves live in Redis,
    PostgreSQL or the file system, never in this process.
    """
    from django.conf import settings

    key = (name, slots)
    backend = _backends.get(key)
    if backend is None:
        with _backends_lock:
            backend = _backends.get(key)
            if backend is None:
                backend = _backends[key] = _backend_build(name, slots)
    return Semaphore(backend, name=name, wait_s=float(getattr(settings, "SEMAPHORE_WAIT_S", 120)))
