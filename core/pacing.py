"""A rate of calls per second shared by every process and machine: the fleet's pace.

AWS's quotas are transactions per second per account and region. A cap on calls in flight
(core/semaphore.py) does not bound that rate, and botocore's adaptive mode paces each process on
its own, so ten workers each at the quota send ten times it. ``pace(name, per_second)`` makes the
whole fleet one sender.

The rule is GCRA without burst (the generic cell rate algorithm of ATM networks, which Redis
rate limiters such as redis-cell implement): the limiter keeps one number, the time at which the
next call may go (``tat``). A caller takes ``slot = max(now, tat)``, moves ``tat`` to ``slot +
1/rate``, and sleeps until its slot. Slots are therefore at least ``1/rate`` apart, so no window
of one second ever holds more than ``rate`` of them. The read-modify-write is one atomic step:

- Redis (``REDIS_URL`` set): a Lua script, on the server's own clock (``TIME``), so the clocks of
  the machines do not matter;
- the database otherwise: one ``Counter`` row (core.models), updated and read back in one
  transaction (PostgreSQL locks the row; SQLite's IMMEDIATE transactions serialise writers). The
  clock is the caller's, which on one machine is the same clock.

Set ``FINDME_PACING_TRACE`` to a file path to append one line per slot granted (tests measure
the granted rate with it); unset, nothing is written.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from .models import Counter

TRACE_ENV = "FINDME_PACING_TRACE"

# KEYS[1]: the key holding tat (microseconds); ARGV[1]: the interval (microseconds).
# Returns how long to wait, in microseconds, and the slot, on the server's clock.
_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, tat)
redis.call('SET', KEYS[1], slot + interval, 'PX', math.ceil((slot + interval - now) / 1000) + 1000)
return {slot - now, slot}
"""


class _RedisPacer:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Any = None
        self._script: Any = None
        self._pid = 0
        self._lock = threading.Lock()

    def _script_get(self) -> Any:
        # Built on first use, and again in a forked child: a socket must not cross a fork.
        if self._script is None or self._pid != os.getpid():
            with self._lock:
                if self._script is None or self._pid != os.getpid():
                    import redis

                    self._client = redis.Redis.from_url(
                        self.url, socket_connect_timeout=5, socket_timeout=5
                    )
                    self._script = self._client.register_script(_LUA)
                    self._pid = os.getpid()
        return self._script

    def reserve(self, name: str, interval_us: int) -> tuple[float, float]:
        wait_us, slot_us = self._script_get()(keys=[f"pace:{name}"], args=[interval_us])
        return int(wait_us) / 1e6, int(slot_us) / 1e6


class _DatabasePacer:
    def reserve(self, name: str, interval_us: int) -> tuple[float, float]:
        key = f"pace:{name}"
        now_us = int(time.time() * 1e6)
        with transaction.atomic():
            Counter.objects.get_or_create(name=key)
            # The row is locked by this UPDATE until commit: the read below sees our own write.
            Counter.objects.filter(name=key).update(
                value=Greatest(F("value"), Value(now_us)) + interval_us
            )
            tat = Counter.objects.filter(name=key).values_list("value", flat=True).get()
        slot_us = tat - interval_us
        return max(0, slot_us - now_us) / 1e6, slot_us / 1e6


_pacers: dict[str, Any] = {}
_pacers_lock = threading.Lock()


def _pacer() -> Any:
    url = getattr(settings, "REDIS_URL", "")
    key = url or "database"
    pacer = _pacers.get(key)
    if pacer is None:
        with _pacers_lock:
            pacer = _pacers.get(key)
            if pacer is None:
                pacer = _pacers[key] = _RedisPacer(url) if url else _DatabasePacer()
    return pacer


def pace(name: str, per_second: float) -> float:
    """Wait for this caller's slot of the fleet-wide rate ``name``; returns the seconds waited.

    A rate of 0 or less means no limit. The wait happens here, holding nothing: no lock, no
    transaction, no slot of a concurrency cap."""
    if per_second <= 0:
        return 0.0
    interval_us = max(1, round(1e6 / per_second))
    wait, slot = _pacer().reserve(name, interval_us)
    _trace(name, slot)
    if wait > 0:
        time.sleep(wait)
    return wait


def _trace(name: str, slot: float) -> None:
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{slot:.6f} {name} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
