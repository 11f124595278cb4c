"""Batched re-matching for engines that pay per search (Rekognition).

Such engines propose no candidates as a photo is stored. Instead, a stored photo asks for a
re-match round of its event; one round runs per window (REKOGNITION_MATCH_WINDOW_S) and
searches each member once for every photo of the window. Everything that coordinates the
rounds lives in the shared cache and the database.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.selectors import selfies_indexed
from core import jobs
from events.selectors import member_ids

from ..engines.base import FaceRecord
from ..models import CollectionFace, Face, MemberSearch
from .engines import engine_get
from .matching import member_merge, member_records


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
        # Stop well inside the task's timeout; the members left are the next round's, at once.
        budget_ends = time.monotonic() + settings.PHOTO_TASK_TIMEOUT / 2
        for searched_count, member in enumerate(behind):
            if time.monotonic() > budget_ends:
                event_rematch_schedule(event_id=event_id, delay_s=0)
                return searched_count
            # The search runs outside any transaction or lock: it is a network call.
            fresh = engine.member_candidates(event_id=event_id, member=member, faces=faces)
            member_merge(user_id=member.user_id, event_id=event_id, fresh=fresh, through=newest)
        return len(behind)
    except Exception:
        # Members not yet searched stay behind the newest face: a later round picks them up.
        event_rematch_schedule(event_id=event_id)
        raise
    finally:
        cache.delete(running)


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
