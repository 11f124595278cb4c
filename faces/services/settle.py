"""Settling an event's faces after its photos are processed: many references per member, then
clusters of the faces nobody claims.

A photo's task matches its faces against the selfies alone, at once (faces.services.indexing):
that is the hot path and stays as it was. Once the event has been quiet for
FACE_SETTLE_QUIET_S (a burst of photos is one pass), or at the latest FACE_SETTLE_MAX_WAIT_S
after it changed, the sweep (every minute, ``events_settle_sweep``) settles it:

1. group every face of the event into clusters (faces.services.clusters);
2. plan every member's candidates from their selfie, their references and confident clusters
   (faces.services.references), and give each face to the nearest member;
3. rewrite the matches of the photos whose plan differs from their live matches (their
   members' galleries refresh at once), staff's assignments kept;
4. store the clusters of the faces nobody claims.

Each step is a function of the event's rows (faces, selfies, "not me"s, staff assignments),
so a second pass over the same rows writes nothing. "Changed" is a signature of those rows
(FaceSettle): new or reprocessed photos, a member indexed or searched, a "not me", a member
gone. Local engine only: with Rekognition the vectors live at AWS (its rounds match), and no
pass runs.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from accounts.selectors import selfies_indexed
from events.selectors import member_ids

from ..engines.base import Candidate
from ..models import Cluster, Face, FaceSettle, Match, MemberSearch
from .clusters import faces_group
from .engines import engine_get
from .matching import STAFF_DISTANCE, event_lock, matches_assign, matches_replace
from .references import (
    FaceSet,
    Limits,
    MemberSet,
    Rejections,
    candidates_plan,
    limits_from_settings,
)

logger = logging.getLogger(__name__)

DESCRIPTOR_SIZE = 128
# Ids per statement (SQLite takes at most 32,766 parameters in one).
CHUNK = 500


def _faces_load(event_id: int) -> FaceSet:
    rows = list(
        Face.objects.filter(event_id=event_id, engine="local", descriptor__isnull=False)
        .order_by("pk")
        .values_list("pk", "photo_id", "descriptor")
    )
    if not rows:
        return FaceSet(
            ids=np.empty(0, dtype=np.int64),
            photos=np.empty(0, dtype=np.int64),
            matrix=np.empty((0, DESCRIPTOR_SIZE), dtype=np.float32),
        )
    return FaceSet(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        photos=np.array([r[1] for r in rows], dtype=np.int64),
        matrix=np.frombuffer(b"".join(bytes(r[2]) for r in rows), dtype=np.float32).reshape(
            -1, DESCRIPTOR_SIZE
        ),
    )


def _members_load(event_id: int) -> MemberSet:
    rows = sorted(
        (s.user_id, bytes(s.descriptor))
        for s in selfies_indexed(user_ids=member_ids(event_id=event_id))
        if s.descriptor
    )
    matrix = (
        np.frombuffer(b"".join(d for _, d in rows), dtype=np.float32).reshape(-1, DESCRIPTOR_SIZE)
        if rows
        else np.empty((0, DESCRIPTOR_SIZE), dtype=np.float32)
    )
    return MemberSet(user_ids=[u for u, _ in rows], matrix=matrix)


def _rejections_load(event_id: int) -> Rejections:
    found = Rejections()
    for photo_id, user_id, face_id in Match.objects.filter(
        event_id=event_id, rejected=True
    ).values_list("photo_id", "user_id", "face_id"):
        found.pairs.add((photo_id, user_id))
        if face_id is not None:
            found.faces.setdefault(user_id, set()).add(face_id)
    return found


def _assigned_load(event_id: int, rejections: Rejections) -> list[Candidate]:
    """Staff's assignments, ranked before any distance: they win every face they name, and
    are no one else's references (recorded in ``rejections``)."""
    found = []
    for face_id, user_id in Match.objects.filter(
        event_id=event_id, rejected=False, assigned=True, face__isnull=False
    ).values_list("face_id", "user_id"):
        rejections.staff[face_id] = user_id
        found.append(Candidate(face_id=face_id, user_id=user_id, distance=STAFF_DISTANCE))
    return found


def event_plan(
    faces: FaceSet,
    members: MemberSet,
    rejections: Rejections,
    limits: Limits,
    *,
    assigned: Sequence[Candidate] = (),
    expand: bool = True,
) -> tuple[list[Candidate], list[list[int]]]:
    """(the matches to hold, nearest member first, and the clusters as rows of ``faces``)."""
    clusters = faces_group(faces, limits.cluster) if len(faces) else []
    plan = candidates_plan(faces, members, rejections, limits, clusters=clusters, expand=expand)
    photo_of = {
        int(f): int(p) for f, p in zip(faces.ids.tolist(), faces.photos.tolist(), strict=True)
    }
    allowed = [
        c
        for c in [*assigned, *plan]
        if (photo_of.get(c.face_id), c.user_id) not in rejections.pairs
    ]
    return matches_assign(allowed, photo_of), clusters


def event_settle(*, event_id: int) -> dict[str, int]:
    """Settle the event's faces (the module docstring). Idempotent: a rerun over unchanged rows
    writes nothing. Returns what it did, for logs and tests."""
    if engine_get().name != "local":
        return {"photos": 0, "clusters": 0}
    signature = event_signature(event_id=event_id)
    faces = _faces_load(event_id)
    members = _members_load(event_id)
    rejections = _rejections_load(event_id)
    limits = limits_from_settings()
    chosen, clusters = event_plan(
        faces, members, rejections, limits, assigned=_assigned_load(event_id, rejections)
    )
    by_photo: dict[int, set[tuple[int, int]]] = defaultdict(set)
    face_photo = {
        int(f): int(p) for f, p in zip(faces.ids.tolist(), faces.photos.tolist(), strict=True)
    }
    for c in chosen:
        by_photo[face_photo[c.face_id]].add((c.face_id, c.user_id))
    with transaction.atomic():
        event_lock(event_id)
        # Rows that moved while the plan was made (a photo reprocessed, a member gone or given a
        # new selfie) are left to the next pass, which the changed signature brings about.
        now_faces = defaultdict(set)
        for face_id, photo_id in Face.objects.filter(event_id=event_id, engine="local").values_list(
            "pk", "photo_id"
        ):
            now_faces[photo_id].add(face_id)
        planned_faces = defaultdict(set)
        for face_id, photo_id in face_photo.items():
            planned_faces[photo_id].add(face_id)
        current = _members_load(event_id)
        same_members = current.user_ids == members.user_ids and np.array_equal(
            current.matrix, members.matrix
        )
        live: dict[int, set[tuple[int, int]]] = defaultdict(set)
        for photo_id, face_id, user_id in Match.objects.filter(
            event_id=event_id, rejected=False, face__isnull=False
        ).values_list("photo_id", "face_id", "user_id"):
            live[photo_id].add((face_id, user_id))
        changed = sorted(
            photo_id
            for photo_id in planned_faces
            if now_faces.get(photo_id) == planned_faces[photo_id]
            and live.get(photo_id, set()) != by_photo.get(photo_id, set())
        )
        moved = _beyond_faces(event_signature(event_id=event_id)) != _beyond_faces(signature)
        if moved or not same_members:
            # A member came, went or has a new selfie, or a "not me" or a staff assignment was
            # made, since the plan: it is stale, and the signature (left behind) brings the next
            # pass. Writing it now could undo what staff just did. (New photos do not make it
            # stale: theirs are left alone, above, and photos arriving all the time must not
            # starve the pass.)
            return {"photos": 0, "clusters": 0}
        for start in range(0, len(changed), CHUNK):
            chunk = set(changed[start : start + CHUNK])
            matches_replace(
                photo_ids=sorted(chunk),
                candidates=[c for c in chosen if face_photo[c.face_id] in chunk],
            )
        stored = _clusters_store(event_id, faces, clusters, chosen, now_faces)
        FaceSettle.objects.update_or_create(
            event_id=event_id,
            defaults={"signature": signature, "stale_since": None, "settled_at": timezone.now()},
        )
    logger.info(
        "event %s settled: %s photos rematched, %s clusters", event_id, len(changed), stored
    )
    return {"photos": len(changed), "clusters": stored}


def _clusters_store(
    event_id: int,
    faces: FaceSet,
    clusters: list[list[int]],
    chosen: list[Candidate],
    now_faces: dict[int, set[int]],
) -> int:
    """Keep, of each cluster, the faces nobody claims; a cluster row per non-empty one, keyed
    by its smallest face id, so that an unchanged cluster keeps its row. Writes only what
    differs, in chunks (an event can hold 50,000 faces)."""
    claimed = {c.face_id for c in chosen}
    existing = set().union(*now_faces.values()) if now_faces else set()
    groups: dict[int, list[int]] = {}
    for rows in clusters:
        ids = sorted(
            face_id
            for face_id in (int(faces.ids[r]) for r in rows)
            if face_id not in claimed and face_id in existing
        )
        if ids:
            groups[ids[0]] = ids
    rows = dict(Cluster.objects.filter(event_id=event_id).values_list("key", "pk"))
    sizes = dict(Cluster.objects.filter(event_id=event_id).values_list("key", "size"))
    gone = [pk for key, pk in rows.items() if key not in groups]
    for start in range(0, len(gone), CHUNK):
        Cluster.objects.filter(pk__in=gone[start : start + CHUNK]).delete()
    Cluster.objects.bulk_create(
        [
            Cluster(event_id=event_id, key=key, size=len(ids))
            for key, ids in groups.items()
            if key not in rows
        ]
    )
    for key, ids in groups.items():
        if key in rows and sizes[key] != len(ids):
            Cluster.objects.filter(pk=rows[key]).update(size=len(ids))
    rows = dict(Cluster.objects.filter(event_id=event_id).values_list("key", "pk"))
    wanted = {face_id: rows[key] for key, ids in groups.items() for face_id in ids}
    current = dict(
        Face.objects.filter(event_id=event_id, cluster__isnull=False).values_list(
            "pk", "cluster_id"
        )
    )
    moves: dict[int | None, list[int]] = defaultdict(list)
    for face_id in current:
        if face_id not in wanted:
            moves[None].append(face_id)
    for face_id, cluster_id in wanted.items():
        if current.get(face_id) != cluster_id:
            moves[cluster_id].append(face_id)
    for cluster_id, face_ids in moves.items():
        for start in range(0, len(face_ids), CHUNK):
            Face.objects.filter(pk__in=face_ids[start : start + CHUNK]).update(
                cluster_id=cluster_id
            )
    return len(groups)


def _beyond_faces(signature: str) -> str:
    """The signature but its faces part (the first, up to the first "|")."""
    return signature.partition("|")[2]


def event_signature(*, event_id: int) -> str:
    """What the settled state depends on, in one cheap string."""
    faces = Face.objects.filter(event_id=event_id, engine="local").aggregate(
        newest=Max("pk"), count=Count("pk")
    )
    matches = Match.objects.filter(event_id=event_id).aggregate(
        n_rejected=Count("pk", filter=Q(rejected=True)),
        n_assigned=Count("pk", filter=Q(assigned=True, rejected=False)),
        last_rejected=Max("rejected_at"),
    )
    members = selfies_indexed(user_ids=member_ids(event_id=event_id)).aggregate(
        count=Count("pk"), newest=Max("indexed_at")
    )
    searched = MemberSearch.objects.filter(event_id=event_id).aggregate(last=Max("searched_at"))
    last_rejected = matches["last_rejected"].isoformat() if matches["last_rejected"] else ""
    newest_member = members["newest"].isoformat() if members["newest"] else ""
    last_searched = searched["last"].isoformat() if searched["last"] else ""
    return (
        f"f{faces['newest'] or 0}:{faces['count']}|r{matches['n_rejected']}:{last_rejected}"
        f"|a{matches['n_assigned']}|m{members['count']}:{newest_member}|s{last_searched}"
    )[:200]


def events_settle_sweep() -> int:
    """Settle every recently active event whose signature changed and that has been quiet for
    FACE_SETTLE_QUIET_S, or changed FACE_SETTLE_MAX_WAIT_S ago. Runs every minute. Returns how
    many events it settled."""
    if engine_get().name != "local":
        return 0
    if not cache.add("faces:settle-sweep", 1, timeout=settings.PHOTO_TASK_TIMEOUT + 60):
        return 0  # another sweep is running: it sees the same events
    try:
        return _sweep()
    finally:
        cache.delete("faces:settle-sweep")


def _event_ids(rows) -> list[int]:  # noqa: ANN001 - any queryset with an event_id
    return list(rows.order_by().values_list("event_id", flat=True).distinct())


def _sweep() -> int:
    now = timezone.now()
    since = now - timedelta(days=settings.FACE_SETTLE_ACTIVE_DAYS)
    event_ids = (
        set(_event_ids(Face.objects.filter(created_at__gte=since)))
        | set(_event_ids(Match.objects.filter(rejected_at__gte=since)))
        | set(_event_ids(MemberSearch.objects.filter(searched_at__gte=since)))
        | set(_event_ids(FaceSettle.objects.filter(settled_at__gte=since)))
    )
    settled = 0
    quiet = timedelta(seconds=settings.FACE_SETTLE_QUIET_S)
    longest = timedelta(seconds=settings.FACE_SETTLE_MAX_WAIT_S)
    for event_id in sorted(event_ids):
        signature = event_signature(event_id=event_id)
        row, _ = FaceSettle.objects.get_or_create(event_id=event_id)
        if row.signature == signature:
            continue
        if row.stale_since is None:
            FaceSettle.objects.filter(pk=row.pk, stale_since__isnull=True).update(stale_since=now)
            row.stale_since = now
        newest = Face.objects.filter(event_id=event_id).aggregate(at=Max("created_at"))["at"]
        if newest is not None and now - newest < quiet and now - row.stale_since < longest:
            continue  # photos are still coming: one pass for all of them, a little later
        try:
            event_settle(event_id=event_id)
        except Exception:
            # The signature stays behind: the next sweep tries this event again.
            logger.exception("settling the faces of event %s failed", event_id)
            continue
        settled += 1
    return settled
