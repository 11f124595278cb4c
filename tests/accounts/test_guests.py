"""Guests (issue 12): from the event's code to a gallery with a selfie alone, through the API
contract (``POST /api/events/{slug}/guest/``), their private link, keeping the account, and
their removal with the event."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import Selfie, User
from events.models import Event, Membership
from faces.models import Match
from photos import services as photo_services
from tests.accounts.test_api import put_selfie
from tests.pages.conftest import match_make, photo_make
from tests.photos.test_ingest_api import assert_error

pytestmark = pytest.mark.django_db


def guest_post(slug: str, code: str, client: APIClient | None = None):
    return (client or APIClient()).post(
        f"/api/events/{slug}/guest/", {"join_code": code}, format="json"
    )


def as_token(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_a_guest_is_made_a_member_with_a_token_and_a_private_link(event):
    answer = guest_post(event.slug, event.join_code)
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert set(body) == {"id", "token", "gallery_url"}
    guest = User.objects.get(pk=body["id"])
    assert guest.is_guest and not guest.has_usable_password() and guest.email == ""
    assert Membership.objects.filter(user=guest, event=event).exists()
    me = as_token(body["token"]).get("/api/me/").json()
    assert me["id"] == guest.pk and me["events"] == [event.slug] and me["has_selfie"] is False
    link = urlsplit(body["gallery_url"])
    assert link.scheme == "http" and link.netloc == "testserver"
    assert link.path.startswith("/g/")


@pytest.mark.parametrize(("slug", "code"), [("wedding", "wrong-code"), ("no-such-event", "x")])
def test_a_wrong_slug_or_code_makes_nothing(event, slug, code):
    assert_error(guest_post(slug, code), 404, "not_found")
    assert not User.objects.filter(is_guest=True).exists()
    assert Membership.objects.count() == 0


def test_a_missing_code_is_a_field_error(event):
    error = assert_error(APIClient().post("/api/events/wedding/guest/", {}, format="json"), 400)
    assert "join_code" in error["detail"]
    assert not User.objects.filter(is_guest=True).exists()


def test_guest_creation_is_rate_limited_per_ip(event, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "guest": {"ip": "3/h", "account": None}}
    cache.clear()
    for _ in range(3):
        assert guest_post(event.slug, event.join_code).status_code == 201
    answer = guest_post(event.slug, event.join_code)
    assert_error(answer, 429, "rate_limited")
    assert int(answer["Retry-After"]) > 0
    assert User.objects.filter(is_guest=True).count() == 3


def test_the_private_link_signs_in_on_another_device_and_opens_the_gallery(event):
    body = guest_post(event.slug, event.join_code).json()
    photo = photo_make(event)
    match_make(photo, User.objects.get(pk=body["id"]))
    other_device = Client()
    opened = other_device.get(urlsplit(body["gallery_url"]).path, follow=True)
    assert opened.status_code == 200
    assert opened.redirect_chain[-1][0].startswith("/my/")
    assert f"/api/photos/{photo.pk}/thumb/" in opened.content.decode()
    # The session it made is the guest's: their own API answers.
    assert other_device.get("/api/me/").json()["id"] == body["id"]


def test_a_damaged_link_signs_nobody_in(event):
    body = guest_post(event.slug, event.join_code).json()
    path = urlsplit(body["gallery_url"]).path
    broken = path[:-3] + ("A" if path[-3] != "A" else "B") + path[-2:]
    client = Client()
    answer = client.get(broken)
    assert answer.status_code == 404
    assert "This link no longer works" in answer.content.decode()
    assert client.get("/api/me/").status_code in (401, 403)


@pytest.mark.faces
def test_signing_up_with_the_guest_token_keeps_everything(event, faces_dir):
    body = guest_post(event.slug, event.join_code).json()
    guest_client = as_token(body["token"])
    selfie = (faces_dir / "people/kit_harington/kit_1.jpg").read_bytes()
    assert put_selfie(guest_client, selfie).status_code == 201
    photo = photo_make(event)
    match_make(photo, User.objects.get(pk=body["id"]))

    answer = guest_client.post(
        "/api/auth/signup/",
        {"username": "kit", "email": "kit@example.com", "password": "a-long-passphrase-42"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    kept = answer.json()
    assert kept["id"] == body["id"] and kept["username"] == "kit"
    user = User.objects.get(pk=body["id"])
    assert not user.is_guest and user.check_password("a-long-passphrase-42")
    assert Selfie.objects.filter(user=user).exists()
    me = as_token(kept["token"]).get("/api/me/").json()
    assert me["has_selfie"] is True and me["events"] == [event.slug]
    mine = as_token(kept["token"]).get("/api/my-photos/").json()
    assert [p["id"] for p in mine["results"]] == [photo.pk]
    # The guest's old token and private link ended with the password.
    assert not Token.objects.filter(key=body["token"]).exists()
    assert Client().get(urlsplit(body["gallery_url"]).path).status_code == 404
    # And the password works.
    token = APIClient().post(
        "/api/auth/token/", {"username": "kit", "password": "a-long-passphrase-42"}, format="json"
    )
    assert token.status_code == 200


@pytest.mark.faces
def test_a_guest_deletes_their_face_data_like_anyone(event, faces_dir):
    body = guest_post(event.slug, event.join_code).json()
    client = as_token(body["token"])
    assert (
        put_selfie(client, (faces_dir / "people/obama/obama_1.jpg").read_bytes()).status_code == 201
    )
    match_make(photo_make(event), User.objects.get(pk=body["id"]))
    assert client.delete("/api/me/face-data/").status_code == 204
    assert not Selfie.objects.filter(user_id=body["id"]).exists()
    assert not Match.objects.filter(user_id=body["id"]).exists()
    assert client.get("/api/my-photos/").json()["count"] == 0


@pytest.mark.faces
def test_guests_of_a_deleted_event_go_with_their_face_data_and_accounts_stay(
    event, attendee, faces_dir, django_capture_on_commit_callbacks
):
    body = guest_post(event.slug, event.join_code).json()
    put_selfie(as_token(body["token"]), (faces_dir / "people/obama/obama_1.jpg").read_bytes())
    # A guest of two events stays while one of them is left.
    other = Event.objects.create(name="Other", slug="other")
    both = guest_post(other.slug, other.join_code).json()
    Membership.objects.create(user_id=both["id"], event=event)
    # An account with a password is never removed with an event.
    Membership.objects.create(user=attendee, event=event)

    with django_capture_on_commit_callbacks(execute=False):
        photo_services.events_delete(event_ids=[event.pk])
    assert photo_services.guests_orphaned_delete() == 1
    assert not User.objects.filter(pk=body["id"]).exists()
    assert not Selfie.objects.filter(user_id=body["id"]).exists()
    assert User.objects.filter(pk=both["id"]).exists()
    assert User.objects.filter(pk=attendee.pk).exists()
    assert photo_services.guests_orphaned_delete() == 0  # run twice, same rows
