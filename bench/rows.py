"""Rows the gallery benchmarks share: a processed 12 MP photo, as the worker leaves it."""

from __future__ import annotations


def done_photo(i: int, event, **fields):
    """An unsaved, processed Photo number ``i`` of ``event`` (for bulk_create)."""
    from photos.models import Photo

    values = {
        "event": event,
        "sha256": f"{i:064x}",
        "original": f"photos/{i}.jpg",
        "content_type": "image/jpeg",
        "size": 4_000_000,
        "width": 4000,
        "height": 3000,
        "thumb_width": 400,
        "thumb_height": 300,
        "status": Photo.Status.DONE,
        **fields,
    }
    return Photo(**values)
