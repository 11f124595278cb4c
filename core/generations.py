"""Per-user cache generations: bump one and every cached page of that user is stale at once.

The generation is a number in the shared cache (database table or Redis), so it holds across
every web process and machine. A cached page records the generation it was read under and is
served only while the user's generation still has that value.

Every bump writes a fresh random number rather than incrementing: the database cache's
``incr`` is a read then a write, so two bumps at once could both write the same number and one
change would go unseen; and a key evicted by the cache (the database cache culls, Redis may run
under ``maxmemory``) must never restart at a number that a cached page already carries.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from django.core.cache import cache


def generation_key(user_id: int) -> str:
    return f"user:{user_id}:gen"


def generation_fresh() -> int:
    return secrets.randbits(62) + 1


def user_generation(user_id: int) -> int:
    """The user's current generation, created if the cache holds none."""
    key = generation_key(user_id)
    value = cache.get(key)
    if value is None:
        cache.add(key, generation_fresh(), timeout=None)
        value = cache.get(key)
        if value is None:  # evicted again between the two calls: any fresh value will do
            value = generation_fresh()
    return int(value)


def users_generation_bump(user_ids: Iterable[int]) -> None:
    """Make every cached page of these users stale. Call it after the change is committed."""
    fresh = {generation_key(user_id): generation_fresh() for user_id in set(user_ids)}
    if fresh:
        cache.set_many(fresh, timeout=None)
