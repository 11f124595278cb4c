"""Accounts, events, joining and the selfie through the API contract, 4xx paths included."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from accounts.models import Selfie
from events.models import Event, Membership
from tests.photos.test_ingest_api import assert_error

pytestmark = pytest.mark.django_db


# --- signup and tokens --------------------------------------------------------------------------
def test_signup_returns_a_working_token():
    client = APIClient()
    answer = client.post(
        "/api/auth/signup/",
        {"username": "zoe", "email": "zoe@example.com", "password": "correct horse battery"},
        format="json",
    )
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"id", "username", "token"} and body["username"] == "zoe"
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    me = client.get("/api/me/")
    assert me.status_code == 200
    assert me.json()["username"] == "zoe" and me.json()["has_selfie"] is False


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (
            {"username": "zoe", "email": "not-an-email", "password": "correct horse battery"},
            "email",
        ),
        ({"username": "zoe", "email": "z@example.com", "password": "short"}, "password"),
        ({"username": "zoe", "email": "z@example.com", "password": "password123"}, "password"),
        (
            {
                "username": "bad name!",
                "email": "z@example.com",
                "password": "correct horse battery",
            },
            "username",
        ),
        ({"email": "z@example.com", "password": "correct horse battery"}, "username"),
    ],
)
def test_signup_refuses_bad_fields_with_field_errors(payload, field, django_user_model):
    answer = APIClient().post("/api/auth/signup/", payload, format="json")
    error = assert_error(answer, 400, "invalid")
    assert field in error["detail"]
    assert django_user_model.objects.count() == 0


def test_signup_refuses_a_taken_username_in_any_case(attendee):
    answer = APIClient().post(
        "/api/auth/signup/",
        {
            "username": attendee.username.upper(),
            "email": "x@example.com",
            "password": "correct horse battery",
        },
        format="json",
    )
    assert "username" in assert_error(answer, 400, "invalid")["detail"]


def test_token_for_good_credentials_and_invalid_credentials_otherwise(attendee):
    good = APIClient().post(
        "/api/auth/token/", {"username": "ann", "password": "ann-pass-1234"}, format="json"
    )
    assert good.status_code == 200 and len(good.json()["token"]) == 40
    again = APIClient().post(
        "/api/auth/token/", {"username": "ann", "password": "ann-pass-1234"}, format="json"
    )
    assert again.json()["token"] == good.json()["token"]
    bad = APIClient().post(
        "/api/auth/token/", {"username": "ann", "password": "nope"}, format="json"
    )
    assert_error(bad, 400, "invalid_credentials")


def test_malformed_json_is_a_400_in_the_error_shape():
    answer = APIClient().post("/api/auth/token/", "{not json", content_type="application/json")
    assert_error(answer, 400, "parse_error")


def test_unknown_api_path_is_a_json_404():
    answer = APIClient().get("/api/nothing-here/")
    assert_error(answer, 404, "not_found")


# --- events -------------------------------------------------------------------------------------
def test_staff_create_list_and_read_events(staff_client):
    created = staff_client.post("/api/events/", {"name": "Summer Wedding"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["slug"] == "summer-wedding"
    assert body["join_url"].endswith(f"/e/summer-wedding/?code={body['join_code']}")
    second = staff_client.post("/api/events/", {"name": "Summer Wedding"}, format="json").json()
    assert second["slug"] == "summer-wedding-2"
    listing = staff_client.get("/api/events/").json()
    assert listing["count"] == 2
    detail = staff_client.get("/api/events/summer-wedding/").json()
    assert detail["photos"] == {"queued": 0, "processing": 0, "done": 0, "failed": 0}
    assert detail["members"] == 0


def test_an_explicit_slug_that_is_taken_is_refused(staff_client, event):
    answer = staff_client.post("/api/events/", {"name": "Again", "slug": event.slug}, format="json")
    assert "slug" in assert_error(answer, 400, "slug_taken")["detail"]


def test_attendees_cannot_manage_events(attendee_client, event):
    assert_error(attendee_client.post("/api/events/", {"name": "Mine"}, format="json"), 403)
    assert_error(attendee_client.get("/api/events/"), 403)
    assert_error(attendee_client.get(f"/api/events/{event.slug}/"), 403)


# --- joining ------------------------------------------------------------------------------------
def test_join_with_the_right_code_makes_a_membership_once(attendee_client, attendee, event):
    for _ in range(2):
        answer = attendee_client.post(
            f"/api/events/{event.slug}/join/", {"join_code": event.join_code}, format="json"
        )
        assert answer.status_code == 200 and answer.json() == {"event": event.slug}
    assert Membership.objects.filter(user=attendee, event=event).count() == 1
    assert attendee_client.get("/api/me/").json()["events"] == [event.slug]


def test_join_with_a_wrong_code_or_slug_is_404(attendee_client, attendee, event):
    wrong_code = attendee_client.post(
        f"/api/events/{event.slug}/join/", {"join_code": "guess"}, format="json"
    )
    assert_error(wrong_code, 404, "not_found")
    wrong_slug = attendee_client.post(
        "/api/events/nope/join/", {"join_code": event.join_code}, format="json"
    )
    assert_error(wrong_slug, 404, "not_found")
    assert not Membership.objects.exists()


def test_join_needs_an_account():
    event = Event.objects.create(name="E", slug="e")
    answer = APIClient().post("/api/events/e/join/", {"join_code": event.join_code}, format="json")
    assert_error(answer, 401)


# --- selfie -------------------------------------------------------------------------------------
def put_selfie(client: APIClient, data: bytes, consent: str | None = "true", name: str = "me.jpg"):
    body = {"file": SimpleUploadedFile(name, data, content_type="image/jpeg")}
    if consent is not None:
        body["consent"] = consent
    return client.put("/api/me/selfie/", body, format="multipart")


def test_selfie_needs_consent(attendee_client, attendee):
    for consent in (None, "false", ""):
        assert_error(put_selfie(attendee_client, b"irrelevant", consent), 400, "consent_required")
    assert not Selfie.objects.exists()


def test_selfie_that_is_not_an_image_is_refused(attendee_client):
    assert_error(put_selfie(attendee_client, b"hello, not a photo"), 400, "unsupported_type")
    assert not Selfie.objects.exists()


@pytest.mark.faces
def test_selfie_with_no_face_or_two_faces_is_refused_and_nothing_kept(attendee_client, faces_dir):
    dogs = (faces_dir / "no_faces" / "dogs.jpg").read_bytes()
    assert_error(put_selfie(attendee_client, dogs), 400, "no_face")
    pair = (faces_dir / "groups" / "two_people.jpg").read_bytes()
    error = assert_error(put_selfie(attendee_client, pair), 400, "multiple_faces")
    assert error["detail"]["faces_found"] == 2
    assert not Selfie.objects.exists()


@pytest.mark.faces
def test_selfie_with_one_face_is_kept_with_consent_time_and_queued(
    attendee_client, attendee, faces_dir
):
    answer = put_selfie(
        attendee_client, (faces_dir / "people/kit_harington/kit_1.jpg").read_bytes()
    )
    assert answer.status_code == 201, answer.content
    assert answer.json() == {"status": "queued", "faces_found": 1}
    selfie = Selfie.objects.get(user=attendee)
    assert selfie.consent_at is not None and selfie.status == Selfie.Status.QUEUED
    me = attendee_client.get("/api/me/").json()
    assert me["has_selfie"] is True and me["consent_at"]


@pytest.mark.faces
def test_heic_selfie_from_a_phone_is_accepted_and_stored_as_jpeg(
    attendee_client, attendee, faces_dir
):
    buffer = io.BytesIO()
    Image.open(faces_dir / "people/rose_leslie/rose_1.jpg").save(buffer, format="HEIF")
    answer = put_selfie(attendee_client, buffer.getvalue(), name="IMG_1234.HEIC")
    assert answer.status_code == 201, answer.content
    stored = Selfie.objects.get(user=attendee).image.read()
    assert stored[:3] == b"\xff\xd8\xff"


# --- staff monitoring ---------------------------------------------------------------------------
def test_queue_stats_have_the_contract_shape(staff_client, attendee_client):
    answer = staff_client.get("/api/admin/queue/stats/")
    assert answer.status_code == 200
    body = answer.json()
    assert {
        "workers_active",
        "current_queue_size",
        "processed_last_hour",
        "failed_last_hour",
        "oldest_queued_age_s",
    } <= set(body["queue"])
    assert set(body["cache"]["user_photos_cache"]) >= {"hits", "misses", "hit_rate", "size"}
    assert {"name", "api_calls", "estimated_cost_usd"} <= set(body["engine"])
    assert body["engine"]["name"] == "local" and body["engine"]["estimated_cost_usd"] == 0
    assert_error(attendee_client.get("/api/admin/queue/stats/"), 403)


def test_health_reports_database_and_broker(client):
    answer = client.get("/api/health/")
    assert answer.status_code == 200
    assert answer.json() == {
        "database": "ok",
        "broker": "ok",
        "cache": "ok",
        "storage": "ok",
        "workers": "none",
    }


def test_health_is_503_when_the_broker_is_down(client, monkeypatch):
    class DeadBroker:
        def ping(self) -> bool:
            raise ConnectionError("connection refused")

    monkeypatch.setattr("photos.monitoring.get_broker", lambda: DeadBroker())
    answer = client.get("/api/health/")
    assert answer.status_code == 503
    assert answer.json()["broker"] == "down" and answer.json()["database"] == "ok"
