"""Undoing "Not me" shortly after it: POST /api/photos/{id}/not-me/undo/ and the page's
POST /my/photos/{id}/not-me/undo/ give the match back, with its face, to its own member only,
within faces.services.matching.RESTORE_WINDOW, and never against a nearer member."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from faces.models import Face, Match
from faces.services import match_reject, match_restore
from faces.services.matching import RESTORE_WINDOW
from photos.models import Rendition
from tests.pages.conftest import join, photo_make

pytestmark = pytest.mark.django_db

MY_PHOTOS = "/api/my-photos/"


def undo_url(photo) -> str:
    return f"/api/photos/{photo.pk}/not-me/undo/"


def gallery_ids(client) -> list[int]:
    answer = client.get(MY_PHOTOS)
    assert answer.status_code == 200, answer.content
    return [row["id"] for row in answer.json()["results"]]


def matched_with_face(photo, user, *, distance: float = 0.3, index: int = 0) -> Match:
    face = Face.objects.create(
        photo=photo, event=photo.event, index=index, left=0.1, top=0.1, width=0.2, height=0.2,
        engine="local",
    )  # fmt: skip
    return Match.objects.create(
        photo=photo, event=photo.event, user=user, face=face, distance=distance
    )


def assert_not_found(answer) -> None:
    assert answer.status_code == 404
    body = answer.json()
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == "not_found"


@pytest.fixture
def photo(event):
    return photo_make(event)


def test_undo_brings_the_photo_back_with_its_face(
    photo, attendee, attendee_client, django_capture_on_commit_callbacks
):
    Rendition.objects.create(photo=photo, thumb=b"thumb bytes", preview=b"preview bytes")
    match = matched_with_face(photo, attendee)
    assert gallery_ids(attendee_client) == [photo.pk]  # and now cached

    with django_capture_on_commit_callbacks(execute=True):
        assert attendee_client.post(f"/api/photos/{photo.pk}/not-me/").status_code == 204
    rejected = Match.objects.get(photo=photo, user=attendee)
    assert rejected.rejected and rejected.rejected_at is not None
    assert rejected.face_id == match.face_id  # kept for the undo
    assert gallery_ids(attendee_client) == []

    with django_capture_on_commit_callbacks(execute=True):
        answer = attendee_client.post(undo_url(photo))
    assert answer.status_code == 204
    live = Match.objects.get(photo=photo, user=attendee)
    assert not live.rejected
    assert (live.face_id, live.distance) == (match.face_id, match.distance)
    assert gallery_ids(attendee_client) == [photo.pk]  # the cached gallery moved at once
    assert attendee_client.get(f"/api/photos/{photo.pk}/thumb/").content == b"thumb bytes"

    # Undone once is undone: there is no rejection left to undo.
    assert_not_found(attendee_client.post(undo_url(photo)))


def test_after_the_window_not_me_is_final(photo, attendee, attendee_client):
    matched_with_face(photo, attendee)
    assert match_reject(user_id=attendee.pk, photo_id=photo.pk)
    Match.objects.filter(photo=photo).update(
        rejected_at=timezone.now() - RESTORE_WINDOW - timezone.timedelta(seconds=1)
    )

    assert_not_found(attendee_client.post(undo_url(photo)))
    assert Match.objects.get(photo=photo, user=attendee).rejected
    assert gallery_ids(attendee_client) == []


def test_nobody_can_undo_another_members_not_me(photo, attendee_client, django_user_model):
    bob = django_user_model.objects.create_user(username="bob", password="bob-pass-1234")
    matched_with_face(photo, bob)
    assert match_reject(user_id=bob.pk, photo_id=photo.pk)

    assert_not_found(attendee_client.post(undo_url(photo)))

    assert Match.objects.get(photo=photo, user=bob).rejected
    assert not Match.objects.filter(photo=photo, rejected=False).exists()
    assert gallery_ids(attendee_client) == []


def test_there_is_nothing_to_undo_without_a_not_me(photo, attendee, attendee_client):
    matched_with_face(photo, attendee)
    assert_not_found(attendee_client.post(undo_url(photo)))  # live: nothing was rejected
    assert_not_found(attendee_client.post("/api/photos/987654/not-me/undo/"))
    assert Match.objects.get(photo=photo, user=attendee).rejected is False


@pytest.mark.parametrize(
    ("their_distance", "restored"),
    [(0.2, False), (0.45, True)],
    ids=["they-are-nearer", "i-am-nearer"],
)
def test_the_face_goes_back_only_by_the_nearest_rule(
    photo, attendee, attendee_client, django_user_model, their_distance, restored
):
    # I reject; meanwhile a rematch gives the face to a look-alike.
    mine = matched_with_face(photo, attendee, distance=0.3)
    assert match_reject(user_id=attendee.pk, photo_id=photo.pk)
    twin = django_user_model.objects.create_user(username="twin", password="twin-pass-1234")
    Match.objects.create(
        photo=photo, event=photo.event, user=twin, face_id=mine.face_id, distance=their_distance
    )

    answer = attendee_client.post(undo_url(photo))

    live = {m.user_id: m.face_id for m in Match.objects.filter(photo=photo, rejected=False)}
    if restored:
        assert answer.status_code == 204
        assert live == {attendee.pk: mine.face_id}
    else:
        assert_not_found(answer)
        assert live == {twin.pk: mine.face_id}
        assert Match.objects.get(photo=photo, user=attendee).rejected


def test_other_members_in_the_photo_keep_their_faces(photo, attendee, django_user_model):
    friend = django_user_model.objects.create_user(username="fred", password="fred-pass-1234")
    mine = matched_with_face(photo, attendee, index=0)
    theirs = matched_with_face(photo, friend, index=1, distance=0.25)
    assert match_reject(user_id=attendee.pk, photo_id=photo.pk)

    assert match_restore(user_id=attendee.pk, photo_id=photo.pk)

    live = {m.user_id: m.face_id for m in Match.objects.filter(photo=photo, rejected=False)}
    assert live == {attendee.pk: mine.face_id, friend.pk: theirs.face_id}


def test_once_the_photo_was_scanned_again_it_cannot_be_undone(photo, attendee, attendee_client):
    matched_with_face(photo, attendee)
    assert match_reject(user_id=attendee.pk, photo_id=photo.pk)
    Face.objects.filter(photo=photo).delete()  # what a rescan does to the old faces

    assert_not_found(attendee_client.post(undo_url(photo)))
    assert Match.objects.get(photo=photo, user=attendee).rejected


def test_undo_needs_a_login_and_a_post(photo, attendee, attendee_client):
    answer = APIClient().post(undo_url(photo))
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "not_authenticated"
    assert attendee_client.get(undo_url(photo)).status_code == 405


# --- the page, without JavaScript -------------------------------------------------------------------
def tile_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<li class="tile" id="photo-(\d+)"', html)]


@pytest.fixture
def page_client(attendee) -> Client:
    client = Client()
    client.force_login(attendee)
    return client


def test_the_page_offers_the_undo_once_and_it_works(photo, attendee, page_client, event):
    join(attendee, event)
    keep = photo_make(event)
    matched_with_face(keep, attendee)
    matched_with_face(photo, attendee)

    answer = page_client.post(f"/my/photos/{photo.pk}/not-me/", {"next": "/my/?page=1"})
    assert answer["Location"] == "/my/?page=1"
    html = page_client.get(answer["Location"]).content.decode()
    assert tile_ids(html) == [keep.pk]
    form = re.search(r'<form class="undo-notice" method="post" action="([^"]+)">', html)
    assert form and form.group(1) == f"/my/photos/{photo.pk}/not-me/undo/"
    assert "undo-notice" not in page_client.get("/my/").content.decode()  # offered once

    answer = page_client.post(form.group(1), {"next": "/my/?page=1"})
    assert answer.status_code == 302 and answer["Location"] == "/my/?page=1"
    html = page_client.get(answer["Location"]).content.decode()
    assert sorted(tile_ids(html)) == sorted([keep.pk, photo.pk])
    assert "The photo is back in your gallery." in html


def test_the_page_undo_is_for_the_callers_own_not_me_only(
    photo, page_client, django_user_model, event
):
    bob = django_user_model.objects.create_user(username="bob", password="bob-pass-1234")
    matched_with_face(photo, bob)
    assert match_reject(user_id=bob.pk, photo_id=photo.pk)

    answer = page_client.post(
        f"/my/photos/{photo.pk}/not-me/undo/", {"next": "https://evil.example/"}
    )

    assert answer.status_code == 302 and answer["Location"] == "/my/"
    assert Match.objects.get(photo=photo, user=bob).rejected
    assert "That can no longer be undone." in page_client.get("/my/").content.decode()
    assert page_client.get(f"/my/photos/{photo.pk}/not-me/undo/").status_code == 405
    assert Client().post(f"/my/photos/{photo.pk}/not-me/undo/").status_code == 302  # to log in
    assert Match.objects.get(photo=photo, user=bob).rejected
