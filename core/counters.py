"""Statistics counters shared by every process: Redis when it is the cache, else a table.

Counting is best effort: a count that cannot be written (Redis down, the database locked or
unreachable) is logged and dropped, never raised into the request or task that counted it.
Reading them during such an outage gives 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.db import DatabaseCache
from django.db import IntegrityError, transaction
from django.db.models import F

from .cache import CacheUnavailable
from .errors import outage_of
from .models import Counter

logger = logging.getLogger(__name__)


def _in_database() -> bool:
    return isinstance(caches[DEFAULT_CACHE_ALIAS], DatabaseCache)


def counter_add(name: str, amount: int = 1) -> None:
    try:
        if _in_database():
            _database_add(name, amount)
        else:
            _cache_add(name, amount)
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        logger.warning("counter %s: %d not counted (%s: %s)", name, amount, type(exc).__name__, exc)


def _cache_add(name: str, amount: int) -> None:
    try:
        cache.incr(name, amount)
    except CacheUnavailable:
        raise
    except ValueError:  # first count since the cache was emptied
        if not cache.add(name, amount, timeout=None):
            cache.incr(name, amount)


def _database_add(name: str, amount: int) -> None:
    # One transaction (a savepoint inside a caller's): a failure leaves the caller's
    # transaction usable, so dropping the count is safe.
    with transaction.atomic():
        if Counter.objects.filter(name=name).update(value=F("value") + amount):
            return
        try:
            with transaction.atomic():
                Counter.objects.create(name=name, value=amount)
        except IntegrityError:  # another process created it first
            Counter.objects.filter(name=name).update(value=F("value") + amount)


def counters_get(names: Iterable[str]) -> dict[str, int]:
    names = list(names)
    try:
        if not _in_database():
            found = cache.get_many(names)
        else:
            found = dict(Counter.objects.filter(name__in=names).values_list("name", "value"))
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        logger.warning("counters unreadable, reported as 0 (%s: %s)", type(exc).__name__, exc)
        found = {}
    return {name: int(found.get(name) or 0) for name in names}
