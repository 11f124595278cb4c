"""Vectors that outlive their photo: the engine-side faces of deleted photos.

A photo's own rows (faces, matches) go with it, but an engine that stores vectors remotely
(Rekognition) keeps them until told. ``CollectionFace`` records every such vector with no
foreign key to the photo, so the records of a deleted photo remain and say what to delete.
A sweep rather than a per-photo task: it also finds photos deleted from a shell or by a
cascade, and vectors that a worker indexed while its photo was being deleted.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import transaction
from django.db.models import Exists, OuterRef
from django_q.tasks import async_task

from ..engines import engine_get
from ..models import CollectionFace, Face

SWEEP_TASK = "faces.tasks.photo_vectors_sweep"
# Photos handled per engine call and statement; the sweep goes on until none is left.
SWEEP_PHOTOS = 200


def photos_deleting(*, photo_ids: list[int]) -> None:
    """Photos are being deleted in this transaction: after commit, forget their vectors.

    Nothing is queued when the engine holds no vector of theirs (the local engine never does).
    """
    if CollectionFace.objects.filter(photo_id__in=photo_ids).exists():
        transaction.on_commit(lambda: async_task(SWEEP_TASK))


def photo_vectors_sweep() -> int:
    """Delete, at the engine, the vectors of every photo that no longer exists.

    Returns how many vectors were deleted. Running it twice deletes nothing the second time.
    """
    Photo = Face.photo.field.related_model  # noqa: N806 - faces never imports photos
    orphaned = CollectionFace.objects.filter(~Exists(Photo.objects.filter(pk=OuterRef("photo_id"))))
    deleted = 0
    seen: set[tuple[int, int]] = set()
    while True:
        pairs = list(
            orphaned.values_list("event_id", "photo_id")
            .distinct()
            .order_by("event_id", "photo_id")[:SWEEP_PHOTOS]
        )
        if not pairs or seen.intersection(pairs):
            # Done, or records that the engine would not delete: the next sweep tries again.
            return deleted
        seen.update(pairs)
        by_event: dict[int, list[int]] = defaultdict(list)
        for event_id, photo_id in pairs:
            by_event[event_id].append(photo_id)
        # The records are Rekognition's alone, whatever FACE_ENGINE says now.
        engine = engine_get("rekognition")
        for event_id, photo_ids in by_event.items():
            deleted += engine.photos_forget(event_id=event_id, photo_ids=photo_ids)
