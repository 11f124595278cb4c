"""Matching on real faces: every photo of a member is found, no one sees a stranger's photo,
whatever the order in which selfies and photos arrive."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Selfie
from accounts.services import selfie_store
from events.models import Membership
from faces.models import Face, Match
from faces.services import member_index, member_match_event
from photos.models import Photo
from photos.services import photo_ingest, photo_process
from tests.conftest import uploaded

pytestmark = [pytest.mark.django_db, pytest.mark.faces]


def ingest(event, staff_user, path: Path) -> Photo:
    upload = uploaded(path.name, path.read_bytes(), content_type="image/jpeg")
    return photo_ingest(event=event, upload=upload, uploaded_by=staff_user).photo


def enrol(user, path: Path) -> None:
    selfie_store(user=user, upload=SimpleUploadedFile("s.jpg", path.read_bytes()))
    assert member_index(user_id=user.pk) is True


def matched(user) -> set[int]:
    return set(Match.objects.filter(user=user, rejected=False).values_list("photo_id", flat=True))


@pytest.fixture
def scene(faces_dir, faces_truth, event, staff_user, django_user_model):
    """Each person's first photo is their selfie; every other photo is an event photo."""
    people = sorted(p.name for p in (faces_dir / "people").iterdir())
    members, selfies, truth = {}, {}, {}
    for name in people:
        photos = sorted((faces_dir / "people" / name).glob("*.jpg"))
        selfies[name] = photos[0]
        members[name] = django_user_model.objects.create_user(username=name, password="x")
        Membership.objects.create(user=members[name], event=event)
        for path in photos[1:]:
            truth[path] = {name}
    for group, info in faces_truth["groups"].items():
        truth[faces_dir / "groups" / group] = set(info["people"])
    truth[faces_dir / "no_faces" / "dogs.jpg"] = set()
    return {"people": people, "members": members, "selfies": selfies, "truth": truth}


def assert_exact(scene, photos: dict[Path, Photo]) -> None:
    for name, user in scene["members"].items():
        expected = {photos[p].pk for p, who in scene["truth"].items() if name in who}
        got = matched(user)
        strangers = {p.name for p, ph in photos.items() if ph.pk in got - expected}
        missed = {p.name for p, ph in photos.items() if ph.pk in expected - got}
        assert not strangers, f"{name} was shown photos they are not in: {strangers}"
        assert not missed, f"{name} misses photos they are in: {missed}"


def test_members_see_exactly_their_photos_whatever_the_order(scene, event, staff_user):
    names = scene["people"]
    early, late = names[: len(names) // 2], names[len(names) // 2 :]
    # Half the members register before any photo is processed...
    for name in early:
        enrol(scene["members"][name], scene["selfies"][name])
    photos = {path: ingest(event, staff_user, path) for path in scene["truth"]}
    for photo in photos.values():
        assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    # ...and half after: they are back-matched against the faces already stored.
    for name in late:
        enrol(scene["members"][name], scene["selfies"][name])
    assert_exact(scene, photos)
    bald = photos[next(p for p in photos if p.name == "bald_guys.jpg")]
    assert Face.objects.filter(photo=bald).count() == 24
    assert not Match.objects.filter(photo=bald).exists()


def test_a_face_goes_to_one_member_only_and_each_member_once_per_photo(scene, event, staff_user):
    for name in scene["people"]:
        enrol(scene["members"][name], scene["selfies"][name])
    group = next(p for p in scene["truth"] if p.name == "obama_and_biden.jpg")
    photo = ingest(event, staff_user, group)
    photo_process(photo_id=photo.pk)
    matches = Match.objects.filter(photo=photo, rejected=False)
    assert matches.count() == 2
    assert len(set(matches.values_list("face_id", flat=True))) == 2
    assert {m.user.username for m in matches} == {"obama", "biden"}


def test_members_of_another_event_never_match(scene, event, staff_user, django_user_model):
    from events.models import Event

    other = Event.objects.create(name="Elsewhere", slug="elsewhere")
    outsider = django_user_model.objects.create_user(username="obama-elsewhere", password="x")
    Membership.objects.create(user=outsider, event=other)
    enrol(outsider, scene["selfies"]["obama"])
    photo = ingest(event, staff_user, scene["selfies"]["obama"].parent / "obama_2.jpg")
    photo_process(photo_id=photo.pk)
    assert matched(outsider) == set()
    # Joining later does not leak either: the back-match is per joined event.
    member_match_event(user_id=outsider.pk, event_id=other.pk)
    assert matched(outsider) == set()


def test_selfie_without_a_face_fails_indexing_and_matches_nothing(scene, faces_dir):
    user = scene["members"]["obama"]
    selfie_store(
        user=user,
        upload=SimpleUploadedFile("d.jpg", (faces_dir / "no_faces/dogs.jpg").read_bytes()),
    )
    assert member_index(user_id=user.pk) is False
    selfie = Selfie.objects.get(user=user)
    assert selfie.status == Selfie.Status.FAILED
    assert "exactly one face" in selfie.error
