"""What members do to their gallery: "not me" for good, and deleting all their face data."""

from __future__ import annotations

import numpy as np
import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Selfie
from accounts.services import selfie_store
from events.models import Event, Membership
from faces.engines.base import DetectedFace
from faces.engines.local import LocalEngine
from faces.models import Face, Match
from faces.services import member_index, selfie_register
from faces.services.engines import _engines
from photos.models import Photo
from photos.services import photo_ingest, photo_process, photo_reprocess
from tests.conftest import jpeg_bytes, uploaded

pytestmark = pytest.mark.django_db

MY_PHOTOS = "/api/my-photos/"


def my_photo_ids(client: APIClient) -> list[int]:
    answer = client.get(MY_PHOTOS)
    assert answer.status_code == 200, answer.content
    return [p["id"] for p in answer.json()["results"]]


def descriptor(seed: int) -> bytes:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return (vector / np.linalg.norm(vector) * 0.5).tobytes()


def indexed_member(user, event: Event, seed: int, engine_ref: str = "") -> Selfie:
    Membership.objects.get_or_create(user=user, event=event)
    return Selfie.objects.create(
        user=user,
        image=f"selfies/{user.pk}/x.jpg",
        consent_at=timezone.now(),
        status=Selfie.Status.INDEXED,
        indexed_at=timezone.now(),
        descriptor=descriptor(seed),
        engine="local",
        engine_ref=engine_ref,
    )


class ScriptedEngine(LocalEngine):
    """The local engine's matching, with detection replaced by a fixed answer (no dlib)."""

    def __init__(self, faces: list[DetectedFace]) -> None:
        super().__init__(threshold=0.5)
        self.faces = faces
        self.forgotten: list[dict] = []

    def photo_index(self, *, event_id, photo_id, image, source=None):
        return list(self.faces)

    def member_forget(self, *, user_id, engine_ref, event_ids):
        self.forgotten.append(
            {"user_id": user_id, "engine_ref": engine_ref, "event_ids": event_ids}
        )


# --- not me ------------------------------------------------------------------------------------
def test_not_me_survives_a_reprocess_of_the_photo(
    event, staff_user, attendee, attendee_client, django_user_model, monkeypatch,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    friend = django_user_model.objects.create_user(username="fred", password="x")
    indexed_member(attendee, event, seed=1)
    indexed_member(friend, event, seed=2)
    engine = ScriptedEngine(
        [
            DetectedFace(0.1, 0.1, 0.2, 0.2, descriptor=descriptor(1)),
            DetectedFace(0.5, 0.1, 0.2, 0.2, descriptor=descriptor(2)),
        ]
    )
    monkeypatch.setitem(_engines, settings.FACE_ENGINE, engine)
    photo = photo_ingest(
        event=event,
        upload=uploaded("p.jpg", jpeg_bytes((320, 240)), content_type="image/jpeg"),
        uploaded_by=staff_user,
    ).photo
    with django_capture_on_commit_callbacks(execute=True):
        assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    assert my_photo_ids(attendee_client) == [photo.pk]

    with django_capture_on_commit_callbacks(execute=True):
        answer = attendee_client.post(f"/api/photos/{photo.pk}/not-me/")
    assert answer.status_code == 204
    assert my_photo_ids(attendee_client) == []

    assert photo_reprocess(photo_id=photo.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert photo_process(photo_id=photo.pk) == Photo.Status.DONE

    mine = Match.objects.get(photo=photo, user=attendee)
    assert mine.rejected is True and mine.face_id is None
    assert Face.objects.filter(photo=photo).count() == 2  # the face was found again...
    assert my_photo_ids(attendee_client) == []  # ...and still not given back to the member
    assert Match.objects.filter(photo=photo, user=friend, rejected=False).exists()
    assert attendee_client.get(f"/api/photos/{photo.pk}/thumb/").status_code == 404


def test_not_me_on_a_photo_i_am_not_in_is_404_and_changes_nothing(
    event, attendee, attendee_client, django_user_model
):
    other = django_user_model.objects.create_user(username="bob", password="x")
    photo = Photo.objects.create(
        event=event, sha256="d" * 64, original="photos/x.jpg", content_type="image/jpeg",
        size=1, status=Photo.Status.DONE,
    )  # fmt: skip
    Match.objects.create(photo=photo, event=event, user=other, distance=0.2)

    answer = attendee_client.post(f"/api/photos/{photo.pk}/not-me/")

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    assert not Match.objects.filter(user=attendee).exists()
    assert Match.objects.filter(user=other, rejected=False).count() == 1


def test_not_me_needs_a_login():
    answer = APIClient().post("/api/photos/1/not-me/")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "not_authenticated"


@pytest.mark.faces
def test_not_me_survives_a_reprocess_with_real_faces(
    faces_dir, event, staff_user, django_user_model, django_capture_on_commit_callbacks
):
    """The real path: selfies indexed by dlib, a group photo processed, reprocessed."""
    clients = {}
    for name in ("obama", "biden"):
        user = django_user_model.objects.create_user(username=name, password="x")
        Membership.objects.create(user=user, event=event)
        with open(faces_dir / "people" / name / f"{name}_1.jpg", "rb") as fh:
            selfie_register(
                user=user, upload=SimpleUploadedFile(f"{name}.jpg", fh.read()), consent="true"
            )
        assert member_index(user_id=user.pk)
        clients[name] = APIClient()
        clients[name].force_authenticate(user)
    with open(faces_dir / "groups" / "two_people.jpg", "rb") as fh:
        photo = photo_ingest(
            event=event,
            upload=uploaded("two.jpg", fh.read(), content_type="image/jpeg"),
            uploaded_by=staff_user,
        ).photo
    with django_capture_on_commit_callbacks(execute=True):
        assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    assert my_photo_ids(clients["obama"]) == [photo.pk]
    assert my_photo_ids(clients["biden"]) == [photo.pk]

    with django_capture_on_commit_callbacks(execute=True):
        assert clients["obama"].post(f"/api/photos/{photo.pk}/not-me/").status_code == 204
    assert photo_reprocess(photo_id=photo.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert photo_process(photo_id=photo.pk) == Photo.Status.DONE

    assert my_photo_ids(clients["obama"]) == []
    assert my_photo_ids(clients["biden"]) == [photo.pk]
    obama = Match.objects.get(photo=photo, user__username="obama")
    assert obama.rejected is True
    assert Photo.objects.get(pk=photo.pk).face_count == 2


# --- delete my face data -----------------------------------------------------------------------
def test_delete_face_data_removes_selfie_file_descriptor_engine_vectors_and_matches(
    event, attendee, attendee_client, django_user_model, monkeypatch,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    other_event = Event.objects.create(name="Race", slug="race")
    other = django_user_model.objects.create_user(username="bob", password="x")
    selfie = selfie_store(user=attendee, upload=SimpleUploadedFile("s.jpg", jpeg_bytes()))
    Selfie.objects.filter(pk=selfie.pk).update(
        status=Selfie.Status.INDEXED,
        indexed_at=timezone.now(),
        descriptor=descriptor(1),
        engine_ref="engine-user-ann",
    )
    selfie_file = selfie.image.name
    assert default_storage.exists(selfie_file)
    Membership.objects.create(user=attendee, event=event)
    Membership.objects.create(user=attendee, event=other_event)
    photos = [
        Photo.objects.create(
            event=e, sha256=f"{i}" * 64, original=f"photos/{i}.jpg", content_type="image/jpeg",
            size=1, status=Photo.Status.DONE,
        )
        for i, e in enumerate([event, event, other_event])
    ]  # fmt: skip
    face = Face.objects.create(
        photo=photos[0], event=event, index=0, left=0, top=0, width=0.1, height=0.1,
        descriptor=descriptor(1), engine="local",
    )  # fmt: skip
    Match.objects.create(photo=photos[0], event=event, user=attendee, face=face, distance=0.2)
    Match.objects.create(photo=photos[1], event=event, user=attendee, distance=0.2, rejected=True)
    Match.objects.create(photo=photos[2], event=other_event, user=attendee, distance=0.3)
    Match.objects.create(photo=photos[1], event=event, user=other, distance=0.3)
    engine = ScriptedEngine([])
    monkeypatch.setitem(_engines, settings.FACE_ENGINE, engine)
    assert len(my_photo_ids(attendee_client)) == 2  # cached now

    with django_capture_on_commit_callbacks(execute=True):
        answer = attendee_client.delete("/api/me/face-data/")

    assert answer.status_code == 204
    assert not Selfie.objects.filter(user=attendee).exists()  # the row, with its descriptor
    assert not default_storage.exists(selfie_file)
    assert len(engine.forgotten) == 1
    forgotten = engine.forgotten[0]
    assert forgotten["user_id"] == attendee.pk
    assert forgotten["engine_ref"] == "engine-user-ann"
    assert sorted(forgotten["event_ids"]) == sorted([event.pk, other_event.pk])
    assert not Match.objects.filter(user=attendee).exists()  # rejected ones too
    assert Match.objects.filter(user=other).count() == 1
    assert my_photo_ids(attendee_client) == []  # not after 30 s: at once
    me = attendee_client.get("/api/me/").json()
    assert me["has_selfie"] is False
    # The photo's face stays: it belongs to the event photo, not to the member.
    assert Face.objects.filter(pk=face.pk).exists()


def test_delete_face_data_twice_is_fine(attendee_client):
    assert attendee_client.delete("/api/me/face-data/").status_code == 204
    assert attendee_client.delete("/api/me/face-data/").status_code == 204


def test_delete_face_data_needs_a_login():
    answer = APIClient().delete("/api/me/face-data/")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "not_authenticated"
