"""The matching rules every engine shares: who may match whom, one face per member and one
member per face, nearest first, and "not me" kept for good."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.selectors import selfie_image, selfie_is_indexed, selfies_indexed
from core.counters import row_upsert
from core.generations import users_generation_bump
from core.locks import transaction_lock
from events.selectors import member_ids, member_is_in

from ..engines.base import Candidate, FaceRecord, MemberRecord
from ..models import Face, Match, MemberSearch

# How long "not me" can be undone (match_restore). The page offers it for seconds; the margin
# is for a slow network, and for the page without JavaScript, which offers it on the next load.
RESTORE_WINDOW = timedelta(minutes=5)
# The rank of a match staff made (Match.assigned): before any distance, so that no re-match
# gives their face to someone else.
STAFF_DISTANCE = -1.0


def event_lock(event_id: int) -> None:
    """Serialise matching within one event, so that a photo finished while a member enrols is
    seen by one side or the other, never by neither. Held until the transaction ends."""
    transaction_lock("faces:event-matching", event_id)


def matches_assign(candidates: Iterable[Candidate], face_photo: dict[int, int]) -> list[Candidate]:
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


def matches_replace(*, photo_ids: Sequence[int], candidates: Sequence[Candidate]) -> int:
    """Make the live matches of these photos exactly the assignment of these candidates."""
    if not photo_ids:
        return 0
    rejected = set(
        Match.objects.filter(photo_id__in=photo_ids, rejected=True).values_list(
            "photo_id", "user_id"
        )
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
    # Staff's assignments keep their mark and the distance they were stored with (their
    # candidates rank first, at STAFF_DISTANCE).
    by_staff = {
        (face_id, user_id): distance
        for face_id, user_id, distance in live.filter(assigned=True).values_list(
            "face_id", "user_id", "distance"
        )
    }
    live.delete()
    Match.objects.bulk_create(
        [
            Match(
                photo_id=faces[c.face_id].photo_id,
                event_id=faces[c.face_id].event_id,
                user_id=c.user_id,
                face_id=c.face_id,
                distance=by_staff.get((c.face_id, c.user_id), c.distance),
                assigned=(c.face_id, c.user_id) in by_staff,
            )
            for c in assigned
        ]
    )
    galleries_changed(touched)
    return len(assigned)


def photos_viewers_refresh(*, photo_ids: Iterable[int]) -> None:
    """The photos changed in a way their viewers must see at once (rescanned, deleted)."""
    galleries_changed(
        Match.objects.filter(photo_id__in=list(photo_ids), rejected=False).values_list(
            "user_id", flat=True
        )
    )


def event_viewers_refresh(*, event_id: int) -> None:
    """The event is being deleted: after commit, its members' galleries must drop its photos."""
    galleries_changed(
        Match.objects.filter(event_id=event_id, rejected=False).values_list("user_id", flat=True)
    )


def galleries_changed(user_ids: Iterable[int]) -> None:
    """After commit, make these users' cached galleries stale at once."""
    user_ids = set(user_ids)
    if user_ids:
        transaction.on_commit(lambda: users_generation_bump(user_ids))


def member_record(*, user_id: int, descriptor: bytes | None, engine_ref: str) -> MemberRecord:
    """A member as an engine sees it; the selfie is loaded only if the engine asks."""
    return MemberRecord(
        user_id=user_id,
        descriptor=descriptor,
        engine_ref=engine_ref,
        selfie=lambda: selfie_image(user_id=user_id),
    )


def member_records(event_id: int) -> list[MemberRecord]:
    return [
        member_record(user_id=s.user_id, descriptor=s.descriptor, engine_ref=s.engine_ref)
        for s in selfies_indexed(user_ids=member_ids(event_id=event_id))
    ]


def face_records(faces: Iterable[Face]) -> list[FaceRecord]:
    return [
        FaceRecord(
            id=f.pk, photo_id=f.photo_id, descriptor=f.descriptor, engine_face_id=f.engine_face_id
        )
        for f in faces
    ]


def _live_candidates(photo_ids: Sequence[int]) -> list[Candidate]:
    return [
        Candidate(
            face_id=face_id, user_id=user_id, distance=STAFF_DISTANCE if assigned else distance
        )
        for face_id, user_id, distance, assigned in Match.objects.filter(
            photo_id__in=photo_ids, rejected=False, face__isnull=False
        ).values_list("face_id", "user_id", "distance", "assigned")
    ]


def match_reject(*, user_id: int, photo_id: int) -> bool:
    """ "Not me": keep the match as rejected, so that no reprocessing brings it back.

    The rejected row keeps its face, which is what ``match_restore`` gives back; the
    constraint on live faces no longer counts it, so the face is free for another member.
    """
    with transaction.atomic():
        updated = Match.objects.filter(user_id=user_id, photo_id=photo_id, rejected=False).update(
            rejected=True, rejected_at=timezone.now()
        )
        if updated:
            galleries_changed([user_id])
    return updated > 0


def match_restore(*, user_id: int, photo_id: int) -> bool:
    """Undo "not me", within ``RESTORE_WINDOW`` of it: the member is matched in the photo again,
    with the face they had, as if they had never rejected it.

    The face goes back by the usual rule, nearest first: if another member was given it since
    and is nearer, nothing changes. Nor can it be undone once the photo's faces were found
    again (the face is gone) or after the window: "not me" is then for good, as promised.
    Returns whether the match is live again.
    """
    with transaction.atomic():
        rejected = Match.objects.filter(
            user_id=user_id,
            photo_id=photo_id,
            rejected=True,
            rejected_at__gte=timezone.now() - RESTORE_WINDOW,
            face__isnull=False,
        )
        event_id = rejected.values_list("event_id", flat=True).first()
        if event_id is None:
            return False
        # Matching in this event waits, and the row is read again under the lock: a rematch or
        # a rescan may have moved or removed the face meanwhile.
        event_lock(event_id)
        row = rejected.first()
        if row is None:
            return False
        mine = Candidate(face_id=row.face_id, user_id=user_id, distance=row.distance)
        others = _live_candidates([photo_id])
        chosen = matches_assign([*others, mine], {c.face_id: photo_id for c in [*others, mine]})
        if mine not in chosen:
            return False
        row.delete()  # the live row replaces it; matches_replace must not see the rejection
        matches_replace(photo_ids=[photo_id], candidates=[*others, mine])
    return True


def member_search_record(*, user_id: int, event_id: int, faces_through: int) -> None:
    """Remember that the member was searched for among the event's faces up to this one."""
    now = timezone.now()
    row_upsert(
        MemberSearch,
        key={"user_id": user_id, "event_id": event_id},
        update={"faces_through": Greatest(F("faces_through"), faces_through), "searched_at": now},
        create={"faces_through": faces_through, "searched_at": now},
    )


def member_merge(*, user_id: int, event_id: int, fresh: Sequence[Candidate], through: int) -> int:
    """Merge one member's fresh candidates into the photos they concern, and record how far
    the member was searched. Each photo is re-assigned with its current matches, so a face
    moves to this member only when they are nearer than its present owner. Returns the
    member's live matches among those photos."""
    with transaction.atomic():
        event_lock(event_id)
        indexed = selfie_is_indexed(user_id=user_id)
        joined = member_is_in(user_id=user_id, event_id=event_id)
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
        matches_replace(photo_ids=photo_ids, candidates=current + list(fresh))
        return Match.objects.filter(photo_id__in=photo_ids, user_id=user_id, rejected=False).count()
