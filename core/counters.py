"""Counters shared by every process.

``counter_add``/``counters_get``: named statistics, in Redis when it is the cache, else a table.
Counting them is best effort: a count that cannot be written (Redis down, the database locked or
unreachable) is logged and dropped, never raised into the request or task that counted it.
Reading them during such an outage gives 0.

``row_add``/``row_upsert``: the one update-else-create for any model's counting row (these
statistics' table, an app's per-key tallies). They raise what the database raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.db import DatabaseCache
from django.db import IntegrityError, models, transaction
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
        row_add(Counter, key={"name": name}, field="value", amount=amount)


def row_upsert(
    model: type[models.Model],
    *,
    key: Mapping[str, Any],
    update: Mapping[str, Any],
    create: Mapping[str, Any],
) -> None:
    """Apply ``update`` to the row of ``model`` that ``key`` names, or create it with ``key``
    and ``create`` when there is none. Safe among processes, without locking anything.

    ``update`` may hold expressions (``F("n") + 1``, ``Greatest(F("n"), 7)``): they run in the
    database, so two processes never lose each other's change. ``key``'s fields must be unique
    together (a primary key or a ``UniqueConstraint``): that is what turns a second process's
    create into an IntegrityError, after which its update goes to the row the first one made.
    """
    queryset = model._default_manager.filter(**key)
    if queryset.update(**update):
        return
    try:
        # A savepoint: a failed INSERT leaves a caller's transaction usable.
        with transaction.atomic():
            model._default_manager.create(**key, **create)
    except IntegrityError:
        if not queryset.update(**update):
            raise  # no row to update: the INSERT failed for a reason other than the race


def row_add(
    model: type[models.Model],
    *,
    key: Mapping[str, Any],
    field: str,
    amount: int = 1,
    also: Mapping[str, Any] | None = None,
) -> None:
    """Add ``amount`` to ``field`` of the row that ``key`` names, creating it at ``amount``.

    ``also`` sets further columns whether the row is updated or created (``updated_at``: an
    UPDATE does not apply ``auto_now``). See ``row_upsert`` for the rules on ``key``.
    """
    also = dict(also or {})
    row_upsert(
        model,
        key=key,
        update={field: F(field) + amount, **also},
        create={field: amount, **also},
    )


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
