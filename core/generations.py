"""Per-user cache generations: bump one and every cached page of that user is stale at once.

The generation is a number in the shared cache (database table or Redis), so it holds across
every web process and machine. A cached page records the generation it was read under and is
served only while the user's generation still has that value.

Every bump writes a fresh random number rather than incrementing: the database cache's
``incr`` is a read then a write, so two bumps at once could both write the same number and one
change would go unseen; and a key evicted by the cache (the database cache culls, Redis may run
under ``maxmemory``) must never restart at a number that a cached page already carries.

A cache that is down is a miss: the generation read then is a fresh number that no cached page
carries, so the page is built from the database. A bump that cannot be written is logged, not
raised: it runs after the change is committed, and the pages it should have made stale expire
on their own (``MY_PHOTOS_CACHE_SECONDS``) if the cache kept them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable

from django.core.cache import cache

from .errors import outage_of

logger = logging.getLogger(__name__)


def generation_key(user_id: int) -> str:
    return f"user:{user_id}:gen"


def generation_fresh() -> int:
    return secrets.randbits(62) + 1


def user_generation(user_id: int) -> int:
    """The user's current generation, created if the cache holds none."""
    key = generation_key(user_id)
    try:
        value = cache.get(key)
        if value is None:
            cache.add(key, generation_fresh(), timeout=None)
            value = cache.get(key)
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        logger.warning(
            "generation of user %s unreadable (%s: %s)", user_id, type(exc).__name__, exc
        )
        value = None
    if value is None:  # evicted again between the two calls, or no cache: any fresh value will do
        value = generation_fresh()
    return int(value)


def users_generation_bump(user_ids: Iterable[int]) -> None:
    """Make every cached page of these users stale. Call it after the change is committed."""
    fresh = {generation_key(user_id): generation_fresh() for user_id in set(user_ids)}
    if not fresh:
        return
    reason = "the cache dropped the write"
    try:
        failed = cache.set_many(fresh, timeout=None) or []
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        failed, reason = list(fresh), f"{type(exc).__name__}: {exc}"
    if failed:
        logger.warning(
            "%d of %d gallery generations not bumped (%s); those galleries may lag for up to "
            "MY_PHOTOS_CACHE_SECONDS",
            len(failed),
            len(fresh),
            reason,
        )
