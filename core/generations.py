"""Per-user cache generations: bump one and every cached page of that user is stale at once.

The generation is a number in the shared cache (database table or Redis), used as the cache
``version`` of the user's entries, so it holds across every web process and machine.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.cache import cache


def _key(user_id: int) -> str:
    return f"user:{user_id}:gen"


def user_generation(user_id: int) -> int:
    value = cache.get(_key(user_id))
    if value is None:
        cache.add(_key(user_id), 1, timeout=None)
        value = cache.get(_key(user_id), 1)
    return int(value)


def users_generation_bump(user_ids: Iterable[int]) -> None:
    for user_id in set(user_ids):
        try:
            cache.incr(_key(user_id))
        except ValueError:  # never read yet: any new number is a new generation
            cache.add(_key(user_id), 2, timeout=None)
