"""The fleet-wide rate of calls (core/pacing.py), through the database and through Redis.

Every slot granted is written to a trace file; the slots, not the moments the callers woke up,
are what the pacer promises: no second ever holds more than the rate of them.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from core import pacing
from tests.reliability.servers import redis_missing, redis_server

RATE = 40
CALLERS = 3
CALLS = 20


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def contend(name: str) -> list[str]:
    errors: list[str] = []

    def caller() -> None:
        try:
            for _ in range(CALLS):
                pacing.pace(name, RATE)
        except Exception as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def slots_of(trace, name: str) -> list[float]:
    return [
        float(line.split()[0]) for line in trace.read_text().splitlines() if f" {name} " in line
    ]


def assert_paced(slots: list[float]) -> None:
    assert len(slots) == CALLERS * CALLS
    ordered = sorted(slots)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    assert min(gaps) >= 1 / RATE - 1e-6  # one interval apart, whoever asked
    assert max_in_window(slots) <= RATE


@pytest.mark.django_db(transaction=True)
def test_callers_sharing_the_database_never_exceed_the_rate(settings, monkeypatch, tmp_path):
    settings.REDIS_URL = ""
    trace = tmp_path / "pace.trace"
    monkeypatch.setenv(pacing.TRACE_ENV, str(trace))
    assert contend("db-test") == []
    assert_paced(slots_of(trace, "db-test"))


@pytest.mark.skipif(bool(redis_missing()), reason=redis_missing() or "redis-server present")
def test_callers_sharing_redis_never_exceed_the_rate(settings, monkeypatch, tmp_path):
    trace = tmp_path / "pace.trace"
    monkeypatch.setenv(pacing.TRACE_ENV, str(trace))
    with redis_server() as server:
        settings.REDIS_URL = server.url
        try:
            assert contend("redis-test") == []
        finally:
            pacing._pacers.pop(server.url, None)
    assert_paced(slots_of(trace, "redis-test"))


def test_no_rate_means_no_wait_and_no_trip_to_the_backend(monkeypatch, tmp_path):
    trace = tmp_path / "pace.trace"
    monkeypatch.setenv(pacing.TRACE_ENV, str(trace))
    assert pacing.pace("off", 0) == 0.0
    assert not trace.exists()
