"""The attendee's gallery data: cached metadata pages, cache statistics, the headings a page
is grouped under, and the streamed zip."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.utils import dateformat
from django.utils.http import parse_etags, quote_etag

from core.counters import counter_add, counters_get
from core.generations import generation_key, user_generation

from . import privacy
from .models import Photo
from .naming import photo_download_name

logger = logging.getLogger(__name__)

HITS_KEY = "stats:user_photos_cache:hits"
MISSES_KEY = "stats:user_photos_cache:misses"
STORED_KEY = "stats:user_photos_cache:stored"
# Entries are (generation, body, etag); the key's prefix names that shape, so an entry of
# another shape (left by an older release) is never read as one.
CACHE_PREFIX = "myphotos:page"
# Entries are (generation, etag): what a conditional request needs, without the page.
ETAG_PREFIX = "myphotos:etag"
# How often at most a process writes the hits it counted to the shared counter (_HitTally).
HITS_FLUSH_SECONDS = 1.0


class GalleryPage(NamedTuple):
    body: bytes  # the rendered JSON
    etag: str  # of the body, quoted for the ETag header


def _page_key(user_id: int, variant: str) -> str:
    digest = hashlib.blake2b(variant.encode(), digest_size=12).hexdigest()
    return f"{CACHE_PREFIX}:{user_id}:{digest}"


def _etag_key(user_id: int, variant: str) -> str:
    digest = hashlib.blake2b(variant.encode(), digest_size=12).hexdigest()
    return f"{ETAG_PREFIX}:{user_id}:{digest}"


class _HitTally:
    """Cache hits counted in this process and added to the shared counter at most once every
    HITS_FLUSH_SECONDS.

    A hit, above all a poll answered 304, then writes nothing: with the database cache each
    count would be an UPDATE of the same row, by every web process, once per request. What a
    process counted is written by its first hit after the interval, or when this process reads
    the statistics (``cache_stats``); a process that exits loses at most that much. These are
    statistics, not records.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = 0
        self._since = time.monotonic()

    def add(self) -> None:
        with self._lock:
            self._pending += 1
            due = time.monotonic() - self._since >= HITS_FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, 0
            self._since = time.monotonic()
        if pending:
            counter_add(HITS_KEY, pending)

    def discard(self) -> None:
        """Forget what was counted and not written (tests: one test's hits are not the next's)."""
        with self._lock:
            self._pending = 0
            self._since = time.monotonic()


hit_tally = _HitTally()


def _page_built(build: Callable[[], bytes]) -> GalleryPage:
    body = build()
    return GalleryPage(body, quote_etag(hashlib.blake2b(body, digest_size=16).hexdigest()))


def my_photos_json(*, user_id: int, variant: str, build: Callable[[], bytes]) -> GalleryPage:
    """One user's gallery page as JSON bytes and their ETag, from the cache while the user's
    generation allows.

    The entry holds the rendered bytes and their ETag, so a hit costs one cache read (the
    user's generation, the page together), a count in memory (``_HitTally``), and no serialising
    or hashing. ``build`` renders the page on a miss, which also records the page's ETag for
    conditional requests (``my_photos_not_modified``). A new or rejected match bumps the
    generation (core.generations), so a changed gallery never waits for the timeout.
    """
    timeout = settings.MY_PHOTOS_CACHE_SECONDS
    if timeout <= 0:
        return _page_built(build)
    page_key = _page_key(user_id, variant)
    gen_key = generation_key(user_id)
    # One round trip: the generation and the page.
    found = cache.get_many([gen_key, page_key])
    generation = found.get(gen_key)
    entry = found.get(page_key)
    if generation is not None and entry is not None and entry[0] == generation:
        hit_tally.add()
        return GalleryPage(entry[1], entry[2])
    counter_add(MISSES_KEY)
    if generation is None:
        generation = user_generation(user_id)
    # The generation is read before the database: a match committed while we build bumps it,
    # and this entry, stored under the older number, is never served.
    page = _page_built(build)
    cache.set(page_key, (generation, *page), timeout=timeout)
    cache.set(
        _etag_key(user_id, variant),
        (generation, page.etag),
        timeout=max(timeout, settings.MY_PHOTOS_ETAG_SECONDS),
    )
    counter_add(STORED_KEY)
    return page


def my_photos_not_modified(*, user_id: int, variant: str, if_none_match: str) -> str | None:
    """The page's ETag when ``if_none_match`` (a request's If-None-Match) holds it and the cache
    shows that it is still current: the caller answers 304. None: answer in full
    (``my_photos_json``), which also settles a mismatch or an ``*``.

    One cache round trip for two small entries, the user's generation and the ETag recorded
    with it when the page was built (weak comparison, as Django's conditional GET does); no
    page, no database row. The record outlives the page (MY_PHOTOS_ETAG_SECONDS, against
    MY_PHOTOS_CACHE_SECONDS for the page): open galleries polling every few seconds would
    otherwise have every page rebuilt from the database whenever it expires, though nothing
    changed. The generation still decides: a new or rejected match makes the record stale at
    once. Only a lost generation bump (core.generations) would let a poll see an old gallery
    for that longer time.
    """
    if settings.MY_PHOTOS_CACHE_SECONDS <= 0:
        return None
    held = {etag.removeprefix("W/") for etag in parse_etags(if_none_match)}
    if not held or "*" in held:
        return None
    gen_key, etag_key = generation_key(user_id), _etag_key(user_id, variant)
    found = cache.get_many([gen_key, etag_key])
    generation, entry = found.get(gen_key), found.get(etag_key)
    if generation is None or entry is None or entry[0] != generation or entry[1] not in held:
        return None
    hit_tally.add()
    return entry[1]


def cache_stats() -> dict[str, Any]:
    """The gallery cache's counters since they began (``/api/admin/queue/stats/``).

    ``size`` is how many pages were written to the cache: one per miss whose page was built (a
    miss that ended in a 404 stores nothing). It is a count of writes, not of live entries:
    entries expire after MY_PHOTOS_CACHE_SECONDS, are replaced when a generation moves, and are
    culled by the backend without telling anyone, and counting the live ones would mean scanning
    the cache's private storage on every call.
    """
    hit_tally.flush()  # this process's own hits are never reported late
    found = counters_get([HITS_KEY, MISSES_KEY, STORED_KEY])
    hits, misses = found[HITS_KEY], found[MISSES_KEY]
    total = hits + misses
    return {
        "hits": hits,
        "misses": misses,
        "hit_rate": round(hits / total, 4) if total else 0.0,
        "size": found[STORED_KEY],
    }


# --- headings ------------------------------------------------------------------------------------
# A gallery that spans more than one day is grouped by day; one within a day, by the hour once
# it lasts this long. A shorter one has no headings: they would only repeat the obvious.
LONG_EVENT = timedelta(hours=2)


@dataclass
class GalleryGroup:
    key: str  # unique on the page, for element ids: "20261212" or "20261212-15"
    label: str  # the heading; empty when the page is not grouped
    starts: str  # the heading's machine-readable time, for <time datetime="...">
    photos: list[Photo] = field(default_factory=list)


def gallery_grouping(first: datetime | None, last: datetime | None) -> str:
    """``"day"``, ``"hour"`` or ``""`` for a gallery whose photos' ``Photo.sort_time`` lie
    between ``first`` and ``last`` (the whole gallery's, so that every page of it is grouped
    alike)."""
    if first is None or last is None:
        return ""
    first, last = first.astimezone(UTC), last.astimezone(UTC)
    if first.date() != last.date():
        return "day"
    if last - first >= LONG_EVENT:
        return "hour"
    return ""


def gallery_groups(photos: Iterable[Photo], grouping: str) -> list[GalleryGroup]:
    """The photos, in the gallery's order (by ``Photo.sort_time``, so a day or an hour is one
    run), cut where the day or the hour changes."""
    groups: list[GalleryGroup] = []
    for photo in photos:
        when = photo.sort_time
        if grouping == "day":
            key, starts = f"{when:%Y%m%d}", f"{when:%Y-%m-%d}"
            label = dateformat.format(when.date(), "l j F Y")
        elif grouping == "hour":
            key, starts = f"{when:%Y%m%d-%H}", f"{when:%Y-%m-%dT%H}:00"
            label = f"{when:%H}:00 – {(when.hour + 1) % 24:02d}:00"
        else:
            key, starts, label = "all", "", ""
        if not groups or groups[-1].key != key:
            groups.append(GalleryGroup(key=key, label=label, starts=starts))
        groups[-1].photos.append(photo)
    return groups


# --- the zip --------------------------------------------------------------------------------------
class _Sink:
    """A write-only, unseekable file. zipfile then writes data descriptors and never seeks, and
    whatever it wrote is taken away after each chunk: memory holds about one chunk."""

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


def zip_stream(photos: Iterable[Photo], *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """Yield a zip of the originals piece by piece, stored (photos do not compress), each
    with its location removed unless its event keeps it (``photos.privacy``), under the name
    a single download of it has (``photos.naming``)."""
    sink = _Sink()
    with zipfile.ZipFile(
        sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True
    ) as archive:
        for photo in photos:
            try:
                source = photo.original.open("rb")
            except OSError:
                # A missing file must not cut every other photo out of the download.
                logger.exception("zip: original of photo %s cannot be read; left out", photo.pk)
                continue
            try:
                # Checked before the entry opens: an original whose location cannot be removed
                # is left out rather than cut off half-written.
                pieces = privacy.original_pieces(
                    source,
                    photo.content_type,
                    size=photo.size,
                    keep_location=photo.event.keep_location,
                    chunk_size=chunk_size,
                ).pieces
            except privacy.LocationNotRemovable:
                logger.exception("zip: location of photo %s cannot be removed; left out", photo.pk)
                continue
            when = photo.sort_time
            if not 1980 <= when.year <= 2107:  # what a zip header can say; camera clocks lie
                when = photo.created_at
            info = zipfile.ZipInfo(photo_download_name(photo), date_time=when.timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            with closing(pieces), archive.open(info, "w", force_zip64=True) as dest:
                for chunk in pieces:
                    dest.write(chunk)
                    if data := sink.take():
                        yield data
            if data := sink.take():
                yield data
    if data := sink.take():
        yield data
