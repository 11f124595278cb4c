"""Faces, matches and member indexing.

The rules every engine shares live here:
- a photo's faces may match only members of the photo's event;
- each face goes to at most one member (the nearest) and each member to at most one face of a
  photo, all under the engine's threshold;
- a rejected match ("not me") is never re-created for that member and photo.

This module never imports ``photos``: it is handed ids and images.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import F, Max
from django.db.models.functions import Greatest
from django.utils import timezone
from django_q.tasks import async_task
from PIL import Image

from accounts.models import Selfie
from accounts.selectors import selfies_indexed_for_event
from accounts.services import selfie_delete, selfie_store
from core.errors import ApplicationError
from core.generations import users_generation_bump
from core.imaging import ImageRejected, decode_upright, encode, inspect, resized

from .engines import engine_get
from .engines.base import Candidate, DetectedFace, EngineError, FaceRecord, MemberRecord
from .models import EngineCall, Face, Match, MemberSearch

logger = logging.getLogger(__name__)

Event = Face.event.field.related_model
Membership = Event.memberships.rel.related_model


class MemberNotIndexable(Exception):
    """The selfie cannot be indexed (no face, several faces): retrying will not help."""


# --- locking ------------------------------------------------------------------------------------
def _event_lock(event_id: int) -> None:
    """Serialise matching within one event, so that a photo finished while a member enrols is
    seen by one side or the other, never by neither. (SQLite already serialises writers.)"""
    list(Event.objects.select_for_update().filter(pk=event_id).values_list("pk", flat=True))


# --- assignment ---------------------------------------------------------------------------------
def matches_assign(
    candidates: Iterable[Candidate], face_photo: dict[int, int]
) -> list[Candidate]:
    """Nearest first: each face to at most one member, each member to at most one face of a
    photo. ``face_photo`` maps each face id to its photo id."""
    chosen: list[Candidate] = []
    used_faces: set[int] = set()
    used_users: set[tuple[int, int]] = set()
    ordered = sorted(candidates, key=lambda c: (c.distance, c.face_id, c.user_id))
    for cand in ordered:
        photo_id = face_photo.get(cand.face_id)
        if photo_id is None or cand.face_id in used_faces or (photo_id, cand.user_id) in used_users:
            continue
        used_faces.add(cand.face_id)
        used_users.add((photo_id, cand.user_id))
        chosen.append(cand)
    return chosen


def _matches_replace(*, photo_ids: Sequence[int], candidates: Sequence[Candidate]) -> int:
    """Make the live matches of these photos exactly the assignment of these candidates."""
    if not photo_ids:
        return 0
    rejected = set(
        Match.objects.filter(photo_id__in=photo_ids, rejected=True).values_list("photo_id", "user_id")
    )
    faces = {
        f.pk: f
        for f in Face.objects.filter(pk__in={c.face_id for c in candidates}).only(
            "pk", "photo_id", "event_id"
        )
    }
    allowed = [
        c
        for c in candidates
        if c.face_id in faces and (faces[c.face_id].photo_id, c.user_id) not in rejected
    ]
    assigned = matches_assign(allowed, {pk: f.photo_id for pk, f in faces.items()})
    live = Match.objects.filter(photo_id__in=photo_ids, rejected=False)
    touched = set(live.values_list("user_id", flat=True)) | {c.user_id for c in assigned}
    live.delete()
    Match.objects.bulk_create(
        [
            Match(
                photo_id=faces[c.face_id].photo_id,
                event_id=faces[c.face_id].event_id,
                user_id=c.user_id,
                face_id=c.face_id,
                distance=c.distance,
            )
            for c in assigned
        ]
    )
    _galleries_changed(touched)
    return len(assigned)


def photos_viewers_refresh(*, photo_ids: Iterable[int]) -> None:
    """The photos changed in a way their viewers must see at once (rescanned, deleted)."""
    _galleries_changed(
        Match.objects.filter(photo_id__in=list(photo_ids), rejected=False).values_list(
            "user_id", flat=True
        )
    )


def _galleries_changed(user_ids: Iterable[int]) -> None:
    """After commit, make these users' cached galleries stale at once."""
    user_ids = set(user_ids)
    if user_ids:
        transaction.on_commit(lambda: users_generation_bump(user_ids))


def _member_records(event_id: int) -> list[MemberRecord]:
    return [
        MemberRecord(user_id=s.user_id, descriptor=s.descriptor, engine_ref=s.engine_ref)
        for s in selfies_indexed_for_event(event_id=event_id)
    ]


def _face_records(faces: Iterable[Face]) -> list[FaceRecord]:
    return [
        FaceRecord(
            id=f.pk, photo_id=f.photo_id, descriptor=f.descriptor, engine_face_id=f.engine_face_id
        )
        for f in faces
    ]


def _live_candidates(photo_ids: Sequence[int]) -> list[Candidate]:
    return [
        Candidate(face_id=face_id, user_id=user_id, distance=distance)
        for face_id, user_id, distance in Match.objects.filter(
            photo_id__in=photo_ids, rejected=False, face__isnull=False
        ).values_list("face_id", "user_id", "distance")
    ]


# --- photos -------------------------------------------------------------------------------------
def faces_detect_for_photo(*, event_id: int, photo_id: int, image: Image.Image) -> list[DetectedFace]:
    """The slow part (the engine), run outside any transaction."""
    return engine_get().photo_index(event_id=event_id, photo_id=photo_id, image=image)


def faces_store(*, event_id: int, photo_id: int, detected: Sequence[DetectedFace]) -> int:
    """Replace the photo's faces and match them against the event's members.

    Call inside the transaction that marks the photo done. Running it twice leaves the same rows.
    Returns the number of live matches.
    """
    engine = engine_get()
    _event_lock(event_id)
    live = Match.objects.filter(photo_id=photo_id, rejected=False)
    _galleries_changed(live.values_list("user_id", flat=True))
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
    members = _member_records(event_id)
    if not members:
        return 0
    candidates = engine.photo_candidates(
        event_id=event_id, faces=_face_records(faces), members=members
    )
    return _matches_replace(photo_ids=[photo_id], candidates=candidates)


# --- members ------------------------------------------------------------------------------------
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
    member = MemberRecord(user_id=user_id, descriptor=selfie.descriptor, engine_ref=selfie.engine_ref)
    # The search runs outside the event lock: it may be a network call. A photo stored
    # meanwhile is matched by its own task, which sees this member as indexed already.
    # Plain tuples, not model instances: an event can hold 50,000 faces.
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
        engine_get().member_forget(user_id=user_id, engine_ref=selfie.engine_ref, event_ids=event_ids)
    with transaction.atomic():
        # The same locks that matching holds while it reads members and writes matches: a match
        # computed before this point is deleted here, and none is made after it.
        for event_id in sorted(event_ids):
            _event_lock(event_id)
        Match.objects.filter(user_id=user_id).delete()
        selfie_delete(user_id=user_id)
        _galleries_changed([user_id])


def match_reject(*, user_id: int, photo_id: int) -> bool:
    """"Not me": keep the match as rejected, so that no reprocessing brings it back."""
    with transaction.atomic():
        updated = Match.objects.filter(user_id=user_id, photo_id=photo_id, rejected=False).update(
            rejected=True, face=None
        )
        if updated:
            _galleries_changed([user_id])
    return updated > 0


# --- accounting ---------------------------------------------------------------------------------
def engine_calls_count(*, engine: str, operation: str, count: int = 1) -> None:
    """Add to the persistent per-operation call counter (shared by every process)."""
    updated = EngineCall.objects.filter(engine=engine, operation=operation).update(
        count=F("count") + count, updated_at=timezone.now()
    )
    if not updated:
        _, created = EngineCall.objects.get_or_create(
            engine=engine, operation=operation, defaults={"count": count}
        )
        if not created:
            EngineCall.objects.filter(engine=engine, operation=operation).update(
                count=F("count") + count, updated_at=timezone.now()
            )


def engine_calls_summary() -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = defaultdict(dict)
    for engine, operation, count in EngineCall.objects.values_list("engine", "operation", "count"):
        summary[engine][operation] = count
    return dict(summary)


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
                transaction.on_commit(lambda uid=user_id: async_task("faces.tasks.member_index", uid))
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


# --- batched re-matching ------------------------------------------------------------------------
# Engines that pay per search (Rekognition) propose no candidates as a photo is stored. Instead,
# a stored photo asks for a re-match round of its event; one round runs per window
# (REKOGNITION_MATCH_WINDOW_S) and searches each member once for every photo of the window.
# Everything that coordinates the rounds lives in the shared cache and the database.


def _rematch_key(event_id: int) -> str:
    return f"faces:rematch:{event_id}"


def event_rematch_request(*, event_id: int) -> None:
    """Make sure a re-match round of the event runs within the window, after this commit."""
    transaction.on_commit(lambda: event_rematch_schedule(event_id=event_id))


def event_rematch_schedule(*, event_id: int, delay_s: float | None = None) -> bool:
    """Schedule one round ``window`` seconds from now (or ``delay_s``), unless one is already
    scheduled.

    ``cache.add`` is atomic in the shared cache, so of any number of workers storing photos at
    once exactly one schedules the round. The key lives as long as the window; the round deletes
    it before it looks at the faces, so a photo stored after that schedules the next round.
    """
    from django_q.models import Schedule
    from django_q.tasks import schedule

    window = settings.REKOGNITION_MATCH_WINDOW_S
    key = _rematch_key(event_id)
    if not cache.add(key, timezone.now().isoformat(), timeout=window):
        return False
    try:
        schedule(
            "faces.tasks.event_rematch",
            event_id,
            schedule_type=Schedule.ONCE,
            next_run=timezone.now() + timedelta(seconds=window if delay_s is None else delay_s),
        )
    except Exception:
        cache.delete(key)  # no round is coming: let the next photo try again
        raise
    return True


def member_search_record(*, user_id: int, event_id: int, faces_through: int) -> None:
    """Remember that the member was searched for among the event's faces up to this one."""
    updated = MemberSearch.objects.filter(user_id=user_id, event_id=event_id).update(
        faces_through=Greatest(F("faces_through"), faces_through), searched_at=timezone.now()
    )
    if not updated:
        MemberSearch.objects.get_or_create(
            user_id=user_id,
            event_id=event_id,
            defaults={"faces_through": faces_through, "searched_at": timezone.now()},
        )


def event_rematch(*, event_id: int) -> int:
    """One re-match round: search every indexed member of the event who has not been searched
    for among its newest faces, and merge what each search finds.

    Idempotent and safe to rerun: a member already searched through the newest face costs
    nothing, and each member's merge is its own transaction. Returns the number of searches.
    """
    # From here on a newly stored photo schedules the next round: it may be missed by this one.
    cache.delete(_rematch_key(event_id))
    running = f"faces:rematch:{event_id}:running"
    # As long as django-q2 lets a task live: a killed round's mark must not outlast it by much.
    if not cache.add(running, 1, timeout=settings.PHOTO_TASK_TIMEOUT + 60):
        # Another round is running now with an older view of the faces: come back later.
        event_rematch_schedule(event_id=event_id)
        return 0
    try:
        engine = engine_get()
        faces = [
            FaceRecord(id=pk, photo_id=photo_id, descriptor=descriptor, engine_face_id=engine_id)
            for pk, photo_id, descriptor, engine_id in Face.objects.filter(
                event_id=event_id, engine=engine.name
            ).values_list("pk", "photo_id", "descriptor", "engine_face_id")
        ]
        newest = max((f.id for f in faces), default=0)
        if not newest:
            return 0
        searched = dict(
            MemberSearch.objects.filter(event_id=event_id).values_list("user_id", "faces_through")
        )
        behind = sorted(
            (m for m in _member_records(event_id) if searched.get(m.user_id, 0) < newest),
            key=lambda m: m.user_id,
        )
        # Stop well inside the task's timeout; the members left are the next round's, at once.
        budget_ends = time.monotonic() + settings.PHOTO_TASK_TIMEOUT / 2
        for searched_count, member in enumerate(behind):
            if time.monotonic() > budget_ends:
                event_rematch_schedule(event_id=event_id, delay_s=0)
                return searched_count
            # The search runs outside any transaction or lock: it is a network call.
            fresh = engine.member_candidates(event_id=event_id, member=member, faces=faces)
            _member_merge(user_id=member.user_id, event_id=event_id, fresh=fresh, through=newest)
        return len(behind)
    except Exception:
        # Members not yet searched stay behind the newest face: a later round picks them up.
        event_rematch_schedule(event_id=event_id)
        raise
    finally:
        cache.delete(running)


def _member_merge(*, user_id: int, event_id: int, fresh: Sequence[Candidate], through: int) -> int:
    """Merge one member's fresh candidates into the photos they concern, and record how far
    the member was searched. Each photo is re-assigned with its current matches, so a face
    moves to this member only when they are nearer than its present owner. Returns the
    member's live matches among those photos."""
    with transaction.atomic():
        _event_lock(event_id)
        indexed = Selfie.objects.filter(user_id=user_id, status=Selfie.Status.INDEXED).exists()
        joined = Membership.objects.filter(user_id=user_id, event_id=event_id).exists()
        if not indexed or not joined:
            return 0  # forgotten or left meanwhile: nothing of theirs may be matched
        photo_ids = sorted(
            set(
                Face.objects.filter(pk__in={c.face_id for c in fresh}).values_list(
                    "photo_id", flat=True
                )
            )
        )
        member_search_record(user_id=user_id, event_id=event_id, faces_through=through)
        if not photo_ids:
            return 0
        current = [c for c in _live_candidates(photo_ids) if c.user_id != user_id]
        _matches_replace(photo_ids=photo_ids, candidates=current + list(fresh))
        return Match.objects.filter(photo_id__in=photo_ids, user_id=user_id, rejected=False).count()


def events_rematch_sweep() -> int:
    """Schedule a round for every recently active event with a member behind its newest face.

    The safety net for a lost round (a broker that dropped the task, a round that failed):
    the MemberSearch rows, not the queue, are the record of what is left to search.
    """
    if not getattr(engine_get(), "batched_matching", False):
        return 0
    since = timezone.now() - timedelta(days=1)
    newest_by_event = dict(
        Face.objects.filter(created_at__gte=since)
        .values("event_id")
        .annotate(newest=Max("pk"))
        .values_list("event_id", "newest")
    )
    scheduled = 0
    for event_id, newest in newest_by_event.items():
        indexed = selfies_indexed_for_event(event_id=event_id)
        members = set(indexed.values_list("user_id", flat=True))
        current = set(
            MemberSearch.objects.filter(
                event_id=event_id, user_id__in=members, faces_through__gte=newest
            ).values_list("user_id", flat=True)
        )
        if members - current and event_rematch_schedule(event_id=event_id):
            scheduled += 1
    return scheduled


# --- events -------------------------------------------------------------------------------------
def event_deleted(*, event_id: int) -> None:
    """An event row is being deleted: after commit, delete what the engine holds for it."""
    transaction.on_commit(lambda: async_task("faces.tasks.event_forget", event_id))


def event_forget(*, event_id: int) -> None:
    """Delete every vector the engine holds for the event (Rekognition: its collection)."""
    engine_get().event_forget(event_id=event_id)
    cache.delete(_rematch_key(event_id))
