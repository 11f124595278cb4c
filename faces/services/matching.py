"""The matching rules every engine shares: who may match whom, one face per member and one
member per face, nearest first, and "not me" kept for good."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from PIL import Image

from accounts.models import Selfie
from accounts.selectors import selfies_indexed_for_event
from core.generations import users_generation_bump

from ..engines import engine_get
from ..engines.base import Candidate, DetectedFace, FaceRecord, MemberRecord
from ..models import Face, Match, MemberSearch

Event = Face.event.field.related_model
Membership = Event.memberships.rel.related_model


def _event_lock(event_id: int) -> None:
    """Serialise matching within one event, so that a photo finished while a member enrols is
    seen by one side or the other, never by neither. (SQLite already serialises writers.)"""
    list(Event.objects.select_for_update().filter(pk=event_id).values_list("pk", flat=True))


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


def _matches_replace(*, photo_ids: Sequence[int], candidates: Sequence[Candidate]) -> int:
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


def event_viewers_refresh(*, event_id: int) -> None:
    """The event is being deleted: after commit, its members' galleries must drop its photos."""
    _galleries_changed(
        Match.objects.filter(event_id=event_id, rejected=False).values_list("user_id", flat=True)
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


def faces_detect_for_photo(
    *,
    event_id: int,
    photo_id: int,
    image: Image.Image,
    source: Callable[[], Image.Image] | None = None,
) -> list[DetectedFace]:
    """The slow part (the engine), run outside any transaction. ``source`` returns the photo
    at full resolution, for engines that look closer at small faces."""
    return engine_get().photo_index(
        event_id=event_id, photo_id=photo_id, image=image, source=source
    )


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


def match_reject(*, user_id: int, photo_id: int) -> bool:
    """ "Not me": keep the match as rejected, so that no reprocessing brings it back."""
    with transaction.atomic():
        updated = Match.objects.filter(user_id=user_id, photo_id=photo_id, rejected=False).update(
            rejected=True, face=None
        )
        if updated:
            _galleries_changed([user_id])
    return updated > 0


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
