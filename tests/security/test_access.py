"""The object-level access matrix: every photo, face, match, status and zip endpoint, asked by
the matched attendee (who may), another attendee of the same event, a member of another event
and an anonymous visitor. A photo the caller may not see answers 404, never 403; an endpoint
that needs a login answers an anonymous visitor 401; staff endpoints answer attendees 403."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.base import ContentFile
from rest_framework.test import APIClient

from events.models import Event, Membership
from faces.models import Match
from photos.models import Photo, Rendition
from tests.conftest import jpeg_bytes

pytestmark = pytest.mark.django_db

IMAGE = jpeg_bytes((64, 48))


@pytest.fixture
def world(django_user_model, staff_user, attendee):
    """``attendee`` (ann) is matched in a photo of the wedding; carol is at the wedding and not
    in it; bob is at the race only."""
    wedding = Event.objects.create(name="Wedding", slug="wedding", created_by=staff_user)
    race = Event.objects.create(name="Race", slug="race", created_by=staff_user)
    carol = django_user_model.objects.create_user(username="carol", password="carol-pass-123")
    bob = django_user_model.objects.create_user(username="bob", password="bob-pass-1234")
    Membership.objects.create(user=attendee, event=wedding)
    Membership.objects.create(user=carol, event=wedding)
    Membership.objects.create(user=bob, event=race)
    photo = Photo(
        event=wedding,
        sha256="d" * 64,
        content_type="image/jpeg",
        size=len(IMAGE),
        status=Photo.Status.DONE,
        face_count=1,
        original_name="IMG_7.JPG",
    )
    photo.original.save("x.jpg", ContentFile(IMAGE), save=False)
    photo.save()
    Rendition.objects.create(photo=photo, thumb=IMAGE, preview=IMAGE)
    match = Match.objects.create(photo=photo, event=wedding, user=attendee, distance=0.3)
    return {"photo": photo, "match": match, "users": {"ann": attendee, "carol": carol, "bob": bob}}


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def callers(world) -> dict[str, APIClient]:
    users = world["users"]
    return {
        "owner": client_for(users["ann"]),
        "same_event": client_for(users["carol"]),
        "other_event": client_for(users["bob"]),
        "anonymous": client_for(None),
    }


def assert_error(answer, status: int, code: str) -> None:
    assert answer.status_code == status, (answer.status_code, answer.content[:200])
    assert answer.json()["error"]["code"] == code


# (method, path with {id}, status for the owner, status for an anonymous visitor)
PHOTO_ENDPOINTS = [
    ("get", "/api/photos/{id}/thumb/", 200, 404),
    ("get", "/api/photos/{id}/preview/", 200, 404),
    ("get", "/api/photos/{id}/original/", 200, 404),
    ("get", "/api/photos/{id}/status/", 200, 401),
]


@pytest.mark.parametrize(("method", "path", "owner_status", "anonymous_status"), PHOTO_ENDPOINTS)
def test_a_photo_is_visible_to_its_attendee_only(
    world, method, path, owner_status, anonymous_status
):
    url = path.format(id=world["photo"].pk)
    clients = callers(world)

    assert getattr(clients["owner"], method)(url).status_code == owner_status
    for who in ("same_event", "other_event"):
        assert_error(getattr(clients[who], method)(url), 404, "not_found")
    anonymous = getattr(clients["anonymous"], method)(url)
    assert_error(
        anonymous, anonymous_status, "not_found" if anonymous_status == 404 else "not_authenticated"
    )


@pytest.mark.parametrize("variant", ["thumb", "preview", "original", "status"])
def test_a_photo_that_does_not_exist_answers_like_one_that_is_not_yours(world, variant):
    carol = callers(world)["same_event"]
    missing = carol.get(f"/api/photos/999999/{variant}/")
    hidden = carol.get(f"/api/photos/{world['photo'].pk}/{variant}/")
    assert missing.status_code == hidden.status_code == 404
    assert missing.json() == hidden.json()


def test_not_me_touches_only_the_callers_own_match(world):
    url = f"/api/photos/{world['photo'].pk}/not-me/"
    clients = callers(world)
    for who in ("same_event", "other_event"):
        assert_error(clients[who].post(url), 404, "not_found")
    assert clients["anonymous"].post(url).status_code == 401
    assert Match.objects.filter(pk=world["match"].pk, rejected=False).exists()

    assert clients["owner"].post(url).status_code == 204
    assert Match.objects.filter(pk=world["match"].pk, rejected=True).exists()


def test_deleting_face_data_deletes_the_callers_only(world):
    clients = callers(world)
    assert clients["anonymous"].delete("/api/me/face-data/").status_code == 401
    assert clients["other_event"].delete("/api/me/face-data/").status_code == 204
    assert clients["same_event"].delete("/api/me/face-data/").status_code == 204
    assert Match.objects.filter(pk=world["match"].pk).exists()


def test_gallery_and_zip_hold_the_callers_photos_only(world):
    clients = callers(world)
    photo = world["photo"]

    owner = clients["owner"].get("/api/my-photos/")
    assert [p["id"] for p in owner.json()["results"]] == [photo.pk]
    assert clients["same_event"].get("/api/my-photos/").json()["results"] == []
    assert clients["other_event"].get("/api/my-photos/").json()["results"] == []
    assert clients["anonymous"].get("/api/my-photos/").status_code == 401

    for who, expected in (("owner", 1), ("same_event", 0), ("other_event", 0)):
        answer = clients[who].get("/api/my-photos/download.zip")
        assert answer.status_code == 200
        with zipfile.ZipFile(io.BytesIO(b"".join(answer.streaming_content))) as archive:
            assert len(archive.namelist()) == expected, who
    assert clients["anonymous"].get("/api/my-photos/download.zip").status_code == 401


@pytest.mark.parametrize("path", ["/api/my-photos/", "/api/my-photos/download.zip"])
def test_another_events_gallery_is_not_found(world, path):
    bob = callers(world)["other_event"]
    assert_error(bob.get(path, {"event": "wedding"}), 404, "not_found")
    assert_error(bob.get(path, {"event": "no-such-event"}), 404, "not_found")


STAFF_ENDPOINTS = [
    ("get", "/api/events/", None),
    ("post", "/api/events/", {"name": "Mine"}),
    ("get", "/api/events/wedding/", None),
    ("get", "/api/events/wedding/photos/", None),
    ("post", "/api/events/wedding/photos/", {"file": ContentFile(IMAGE, name="a.jpg")}),
    ("post", "/api/events/wedding/photos/check/", {"sha256": ["d" * 64]}),
    ("get", "/api/admin/queue/stats/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), STAFF_ENDPOINTS)
def test_staff_endpoints_refuse_attendees_and_visitors(world, method, path, body):
    clients = callers(world)
    fmt = "multipart" if path.endswith("/photos/") and method == "post" else "json"
    for who in ("owner", "same_event", "other_event"):
        answer = getattr(clients[who], method)(path, body, format=fmt)
        assert_error(answer, 403, "permission_denied")
    assert getattr(clients["anonymous"], method)(path, body, format=fmt).status_code == 401
    assert Event.objects.count() == 2 and Photo.objects.count() == 1


def test_staff_see_every_photo(world, staff_client):
    for _method, path, _owner, _anonymous in PHOTO_ENDPOINTS:
        assert staff_client.get(path.format(id=world["photo"].pk)).status_code == 200


def test_a_wrong_join_code_reveals_nothing(world):
    bob = callers(world)["other_event"]
    wrong_code = bob.post("/api/events/wedding/join/", {"join_code": "guess"}, format="json")
    no_event = bob.post("/api/events/nowhere/join/", {"join_code": "guess"}, format="json")
    assert_error(wrong_code, 404, "not_found")
    assert wrong_code.json() == no_event.json()
    assert not Membership.objects.filter(user=world["users"]["bob"], event__slug="wedding").exists()


@pytest.mark.parametrize("path", ["/api/me/", "/api/me/selfie/", "/api/me/face-data/"])
def test_personal_endpoints_need_a_login(path):
    answer = APIClient().generic("GET" if path == "/api/me/" else "PUT", path)
    assert answer.status_code == 401
    assert "WWW-Authenticate" in answer


def test_the_not_me_page_rejects_only_the_callers_match(world, client):
    url = f"/my/photos/{world['photo'].pk}/not-me/"
    for who in ("carol", "bob"):
        client.force_login(world["users"][who])
        answer = client.post(url, {"next": "https://evil.example/"})
        assert answer.status_code == 302
        assert answer["Location"] == "/my/"  # never an open redirect
    assert Match.objects.filter(pk=world["match"].pk, rejected=False).exists()

    client.logout()
    assert client.post(url).status_code == 302  # to the login page
    assert Match.objects.filter(pk=world["match"].pk, rejected=False).exists()

    client.force_login(world["users"]["ann"])
    client.post(url)
    assert Match.objects.filter(pk=world["match"].pk, rejected=True).exists()
