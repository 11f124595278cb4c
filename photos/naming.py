"""The names photos are downloaded under: the same for a single download, a shared file and an
entry of a zip, so that a guest who saves the same photo twice sees the same name twice.

``<event>-<taken>-<id>.<ext>``, for example ``wedding-20261201-1530-4182.jpg``: the event's slug,
the time from ``Photo.sort_time`` (taken, else uploaded), and the photo's id, which nothing
renumbers. Never the photographer's file name: it says nothing to a guest and may say
something about the photographer's disk.
"""

from __future__ import annotations

from collections.abc import Iterable

from events.models import Event

from .models import Photo

# The other names a format goes by; anything else gets the type's own (Photo.EXTENSIONS).
_OWN_EXTENSIONS = {
    "image/png": {"png"},
    "image/webp": {"webp"},
    "image/heic": {"heic", "heif"},
}


def photo_extension(photo: Photo) -> str:
    """``jpg`` for every JPEG (``.JPG``, ``.jpeg``...); another format keeps the extension of
    the file the photographer sent, if it is one of that format's."""
    if photo.content_type in _OWN_EXTENSIONS:
        own = photo.original_name.rpartition(".")[2].lower() if "." in photo.original_name else ""
        if own in _OWN_EXTENSIONS[photo.content_type]:
            return own
    return photo.extension


def photo_download_name(photo: Photo, *, event_slug: str | None = None) -> str:
    """``event_slug`` saves reading ``photo.event`` when the caller knows it."""
    slug = event_slug or photo.event.slug
    return f"{slug}-{photo.sort_time:%Y%m%d-%H%M}-{photo.pk}.{photo_extension(photo)}"


def zip_download_name(events: Iterable[Event]) -> str:
    """``<event>.zip`` when the photos are all of one event; else a name of no event."""
    slugs = {event.slug for event in events}
    if len(slugs) == 1:
        return f"{slugs.pop()}.zip"
    return "findme-photos.zip"
