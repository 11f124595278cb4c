"""The shared counting semaphore, contended by real processes, each with several threads.

Every holder writes an enter line after it has a slot and an exit line before it gives it back,
appended to one file; replaying the file in order gives a lower bound of the true number of
holders at every moment, so a peak above the cap would prove the cap broken.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from core.semaphore import TRACE_ENV, FileSlots, Semaphore, SemaphoreTimeout, semaphore
from tests.conftest import ROOT

CAP = 3
PROCESSES = 3
THREADS = 4
REDIS_URL = os.environ.get("FINDME_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
POSTGRES_DSN = os.environ.get(
    "FINDME_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/findme"
)


def redis_reachable() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip, and say why
        return f"Redis is unreachable at {REDIS_URL}: {exc}"
    return ""


def postgres_reachable() -> str:
    try:
        import psycopg

        psycopg.connect(POSTGRES_DSN, connect_timeout=2).close()
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL is unreachable at {POSTGRES_DSN}: {exc}"
    return ""


def peak(trace: Path) -> tuple[int, int]:
    """(highest number of holders at once, number of enters) replayed from the trace."""
    holders = highest = enters = 0
    for line in trace.read_text().splitlines():
        event = line.split()[1]
        if event == "enter":
            holders += 1
            enters += 1
            highest = max(highest, holders)
        else:
            holders -= 1
    assert holders == 0, "every enter has its exit"
    return highest, enters


def contend(kind: str, target: str, trace: Path, *, rounds: int = 5) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, **{TRACE_ENV: str(trace)})
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.core.semaphore_contender",
                kind,
                target,
                "--name",
                name,
                "--slots",
                str(CAP),
                "--threads",
                str(THREADS),
                "--rounds",
                str(rounds),
            ],
            cwd=ROOT,
            env=env,
        )
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0


@pytest.mark.parametrize("kind", ["file", "redis", "postgres"])
def test_peak_concurrency_across_processes_and_threads_is_exactly_the_cap(kind, tmp_path):
    if kind == "redis" and (reason := redis_reachable()):
        pytest.skip(reason)
    if kind == "postgres" and (reason := postgres_reachable()):
        pytest.skip(reason)
    target = {"file": str(tmp_path / "locks"), "redis": REDIS_URL, "postgres": POSTGRES_DSN}[kind]
    trace = tmp_path / "trace.log"
    contend(kind, target, trace)
    highest, enters = peak(trace)
    assert enters == PROCESSES * THREADS * 5
    assert highest == CAP


def test_waiting_past_the_deadline_raises(tmp_path):
    slots = FileSlots(name="full", slots=2, folder=tmp_path)
    holders = [Semaphore(slots, name="full") for _ in range(2)]
    for holder in holders:
        holder.__enter__()
    try:
        with pytest.raises(SemaphoreTimeout), Semaphore(slots, name="full", wait_s=0.2):
            pass
    finally:
        for holder in holders:
            holder.__exit__(None, None, None)
    with Semaphore(slots, name="full", wait_s=0.2):
        pass


def test_a_killed_holder_gives_its_file_slot_back(tmp_path):
    """The kernel drops a dead process's flock: no slot is lost to a killed worker."""
    code = (
        "import sys, time\n"
        "from core.semaphore import FileSlots, Semaphore\n"
        f"s = Semaphore(FileSlots(name='k', slots=1, folder={str(tmp_path)!r}), name='k')\n"
        "s.__enter__()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with (
            pytest.raises(SemaphoreTimeout),
            Semaphore(FileSlots(name="k", slots=1, folder=tmp_path), name="k", wait_s=0.2),
        ):
            pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # Within the wait, or SemaphoreTimeout: the dead holder's slot came back.
    with Semaphore(FileSlots(name="k", slots=1, folder=tmp_path), name="k", wait_s=10):
        pass


def test_settings_choose_the_backend(settings):
    from django.db import connection

    from core import semaphore as module

    module._backends.clear()
    chosen = type(semaphore("choose", 2).backend).__name__
    module._backends.clear()
    if settings.REDIS_URL:
        assert chosen == "RedisSlots"
    elif connection.vendor == "postgresql":
        assert chosen == "PostgresSlots"
    else:
        assert chosen == "FileSlots"
