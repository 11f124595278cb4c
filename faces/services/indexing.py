"""A photo's faces: found by the engine, recorded, stored and matched."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PIL import Image

from events.models import Event

from ..engines.base import DetectedFace
from ..models import CollectionFace, Face, Match
from .engines import engine_get
from .matching import event_lock, face_records, galleries_changed, matches_replace, member_records
from .rounds import event_rematch_request


def faces_detect_for_photo(
    *,
    event_id: int,
    photo_id: int,
    image: Image.Image,
    source: Callable[[], Image.Image] | None = None,
) -> list[DetectedFace]:
    """The slow part (the engine), run outside any transaction. ``source`` returns the photo
    at full resolution, for engines that look closer at small faces.

    For an engine that stores vectors, what an earlier run of this photo stored is forgotten
    first, and what this run stores is recorded at once, outside the photo's transaction: if
    storing the faces fails, the rerun still knows these vectors and deletes them first.
    """
    engine = engine_get()
    if engine.stores_vectors:
        stale = set(
            CollectionFace.objects.filter(event_id=event_id, photo_id=photo_id).values_list(
                "face_id", flat=True
            )
        ) | set(
            Face.objects.filter(photo_id=photo_id, engine=engine.name)
            .exclude(engine_face_id="")
            .values_list("engine_face_id", flat=True)
        )
        if stale:
            engine.faces_forget(event_id=event_id, face_ids=sorted(stale))
            CollectionFace.objects.filter(event_id=event_id, face_id__in=stale).delete()
    detected = engine.photo_index(event_id=event_id, photo_id=photo_id, image=image, source=source)
    if engine.stores_vectors and not Event.objects.filter(pk=event_id).exists():
        # The event was deleted while this photo was indexed, and IndexFaces may have made its
        # collection again after event_forget deleted it. Checked after indexing, so either
        # this sees the event gone, or the deletion commits (and event_forget runs) after it.
        engine.event_forget(event_id=event_id)
        return []
    if engine.stores_vectors:
        CollectionFace.objects.bulk_create(
            [
                CollectionFace(event_id=event_id, photo_id=photo_id, face_id=d.engine_face_id)
                for d in detected
                if d.engine_face_id
            ],
            ignore_conflicts=True,
        )
    return detected


def faces_store(*, event_id: int, photo_id: int, detected: Sequence[DetectedFace]) -> int:
    """Replace the photo's faces and match them against the event's members.

    Call inside the transaction that marks the photo done. Running it twice leaves the same rows.
    Returns the number of live matches (none yet for an engine that matches in batched rounds:
    a round of the event is asked for instead, once this transaction commits).
    """
    engine = engine_get()
    event_lock(event_id)
    live = Match.objects.filter(photo_id=photo_id, rejected=False)
    galleries_changed(live.values_list("user_id", flat=True))
    live.delete()
    Face.objects.filter(photo_id=photo_id).delete()
    faces = Face.objects.bulk_create(
        [
            Face(
                photo_id=photo_id,
                event_id=event_id,
                index=i,
                left=d.left,
                top=d.top,
                width=d.width,
                height=d.height,
                descriptor=d.descriptor,
                engine=engine.name,
                engine_face_id=d.engine_face_id,
            )
            for i, d in enumerate(detected)
        ]
    )
    if not faces:
        return 0
    if faces[0].pk is None:  # backends that do not return ids from bulk_create
        faces = list(Face.objects.filter(photo_id=photo_id))
    members = member_records(event_id)
    if not members:
        return 0
    if engine.batched_matching:
        event_rematch_request(event_id=event_id)
        return 0
    candidates = engine.photo_candidates(
        event_id=event_id, faces=face_records(faces), members=members
    )
    return matches_replace(photo_ids=[photo_id], candidates=candidates)
