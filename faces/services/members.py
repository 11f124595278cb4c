"""Members: selfie checks, indexing once, back-matching, and forgetting."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from accounts.models import Selfie
from accounts.services import selfie_delete, selfie_store
from core.errors import ApplicationError
from core.imaging import ImageRejected, decode_upright, encode, inspect, resized

from ..engines import engine_get
from ..engines.base import EngineError, FaceRecord, MemberRecord
from ..models import Face, Match
from .matching import _event_lock, _galleries_changed, _member_merge

logger = logging.getLogger(__name__)

Event = Face.event.field.related_model
Membership = Event.memberships.rel.related_model


def member_match_event(*, user_id: int, event_id: int) -> int:
    """Back-match one indexed member against every face already stored in one event.

    Each photo where the member may appear is re-assigned with its current matches, so a face
    moves to the new member only when they are nearer than its present owner.
    """
    engine = engine_get()
    selfie = (
        Selfie.objects.filter(user_id=user_id, status=Selfie.Status.INDEXED)
        .only("user_id", "descriptor", "engine_ref")
        .first()
    )
    if selfie is None or not Membership.objects.filter(user_id=user_id, event_id=event_id).exists():
        return 0
    member = MemberRecord(
        user_id=user_id, descriptor=selfie.descriptor, engine_ref=selfie.engine_ref
    )
    # The faces are read under the event's lock, which a photo's task holds from storing its
    # faces to committing them: a photo either committed before this read, or reads the
    # members after it, when this member is indexed already. One side sees the pair, never
    # neither. (SQLite serialises writers, so there the lock is moot.) The search itself runs
    # outside the lock: it may be a network call. Plain tuples, not model instances: an event
    # can hold 50,000 faces.
    with transaction.atomic():
        _event_lock(event_id)
        faces = [
            FaceRecord(id=pk, photo_id=photo_id, descriptor=descriptor, engine_face_id=engine_id)
            for pk, photo_id, descriptor, engine_id in Face.objects.filter(
                event_id=event_id, engine=engine.name
            ).values_list("pk", "photo_id", "descriptor", "engine_face_id")
        ]
    fresh = engine.member_candidates(event_id=event_id, member=member, faces=faces)
    return _member_merge(
        user_id=user_id,
        event_id=event_id,
        fresh=fresh,
        through=max((f.id for f in faces), default=0),
    )


def member_index(*, user_id: int) -> bool:
    """Index a member's selfie once, then back-match them in every event they joined.

    The claim is a conditional UPDATE on the selfie row: of any number of workers, in any number
    of processes or machines, exactly one moves it from queued to indexing. The others return.
    """
    claimed = Selfie.objects.filter(user_id=user_id, status=Selfie.Status.QUEUED).update(
        status=Selfie.Status.INDEXING, attempts=F("attempts") + 1, updated_at=timezone.now()
    )
    if not claimed:
        return False
    selfie = Selfie.objects.get(user_id=user_id)
    engine = engine_get()
    event_ids = list(Membership.objects.filter(user_id=user_id).values_list("event_id", flat=True))
    try:
        with selfie.image.open("rb") as fh:
            image = decode_upright(fh)
        enrollment = engine.member_enroll(user_id=user_id, event_ids=event_ids, image=image)
    except (EngineError, OSError) as exc:
        logger.warning("indexing the selfie of user %s failed: %s", user_id, exc)
        Selfie.objects.filter(pk=selfie.pk, status=Selfie.Status.INDEXING).update(
            status=Selfie.Status.FAILED, error=str(exc)[:1000], updated_at=timezone.now()
        )
        return False
    except Exception:
        # Transient (network, throttling): hand it back to the queue, which retries.
        Selfie.objects.filter(pk=selfie.pk, status=Selfie.Status.INDEXING).update(
            status=Selfie.Status.QUEUED, updated_at=timezone.now()
        )
        raise
    updated = Selfie.objects.filter(pk=selfie.pk, status=Selfie.Status.INDEXING).update(
        status=Selfie.Status.INDEXED,
        descriptor=enrollment.descriptor,
        engine=engine.name,
        engine_ref=enrollment.engine_ref,
        indexed_at=timezone.now(),
        error="",
        updated_at=timezone.now(),
    )
    if not updated:  # deleted or replaced meanwhile: its vectors must not linger
        engine.member_forget(user_id=user_id, engine_ref=enrollment.engine_ref, event_ids=event_ids)
        return False
    for event_id in event_ids:
        member_match_event(user_id=user_id, event_id=event_id)
    return True


def member_forget(*, user_id: int) -> None:
    """Delete a member's face data everywhere: engine vectors, matches (rejected too), selfie."""
    selfie = Selfie.objects.filter(user_id=user_id).first()
    event_ids = list(Membership.objects.filter(user_id=user_id).values_list("event_id", flat=True))
    if selfie is not None and selfie.engine_ref:
        engine_get().member_forget(
            user_id=user_id, engine_ref=selfie.engine_ref, event_ids=event_ids
        )
    with transaction.atomic():
        # The same locks that matching holds while it reads members and writes matches: a match
        # computed before this point is deleted here, and none is made after it.
        for event_id in sorted(event_ids):
            _event_lock(event_id)
        Match.objects.filter(user_id=user_id).delete()
        selfie_delete(user_id=user_id)
        _galleries_changed([user_id])


def members_sweep() -> int:
    """Re-enqueue selfies left queued or indexing past the deadline (lost tasks, dead workers)."""
    deadline = timezone.now() - timedelta(seconds=settings.PHOTO_STUCK_AFTER_S)
    stuck = list(
        Selfie.objects.filter(
            status__in=[Selfie.Status.QUEUED, Selfie.Status.INDEXING], updated_at__lt=deadline
        ).values_list("user_id", flat=True)[:5000]
    )
    for user_id in stuck:
        with transaction.atomic():
            moved = Selfie.objects.filter(
                user_id=user_id,
                status__in=[Selfie.Status.QUEUED, Selfie.Status.INDEXING],
                updated_at__lt=deadline,
            ).update(status=Selfie.Status.QUEUED, updated_at=timezone.now())
            if moved:
                transaction.on_commit(
                    lambda uid=user_id: async_task("faces.tasks.member_index", uid)
                )
    return len(stuck)


CONSENT_TRUE = {"true", "1", "yes", "on"}


def selfie_register(*, user, upload, consent: str) -> tuple[Selfie, int]:
    """Check a selfie (consent, an image, exactly one face) and keep it for indexing.

    Nothing is stored unless every check passes.
    """
    if str(consent).strip().lower() not in CONSENT_TRUE:
        raise ApplicationError(
            "Tick the consent box: FindMe needs your permission to use your face to find your photos.",
            code="consent_required",
            detail={"consent": ["Consent is required."]},
        )
    try:
        inspect(upload, max_pixels=settings.PHOTO_MAX_PIXELS)
        image = decode_upright(upload)
    except ImageRejected as exc:
        raise ApplicationError(exc.message, code=exc.code) from None
    # Counting the faces of a selfie is done offline by dlib whatever the engine: it is free,
    # puts no network call in the request, and sends nothing to a cloud service for a selfie
    # that is then refused.
    faces = engine_get("local").faces_detect(image)
    if not faces:
        raise ApplicationError(
            "No face was found. Use a well-lit photo of your face, looking at the camera.",
            code="no_face",
        )
    if len(faces) > 1:
        raise ApplicationError(
            f"{len(faces)} faces were found. Use a photo with only your face in it.",
            code="multiple_faces",
            detail={"faces_found": len(faces)},
        )
    # Stored as an upright JPEG: a phone's HEIC becomes something every engine reads.
    jpeg = encode(resized(image, 2048), "JPEG", quality=90)
    stored = SimpleUploadedFile("selfie.jpg", jpeg, content_type="image/jpeg")
    return selfie_store(user=user, upload=stored), 1
