"""A Redis cache that treats an unreachable Redis as an empty cache: a cache down is a miss.

``TolerantRedisCache`` is Django's ``RedisCache`` with one difference: when Redis cannot be
reached (redis-py ``ConnectionError`` or ``TimeoutError``),

- reads answer as for a missing key: ``get`` the default, ``get_many`` ``{}``, ``has_key`` False;
- writes are dropped and say so: ``set`` returns False (None when stored, as Django's),
  ``add``, ``touch``, ``delete`` and ``clear`` False, ``set_many`` the keys it did not store;
- ``incr`` (and ``decr``, which Django builds on it) raises ``CacheUnavailable``, a
  ``ValueError``: Django's contract for a missing key, so a caller that handles that case keeps
  working, and one that cares can tell the two apart. There is no value it could honestly
  return.

After a failure, this process does not try Redis again for ``retry_after_error_s`` seconds: a
Redis that is down (or blackholed) then costs one connect timeout a second per process, and one
warning in the log, instead of one of each per cache call. ``ping`` ignores that pause and raises:
it is what ``/api/health/`` asks.

Anything else (a value that cannot be pickled, a wrong command) still raises: that is a bug.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Per process and server list, shared by every thread's backend instance (Django makes one per
# thread): the monotonic time of the last failure.
_failed_at: dict[tuple[str, ...], float] = {}


class CacheUnavailable(ValueError):  # noqa: N818 - named for what the caller learns
    """The cache could not be reached. A ValueError, as Django's ``incr`` of a missing key."""


def _redis_outage_errors() -> tuple[type[Exception], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError)


class TolerantRedisCache(RedisCache):
    retry_after_error_s: float = 1.0

    @property
    def _pause_key(self) -> tuple[str, ...]:
        return tuple(self._servers)

    def _tolerant(self, operation: str, fallback: T, call: Callable[[], T]) -> T:
        failed_at = _failed_at.get(self._pause_key)
        if failed_at is not None and time.monotonic() - failed_at < self.retry_after_error_s:
            return fallback
        try:
            return call()
        except _redis_outage_errors() as exc:
            _failed_at[self._pause_key] = time.monotonic()
            logger.warning(
                "cache: Redis unreachable during %s (%s: %s); answering as an empty cache, "
                "next try in %.1f s",
                operation,
                type(exc).__name__,
                exc,
                self.retry_after_error_s,
            )
            return fallback

    def ping(self) -> bool:
        """Ask Redis now, whatever happened before; raise if it does not answer."""
        answered = bool(self._cache.get_client(write=True).ping())
        _failed_at.pop(self._pause_key, None)
        return answered

    # --- reads: a miss ---------------------------------------------------------------------------
    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        parent = super()
        return self._tolerant("get", default, lambda: parent.get(key, default, version))

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        parent = super()
        keys = list(keys)
        return self._tolerant("get_many", {}, lambda: parent.get_many(keys, version))

    def has_key(self, key: str, version: int | None = None) -> bool:
        parent = super()
        return self._tolerant("has_key", False, lambda: parent.has_key(key, version))

    # --- writes: dropped, and they say so ----------------------------------------------------------
    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        parent = super()
        return self._tolerant("add", False, lambda: parent.add(key, value, timeout, version))

    def set(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool | None:
        parent = super()
        return self._tolerant("set", False, lambda: parent.set(key, value, timeout, version))

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        parent = super()
        return self._tolerant("touch", False, lambda: parent.touch(key, timeout, version))

    def delete(self, key: str, version: int | None = None) -> bool:
        parent = super()
        return self._tolerant("delete", False, lambda: parent.delete(key, version))

    def set_many(
        self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        parent = super()
        return self._tolerant(
            "set_many",
            list(data),
            lambda: parent.set_many(data, timeout, version),
        )

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        parent = super()
        keys = list(keys)
        self._tolerant("delete_many", None, lambda: parent.delete_many(keys, version))

    def clear(self) -> bool:
        parent = super()
        return self._tolerant("clear", False, lambda: parent.clear())

    # --- incr: no honest value to return -----------------------------------------------------------
    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        parent = super()
        missing = object()
        value = self._tolerant("incr", missing, lambda: parent.incr(key, delta, version))
        if value is missing:
            raise CacheUnavailable(f"the cache is unreachable: '{key}' was not incremented")
        return value
