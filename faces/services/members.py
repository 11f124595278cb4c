"""Members: selfie checks, indexing once, back-matching, and forgetting."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Selfie, User
from accounts.selectors import selfie_get, selfie_image, selfie_indexed_get
from accounts.services import SELFIE_JOB, selfie_delete, selfie_indexed, selfie_store
from core import jobs
from core.errors import ApplicationError
from core.imaging import ImageRejected, decode_upright, encode, inspect, resized
from events.selectors import member_event_ids, member_is_in

from ..engines.base import EngineError, FaceRecord, SelfieUnusable
from ..models import Face, Match, MemberSearch
from .engines import engine_get
from .matching import event_lock, galleries_changed, member_merge, member_record
from .selfies import members_for_search, selfie_retake_request

logger = logging.getLogger(__name__)


BACKMATCH_JOB = jobs.JobKind(
    model=MemberSearch,
    task="faces.tasks.member_match_event",
    args=("user_id", "event_id"),
    queued=MemberSearch.Status.QUEUED,
    running=MemberSearch.Status.RUNNING,
    failed=MemberSearch.Status.FAILED,
    # A back-match waits, undispatched, for its member's selfie to be indexed.
    ready=Q(user__selfie__status=Selfie.Status.INDEXED),
)
# Every kind of queued row the faces app owns, for the job sweep.
JOB_KINDS = (SELFIE_JOB, BACKMATCH_JOB)


def member_backmatch_request(
    *, user_id: int, event_id: int, dispatch: bool = True, new_selfie: bool = False
) -> MemberSearch:
    """Record that the member must be matched against the event's stored photos, and hand it
    to the queue after commit (or leave it to the caller, who runs it at once).

    The row is the record: until the back-match is done, the job sweep sees it queued and
    completes it, whatever happened to the message. ``new_selfie``: the member was searched
    with another selfie so far, so every face must be searched again."""
    now = timezone.now()
    fields = {
        "status": MemberSearch.Status.QUEUED,
        "attempts": 0,
        "error": "",
        "not_before": None,
        "lease_expires_at": None,
        "dispatched_at": now if dispatch else None,
    }
    if new_selfie:
        fields["faces_through"] = 0
    with transaction.atomic():
        row, created = MemberSearch.objects.get_or_create(
            user_id=user_id, event_id=event_id, defaults=fields
        )
        if not created:
            MemberSearch.objects.filter(pk=row.pk).update(**fields)
        if dispatch:
            jobs.dispatch_on_commit(BACKMATCH_JOB, row.pk)
    return row


def member_match_event(*, user_id: int, event_id: int) -> int:
    """Back-match one indexed member against every face already stored in one event.

    Runs as the member's back-match job (claimed, leased, retried by core/jobs.py). Each photo
    where the member may appear is re-assigned with its current matches, so a face moves to the
    new member only when they are nearer than its present owner. Returns the member's matches.
    """
    pk = (
        MemberSearch.objects.filter(user_id=user_id, event_id=event_id)
        .values_list("pk", flat=True)
        .first()
    )
    if pk is None:  # called without a request (a shell, a bench): record one first
        pk = member_backmatch_request(user_id=user_id, event_id=event_id, dispatch=False).pk
    token = jobs.claim(BACKMATCH_JOB, pk)
    if token is None:
        return 0
    try:
        with jobs.lease_kept(BACKMATCH_JOB, pk, token):
            found = _member_backmatch(user_id=user_id, event_id=event_id)
            if found is None:
                # The selfie is not indexed (yet): wait, undispatched, for member_index.
                jobs.held(BACKMATCH_JOB, pk, token).update(
                    status=MemberSearch.Status.QUEUED,
                    attempts=token - 1,
                    dispatched_at=None,
                    lease_expires_at=None,
                )
                return 0
            jobs.held(BACKMATCH_JOB, pk, token).update(
                status=MemberSearch.Status.DONE, error="", lease_expires_at=None
            )
            return found
    except Exception as exc:
        logger.exception("back-match of user %s in event %s failed", user_id, event_id)
        jobs.attempt_failed(BACKMATCH_JOB, pk, token, exc)
        return 0


def _member_backmatch(*, user_id: int, event_id: int) -> int | None:
    engine = engine_get()
    selfie = selfie_indexed_get(user_id=user_id)
    if selfie is None:
        return None
    if not member_is_in(user_id=user_id, event_id=event_id):
        return 0
    [member] = members_for_search(
        [member_record(user_id=user_id, descriptor=selfie.descriptor, engine_ref=selfie.engine_ref)]
    )
    # The faces are read under the event's lock, which a photo's task holds from storing its
    # faces to committing them: a photo either committed before this read, or reads the
    # members after it, when this member is indexed already. One side sees the pair, never
    # neither. (SQLite serialises writers, so there the lock is moot.) The search itself runs
    # outside the lock: it may be a network call. Plain tuples, not model instances: an event
    # can hold 50,000 faces.
    with transaction.atomic():
        event_lock(event_id)
        faces = [
            FaceRecord(id=pk, photo_id=photo_id, descriptor=descriptor, engine_face_id=engine_id)
            for pk, photo_id, descriptor, engine_id in Face.objects.filter(
                event_id=event_id, engine=engine.name
            ).values_list("pk", "photo_id", "descriptor", "engine_face_id")
        ]
    through = max((f.id for f in faces), default=0)
    searched = (
        MemberSearch.objects.filter(user_id=user_id, event_id=event_id)
        .values_list("faces_through", flat=True)
        .first()
    )
    if through and (searched or 0) >= through:
        # Searched through the newest face already (a join that raced the selfie's indexing,
        # a round): a second search would cost a call and find nothing new.
        return Match.objects.filter(user_id=user_id, event_id=event_id, rejected=False).count()
    try:
        fresh = engine.member_candidates(event_id=event_id, member=member, faces=faces)
    except SelfieUnusable as exc:
        selfie_retake_request(user_id=user_id, reason=str(exc))
        return 0
    return member_merge(
        user_id=user_id,
        event_id=event_id,
        fresh=fresh,
        through=through,
    )


def member_index(*, user_id: int) -> bool:
    """Index a member's selfie once, then back-match them in every event they joined.

    The claim is a conditional UPDATE on the selfie row: of any number of workers, in any number
    of processes or machines, exactly one moves it from queued to indexing. The others return.
    A failure is retried by the one policy of core/jobs.py; a selfie the engine refuses fails.
    """
    selfie = selfie_get(user_id=user_id)
    if selfie is None:
        return False
    pk = selfie.pk
    token = jobs.claim(SELFIE_JOB, pk)
    if token is None:
        return False
    try:
        with jobs.lease_kept(SELFIE_JOB, pk, token):
            event_ids = _member_enroll(user_id=user_id, pk=pk, token=token)
    except (EngineError, OSError) as exc:
        logger.warning("indexing the selfie of user %s failed: %s", user_id, exc)
        jobs.attempt_failed(SELFIE_JOB, pk, token, str(exc), final=True)
        return False
    except Exception as exc:
        logger.exception("indexing the selfie of user %s failed", user_id)
        jobs.attempt_failed(SELFIE_JOB, pk, token, exc)
        return False
    if event_ids is None:
        return False
    # Each event's back-match is its own job: a failure in one is retried alone, and the job
    # sweep completes any that this process does not (it was killed, the database was locked).
    for event_id in event_ids:
        member_match_event(user_id=user_id, event_id=event_id)
    return True


def _member_enroll(*, user_id: int, pk: int, token: int) -> list[int] | None:
    """Compute and store the selfie's vector; record a back-match per event. Returns the
    events to back-match, or None when the selfie was deleted or replaced meanwhile."""
    engine = engine_get()
    # Users made with the old selfie must not be searched for the new one.
    _member_users_forget(user_id=user_id)
    event_ids = member_event_ids(user_id=user_id)
    image = selfie_image(user_id=user_id)
    enrollment = engine.member_enroll(user_id=user_id, event_ids=event_ids, image=image)
    with transaction.atomic():
        updated = selfie_indexed(
            pk=pk,
            token=token,
            descriptor=enrollment.descriptor,
            engine=engine.name,
            engine_ref=enrollment.engine_ref,
        )
        if updated:
            # Read again in the transaction that marks the selfie indexed: an event joined
            # since the read above is back-matched too (or its join saw the selfie indexed).
            event_ids = member_event_ids(user_id=user_id)
            for event_id in event_ids:
                member_backmatch_request(
                    user_id=user_id, event_id=event_id, dispatch=False, new_selfie=True
                )
    if not updated:  # deleted or replaced meanwhile: its vectors must not linger
        engine.member_forget(user_id=user_id, engine_ref=enrollment.engine_ref, event_ids=event_ids)
        return None
    return event_ids


def _member_users_forget(*, user_id: int) -> None:
    """Delete the member's Users (and their selfie faces) from every event's collection where
    rounds made them one (faces.services.rounds, per new face), and the records of them."""
    rows = list(
        MemberSearch.objects.filter(user_id=user_id)
        .exclude(user_face_id="")
        .values_list("event_id", "user_face_id")
    )
    if not rows:
        return
    engine = engine_get("rekognition")  # only its rounds make Users
    for event_id, face_id in rows:
        engine.member_user_forget(event_id=event_id, user_id=user_id, face_id=face_id)
        MemberSearch.objects.filter(
            user_id=user_id, event_id=event_id, user_face_id=face_id
        ).update(user_face_id="")


def member_forget(*, user_id: int) -> None:
    """Delete a member's face data everywhere: engine vectors, matches (rejected too), selfie."""
    _member_users_forget(user_id=user_id)
    selfie = selfie_get(user_id=user_id)
    event_ids = member_event_ids(user_id=user_id)
    if selfie is not None and selfie.engine_ref:
        engine_get().member_forget(
            user_id=user_id, engine_ref=selfie.engine_ref, event_ids=event_ids
        )
    with transaction.atomic():
        # The same locks that matching holds while it reads members and writes matches: a match
        # computed before this point is deleted here, and none is made after it.
        for event_id in sorted(event_ids):
            event_lock(event_id)
        Match.objects.filter(user_id=user_id).delete()
        MemberSearch.objects.filter(user_id=user_id).delete()
        selfie_delete(user_id=user_id)
        galleries_changed([user_id])


CONSENT_TRUE = {"true", "1", "yes", "on"}


def selfie_register(*, user: User, upload: UploadedFile | None, consent: str) -> Selfie:
    """Check a selfie (consent, an image, exactly one face) and keep it for indexing.

    Nothing is stored unless every check passes. A selfie kept has exactly one face.
    """
    if str(consent).strip().lower() not in CONSENT_TRUE:
        raise ApplicationError(
            "Tick the consent box: FindMe needs your permission to use your face to find your photos.",
            code="consent_required",
            detail={"consent": ["Consent is required."]},
        )
    # This runs in the web process: the selfie is judged by its header, then decoded at a bounded
    # scale. A JPEG is read at the DCT scale (1/2 to 1/8) nearest above the stored side, which
    # holds under (2 x 2048)^2 = 16.8 MP; a PNG, WebP, HEIC or progressive JPEG cannot be read
    # smaller, so it may have no more pixels than that, above every phone's front camera (8-12 MP).
    side = 2048
    try:
        inspect(upload, max_pixels=settings.SELFIE_MAX_PIXELS)
        image = decode_upright(
            upload,
            max_side=side,
            max_pixels=settings.SELFIE_MAX_PIXELS,
            max_decoded_pixels=(2 * side) ** 2,
        )
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
    jpeg = encode(resized(image, side), "JPEG", quality=90)
    stored = SimpleUploadedFile("selfie.jpg", jpeg, content_type="image/jpeg")
    face = faces[0]
    return selfie_store(
        user=user, upload=stored, face_box=(face.left, face.top, face.width, face.height)
    )
