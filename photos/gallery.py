"""The attendee's gallery data: cached metadata pages, image bytes, and the streamed zip."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.cache import cache

from core.generations import user_generation

from .models import Photo

HITS_KEY = "stats:user_photos_cache:hits"
MISSES_KEY = "stats:user_photos_cache:misses"
CACHE_PREFIX = "myphotos"


def _count(key: str) -> None:
    try:
        cache.incr(key)
    except ValueError:
        if not cache.add(key, 1, timeout=None):
            cache.incr(key)


def my_photos_cached(*, user_id: int, variant: str, build) -> dict[str, Any]:
    """The answer for one user and query, from the cache when the user's generation allows.

    ``build`` makes the answer on a miss. A new or rejected match bumps the generation, so a
    changed gallery never waits for the timeout.
    """
    timeout = settings.MY_PHOTOS_CACHE_SECONDS
    if timeout <= 0:
        return build()
    version = user_generation(user_id)
    key = f"{CACHE_PREFIX}:{user_id}:{variant}"
    body = cache.get(key, version=version)
    if body is not None:
        _count(HITS_KEY)
        return body
    _count(MISSES_KEY)
    body = build()
    cache.set(key, body, timeout=timeout, version=version)
    return body


def cache_stats() -> dict[str, Any]:
    hits = int(cache.get(HITS_KEY) or 0)
    misses = int(cache.get(MISSES_KEY) or 0)
    total = hits + misses
    return {
        "hits": hits,
        "misses": misses,
        "hit_rate": round(hits / total, 4) if total else 0.0,
        "size": _cache_size(),
    }


def _cache_size() -> int | None:
    """How many gallery pages are cached now, read from the backend itself."""
    backend = cache
    location = getattr(backend, "_table", None)
    if location:  # DatabaseCache
        from django.db import connections, router
        from django.utils import timezone

        db = router.db_for_read(backend.cache_model_class)
        connection = connections[db]
        table = connection.ops.quote_name(location)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT COUNT(*) FROM {table} WHERE cache_key LIKE %s AND expires > %s",  # noqa: S608
                [f"%:{CACHE_PREFIX}:%", timezone.now()],
            )
            return int(cursor.fetchone()[0])
    client = getattr(backend, "_cache", None)
    if client is not None and hasattr(client, "get_client"):  # RedisCache
        redis = client.get_client()
        pattern = f"*:{CACHE_PREFIX}:*"
        return sum(1 for _ in redis.scan_iter(match=pattern, count=1000))
    return None


class _Sink:
    """A write-only, unseekable file: zipfile then writes data descriptors and never seeks."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def zip_stream(photos: Iterator[Photo], *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """Yield a zip of the originals piece by piece: memory stays at about one chunk."""
    sink = _Sink()
    used: set[str] = set()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for photo in photos:
            name = _zip_name(photo, used)
            info = zipfile.ZipInfo(name, date_time=photo.created_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            with photo.original.open("rb") as source, archive.open(info, "w", force_zip64=True) as dest:
                while chunk := source.read(chunk_size):
                    dest.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def _zip_name(photo: Photo, used: set[str]) -> str:
    stem = f"{photo.event.slug}/{photo.pk}"
    name = f"{stem}.{photo.extension}"
    while name in used:
        name = f"{stem}-{len(used)}.{photo.extension}"
    used.add(name)
    return name
