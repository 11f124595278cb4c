"""Vectors that outlive their faces: the engine-side vectors of deleted photos.

A photo's own rows (faces, matches) go with it, but an engine that stores vectors remotely
(Rekognition) keeps them until told. ``CollectionFace`` records every such vector as soon as the
engine returns it. A record whose vector no Face row carries any more belongs to a deleted
photo (or to a run that failed before storing its faces): the sweep deletes it at the engine.
A sweep rather than a per-photo task: it also finds photos deleted from a shell or by a cascade.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from core import jobs

from ..models import CollectionFace, Face
from .engines import engine_get

SWEEP_TASK = "faces.tasks.photo_vectors_sweep"
# Vectors handled per engine call and statement; the sweep goes on until none is left.
SWEEP_CHUNK = 500


def photos_deleting(*, photo_ids: list[int]) -> None:
    """Photos are being deleted in this transaction: after commit, forget their vectors.

    Nothing is queued when the engine holds no vector of theirs (the local engine never does).
    If the queue does not take it, the scheduled sweep does the work.
    """
    if CollectionFace.objects.filter(photo_id__in=photo_ids).exists():
        transaction.on_commit(lambda: jobs.enqueue(SWEEP_TASK))


def photo_vectors_sweep() -> int:
    """Delete, at the engine, every recorded vector that no Face row carries any more.

    A record younger than a task's lifetime is left alone: its photo may be between IndexFaces
    and storing its faces right now. Returns how many vectors were deleted; running it twice
    deletes nothing the second time.
    """
    settled = timezone.now() - timedelta(seconds=settings.PHOTO_TASK_TIMEOUT + 60)
    orphaned = CollectionFace.objects.filter(created_at__lt=settled).filter(
        ~Exists(Face.objects.filter(engine_face_id=OuterRef("face_id")))
    )
    # The records are Rekognition's alone, whatever FACE_ENGINE says now.
    engine = engine_get("rekognition")
    deleted = 0
    seen: set[int] = set()
    while True:
        records = list(
            orphaned.order_by("pk").values_list("pk", "event_id", "face_id")[:SWEEP_CHUNK]
        )
        if not records or seen.intersection(pk for pk, _, _ in records):
            # Done, or records the engine would not delete: the next sweep tries again.
            return deleted
        seen.update(pk for pk, _, _ in records)
        by_event: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for pk, event_id, face_id in records:
            by_event[event_id].append((pk, face_id))
        for event_id, pairs in by_event.items():
            engine.faces_forget(event_id=event_id, face_ids=sorted(f for _, f in pairs))
            # Forgotten here only once the engine has answered: a failed call keeps them.
            CollectionFace.objects.filter(pk__in=[pk for pk, _ in pairs]).delete()
            deleted += len(pairs)
