"""Statistics counters shared by every process: Redis when it is the cache, else a table."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.db import DatabaseCache
from django.db import IntegrityError, transaction
from django.db.models import F

from .models import Counter


def _in_database() -> bool:
    return isinstance(caches[DEFAULT_CACHE_ALIAS], DatabaseCache)


def counter_add(name: str, amount: int = 1) -> None:
    if not _in_database():
        try:
            cache.incr(name, amount)
        except ValueError:  # first count since the cache was emptied
            if not cache.add(name, amount, timeout=None):
                cache.incr(name, amount)
        return
    if Counter.objects.filter(name=name).update(value=F("value") + amount):
        return
    try:
        with transaction.atomic():
            Counter.objects.create(name=name, value=amount)
    except IntegrityError:  # another process created it first
        Counter.objects.filter(name=name).update(value=F("value") + amount)


def counters_get(names: Iterable[str]) -> dict[str, int]:
    names = list(names)
    if not _in_database():
        found = cache.get_many(names)
        return {name: int(found.get(name) or 0) for name in names}
    found = dict(Counter.objects.filter(name__in=names).values_list("name", "value"))
    return {name: int(found.get(name, 0)) for name in names}
