"""Batched re-matching for engines that pay per search (Rekognition).

Such engines propose no candidates as a photo is stored. Instead, a stored photo asks for a
re-match round of its event, and a round searches each member behind the newest face once,
whatever the number of photos it covers. So the cost of matching is members x rounds, and
when rounds run is the trade-off between calls and lag (bench/rekognition.py, README):

- a round waits until no face has been stored in the event for REKOGNITION_MATCH_WINDOW_S
  (60 s): a burst of photos is one round, run a window after its last photo;
- but never longer than REKOGNITION_MATCH_MAX_WAIT_S (240 s) after the oldest face not yet
  searched for every member: photos trickling in for hours are searched every 4 minutes.

100 photos and 50 members (25 before the photos, 25 after) cost 150 calls in a burst, and
200 over 10 minutes at 10 photos a minute (the prototype's round per window: 600), with every
photo matched within the maximum wait plus one round.

A round may search per new face instead (SearchUsers against the members made Rekognition
Users), when that is cheaper and the rounds' savings have paid for the Users
(REKOGNITION_ROUND_STRATEGY=cheaper, ``_round_per_face_users``): a photo every 5 minutes with 25
members behind costs 4 searches a round instead of 25. Everything that coordinates the rounds
lives in the shared cache and the database.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from accounts.selectors import selfies_indexed
from core import jobs
from core.counters import row_add
from core.models import Counter
from events.models import Event
from events.selectors import member_ids

from ..engines.base import Candidate, FaceEngine, FaceRecord, MemberRecord, SelfieUnusable
from ..models import CollectionFace, Face, MemberSearch
from .engines import engine_get
from .matching import member_merge, member_records
from .selfies import members_for_search, selfie_retake_request

logger = logging.getLogger(__name__)


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
    # The mark lives until the round it stands for is due: until then, no photo adds another.
    if not cache.add(key, timezone.now().isoformat(), timeout=max(window, delay_s or 0) + 1):
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
            (m for m in member_records(event_id) if searched.get(m.user_id, 0) < newest),
            key=lambda m: m.user_id,
        )
        if not behind:
            return 0
        wait = _round_wait_s(
            event_id=event_id, through=min(searched.get(m.user_id, 0) for m in behind)
        )
        if wait > 0:
            # Photos are still coming: one round for all of them, a little later.
            event_rematch_schedule(event_id=event_id, delay_s=wait)
            return 0
        behind = members_for_search(behind)
        through = min(searched.get(m.user_id, 0) for m in behind)
        new_faces = [f for f in faces if f.id > through]
        users = _round_per_face_users(
            event_id=event_id, engine=engine, behind=behind, new_faces=new_faces
        )
        if users is not None:
            return _round_per_face(
                event_id=event_id, engine=engine, users=users, new_faces=new_faces, newest=newest
            )
        # Stop well inside the task's timeout; the members left are the next round's, at once.
        budget_ends = time.monotonic() + settings.PHOTO_TASK_TIMEOUT / 2
        for searched_count, member in enumerate(behind):
            if time.monotonic() > budget_ends:
                event_rematch_schedule(event_id=event_id, delay_s=0)
                return searched_count
            # The search runs outside any transaction or lock: it is a network call.
            try:
                fresh = engine.member_candidates(event_id=event_id, member=member, faces=faces)
            except SelfieUnusable as exc:
                selfie_retake_request(user_id=member.user_id, reason=str(exc))
                continue
            member_merge(user_id=member.user_id, event_id=event_id, fresh=fresh, through=newest)
        return len(behind)
    except Exception:
        # Members not yet searched stay behind the newest face: a later round picks them up.
        event_rematch_schedule(event_id=event_id)
        raise
    finally:
        cache.delete(running)


def _round_per_face_users(
    *, event_id: int, engine: FaceEngine, behind: list[MemberRecord], new_faces: list[FaceRecord]
) -> set[int] | None:
    """The members (all Users of the collection by now) to search for per new face in this
    round, or None when the round searches per member.

    Per member costs one search per member behind; per new face one per face, once every
    member is a User of the collection, which costs two calls per member, once. That is a ski
    rental: each round that would have been cheaper per face adds what it would have saved to
    the event's bank (a Counter row), and once the bank covers the members' enrolment they are
    enrolled, and from then on each round takes the cheaper way. The total is at most about
    twice the cheaper of the two, whatever comes; a burst or a steady stream (more new faces
    than members a round) never enrols anyone.
    """
    if settings.REKOGNITION_ROUND_STRATEGY != "cheaper" or not hasattr(engine, "faces_candidates"):
        return None
    saving = len(behind) - len(new_faces)
    if saving <= 0:
        return None
    enrolled = set(
        MemberSearch.objects.filter(event_id=event_id, user_id__in=[m.user_id for m in behind])
        .exclude(user_face_id="")
        .values_list("user_id", flat=True)
    )
    missing = [m for m in behind if m.user_id not in enrolled]
    if not missing:
        return enrolled
    bank = f"faces:rounds:saving:{event_id}"
    row_add(Counter, key={"name": bank}, field="value", amount=saving)
    if Counter.objects.filter(name=bank).values_list("value", flat=True).get() < 2 * len(missing):
        return None
    for member in missing:
        try:
            face_id = engine.member_user_enroll(event_id=event_id, member=member)
        except SelfieUnusable as exc:
            selfie_retake_request(user_id=member.user_id, reason=str(exc))
            continue
        recorded = MemberSearch.objects.filter(user_id=member.user_id, event_id=event_id).update(
            user_face_id=face_id
        )
        if recorded:
            enrolled.add(member.user_id)
        else:  # forgotten meanwhile: nothing of theirs may stay at AWS
            engine.member_user_forget(event_id=event_id, user_id=member.user_id, face_id=face_id)
    Counter.objects.filter(name=bank).update(value=0)
    return enrolled


def _round_per_face(
    *,
    event_id: int,
    engine: FaceEngine,
    users: set[int],
    new_faces: list[FaceRecord],
    newest: int,
) -> int:
    """Search each new face once among the members (SearchUsers), and merge per member."""
    found: dict[int, list[Candidate]] = defaultdict(list)
    for candidate in engine.faces_candidates(event_id=event_id, faces=new_faces, user_ids=users):
        found[candidate.user_id].append(candidate)
    for user_id in sorted(users):
        member_merge(user_id=user_id, event_id=event_id, fresh=found[user_id], through=newest)
    return len(new_faces)


def _round_wait_s(*, event_id: int, through: int) -> float:
    """Seconds this round should still wait: until the event has been quiet for the window, but
    no longer than the maximum wait after the oldest face not searched for every member."""
    times = Face.objects.filter(event_id=event_id, pk__gt=through).aggregate(
        oldest=Min("created_at"), newest=Max("created_at")
    )
    if times["newest"] is None:
        return 0.0
    quiet = times["newest"] + timedelta(seconds=settings.REKOGNITION_MATCH_WINDOW_S)
    longest = times["oldest"] + timedelta(seconds=settings.REKOGNITION_MATCH_MAX_WAIT_S)
    return max(0.0, (min(quiet, longest) - timezone.now()).total_seconds())


def events_rematch_sweep() -> int:
    """Schedule a round for every recently active event with a member behind its newest face.

    The safety net for a lost round (a broker that dropped the task, a round that failed):
    the MemberSearch rows, not the queue, are the record of what is left to search.
    """
    if not engine_get().batched_matching:
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
        indexed = selfies_indexed(user_ids=member_ids(event_id=event_id))
        members = set(indexed.values_list("user_id", flat=True))
        current = set(
            MemberSearch.objects.filter(
                event_id=event_id, user_id__in=members, faces_through__gte=newest
            ).values_list("user_id", flat=True)
        )
        if members - current and event_rematch_schedule(event_id=event_id):
            scheduled += 1
    return scheduled


def event_deleted(*, event_id: int) -> None:
    """An event row is being deleted: after commit, delete what the engine holds for it."""
    transaction.on_commit(lambda: jobs.enqueue("faces.tasks.event_forget", event_id))


def event_forget(*, event_id: int) -> None:
    """Delete every vector the engine holds for the event (Rekognition: its collection), and
    the records of them."""
    engine_get().event_forget(event_id=event_id)
    CollectionFace.objects.filter(event_id=event_id).delete()
    cache.delete(_rematch_key(event_id))


def collections_orphaned_sweep() -> int:
    """Delete every collection at AWS whose event is gone, whatever the timing that left it:
    a photo indexed (and its collection made again) after its event's collection was deleted,
    by a worker killed before it could delete it itself. Returns how many were deleted."""
    if settings.FACE_ENGINE != "rekognition":
        return 0
    engine = engine_get()
    held = set(engine.collections_list())
    alive = set(Event.objects.filter(pk__in=held).values_list("pk", flat=True))
    for event_id in sorted(held - alive):
        event_forget(event_id=event_id)
    # A search past 4096 makes a user of its own and deletes it at its end; a worker killed
    # in between leaves it. Older than any task may run, it is a leftover. Only the events
    # with recent faces can have searches, so only their collections are listed.
    recent = Face.objects.filter(
        event_id__in=alive, created_at__gte=timezone.now() - timedelta(days=2)
    ).values_list("event_id", flat=True)
    older_than_s = max(3600, 2 * settings.PHOTO_TASK_TIMEOUT)
    for event_id in sorted(set(recent)):
        left = engine.search_users_leftover_delete(event_id=event_id, older_than_s=older_than_s)
        if left:
            logger.warning("event %s: %s users of killed searches deleted", event_id, left)
    return len(held - alive)
