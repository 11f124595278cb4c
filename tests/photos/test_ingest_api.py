"""POST /api/events/{slug}/photos/: stored once, judged by its bytes, nothing half-stored."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from photos.models import Photo
from tests.conftest import jpeg_bytes

pytestmark = pytest.mark.django_db


def upload(client: APIClient, slug: str, data: bytes, name: str = "p.jpg", **extra):
    body = {"file": SimpleUploadedFile(name, data, content_type="image/jpeg"), **extra}
    return client.post(f"/api/events/{slug}/photos/", body, format="multipart")


def stored_files() -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def assert_nothing_stored() -> None:
    assert Photo.objects.count() == 0
    assert stored_files() == []


def assert_error(answer, status: int, code: str | None = None) -> dict:
    assert answer.status_code == status, answer.content
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


# --- the normal path ----------------------------------------------------------------------------
def test_new_photo_is_stored_queued_and_described(staff_client, event):
    data = jpeg_bytes((640, 480))
    answer = upload(staff_client, event.slug, data)
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["duplicate"] is False
    assert body["status"] == "queued"
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert (body["width"], body["height"]) == (640, 480)
    assert body["event"] == event.slug
    assert body["thumb_url"].endswith(f"/api/photos/{body['id']}/thumb/")
    assert answer["Server-Timing"].startswith("app;dur=")
    photo = Photo.objects.get()
    assert photo.status == Photo.Status.QUEUED
    assert photo.original.read() == data


def test_upload_of_same_bytes_returns_existing_photo(staff_client, event):
    data = jpeg_bytes()
    first = upload(staff_client, event.slug, data, name="a.jpg")
    again = upload(staff_client, event.slug, data, name="renamed.jpg")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["id"] == first.json()["id"]
    assert Photo.objects.count() == 1
    assert len(stored_files()) == 1


def test_same_bytes_in_another_event_is_a_new_photo(staff_client, event):
    from events.models import Event

    other = Event.objects.create(name="Other", slug="other")
    data = jpeg_bytes()
    assert upload(staff_client, event.slug, data).status_code == 201
    assert upload(staff_client, other.slug, data).status_code == 201
    assert Photo.objects.count() == 2


def test_matching_sha256_is_accepted_and_a_wrong_one_is_refused(staff_client, event):
    data = jpeg_bytes()
    good = upload(staff_client, event.slug, data, sha256=hashlib.sha256(data).hexdigest().upper())
    assert good.status_code == 201
    Photo.objects.all().delete()
    for name in [p for p in stored_files()]:
        name.unlink()
    wrong = upload(staff_client, event.slug, data, sha256="0" * 64)
    error = assert_error(wrong, 400, "checksum_mismatch")
    assert error["detail"]["received"] == hashlib.sha256(data).hexdigest()
    assert_nothing_stored()


def test_png_webp_and_heic_are_accepted_by_their_bytes(staff_client, event):
    image = Image.new("RGB", (50, 40), (10, 120, 200))
    for fmt, name in [("PNG", "x.jpg"), ("WEBP", "photo"), ("HEIF", "IMG_0001.HEIC")]:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        answer = upload(staff_client, event.slug, buffer.getvalue(), name=name)
        assert answer.status_code == 201, (fmt, answer.content)
    assert sorted(Photo.objects.values_list("content_type", flat=True)) == [
        "image/heic",
        "image/png",
        "image/webp",
    ]


def test_exif_orientation_swaps_reported_width_and_height(staff_client, event):
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg_bytes((300, 200), exif=exif.tobytes())
    body = upload(staff_client, event.slug, data).json()
    assert (body["width"], body["height"]) == (200, 300)


def test_hostile_file_name_is_never_used_as_a_path(staff_client, event):
    data = jpeg_bytes()
    answer = upload(staff_client, event.slug, data, name="../../../etc/passwd\x00.jpg")
    assert answer.status_code == 201, answer.content
    photo = Photo.objects.get()
    assert ".." not in photo.original.name
    assert photo.original.name == f"photos/{event.pk}/{photo.sha256[:2]}/{photo.sha256}.jpg"
    assert "\x00" not in photo.original_name and "/" not in photo.original_name
    (path,) = stored_files()
    assert Path(settings.MEDIA_ROOT).resolve() in path.resolve().parents


# --- rejections: each gets its error, and nothing is left behind ---------------------------------
def truncated_jpeg() -> bytes:
    data = jpeg_bytes((800, 600), colour=(90, 10, 200))
    return data[: len(data) // 2]


def bomb_jpeg() -> bytes:
    """A tiny JPEG whose header claims 30000x30000 pixels."""
    data = bytearray(jpeg_bytes((16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    return bytes(data)


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'


@pytest.mark.parametrize(
    ("data", "name", "status", "code"),
    [
        (b"", "empty.jpg", 400, None),
        (truncated_jpeg(), "cut.jpg", 400, "invalid_image"),
        (b"just some text, not a photo\n" * 20, "notes.jpg", 400, "unsupported_type"),
        (SVG, "drawing.svg", 400, "unsupported_type"),
        (bomb_jpeg(), "bomb.jpg", 400, "image_too_large"),
    ],
    ids=["empty", "truncated-jpeg", "text-named-jpg", "svg", "decompression-bomb"],
)
def test_bad_files_are_refused_and_leave_nothing(staff_client, event, data, name, status, code):
    assert_error(upload(staff_client, event.slug, data, name=name), status, code)
    assert_nothing_stored()


def test_file_over_the_size_limit_gets_413_and_leaves_nothing(staff_client, event, settings):
    settings.PHOTO_MAX_UPLOAD_MB = 1
    data = jpeg_bytes((64, 64)) + b"\x00" * (1024 * 1024 + 10)
    assert_error(upload(staff_client, event.slug, data), 413, "file_too_large")
    assert_nothing_stored()


def test_missing_file_field_is_a_field_error(staff_client, event):
    answer = staff_client.post(f"/api/events/{event.slug}/photos/", {}, format="multipart")
    error = assert_error(answer, 400, "invalid")
    assert "file" in error["detail"]
    assert_nothing_stored()


def test_non_staff_token_gets_403_and_no_token_gets_401(attendee, event):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=attendee).key}")
    assert_error(upload(client, event.slug, jpeg_bytes()), 403, "permission_denied")
    anonymous = upload(APIClient(), event.slug, jpeg_bytes())
    assert_error(anonymous, 401, "not_authenticated")
    assert anonymous["WWW-Authenticate"].startswith("Token")
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_error(upload(bad_token, event.slug, jpeg_bytes()), 401)
    assert_nothing_stored()


def test_unknown_event_is_404(staff_client):
    assert_error(upload(staff_client, "no-such-event", jpeg_bytes()), 404, "not_found")
    assert_nothing_stored()


def test_full_queue_answers_503_with_retry_after(staff_client, event, settings):
    settings.PHOTO_QUEUE_MAX_SIZE = 2
    assert upload(staff_client, event.slug, jpeg_bytes(colour=(1, 2, 3))).status_code == 201
    assert upload(staff_client, event.slug, jpeg_bytes(colour=(4, 5, 6))).status_code == 201
    answer = upload(staff_client, event.slug, jpeg_bytes(colour=(7, 8, 9)))
    assert_error(answer, 503, "queue_full")
    assert int(answer["Retry-After"]) > 0
    assert Photo.objects.count() == 2
    assert len(stored_files()) == 2
    # A duplicate of a stored photo is still answered: it adds no work.
    again = upload(staff_client, event.slug, jpeg_bytes(colour=(1, 2, 3)))
    assert again.status_code == 200 and again.json()["duplicate"] is True


# --- the check endpoint -------------------------------------------------------------------------
def test_check_returns_the_hashes_the_event_already_holds(staff_client, event):
    data = jpeg_bytes()
    known = upload(staff_client, event.slug, data).json()["sha256"]
    unknown = hashlib.sha256(b"something else").hexdigest()
    answer = staff_client.post(
        f"/api/events/{event.slug}/photos/check/", {"sha256": [known, unknown]}, format="json"
    )
    assert answer.status_code == 200
    assert answer.json() == {"existing": [known]}


def test_check_accepts_1000_hashes_and_refuses_more_or_malformed(staff_client, event):
    url = f"/api/events/{event.slug}/photos/check/"
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1001)]
    assert staff_client.post(url, {"sha256": hashes[:1000]}, format="json").status_code == 200
    assert_error(staff_client.post(url, {"sha256": hashes}, format="json"), 400, "invalid")
    assert_error(staff_client.post(url, {"sha256": ["xyz"]}, format="json"), 400, "invalid")


def test_event_photo_list_filters_by_status(staff_client, event):
    upload(staff_client, event.slug, jpeg_bytes())
    queued = staff_client.get(f"/api/events/{event.slug}/photos/?status=queued").json()
    assert queued["count"] == 1 and set(queued) == {"count", "next", "previous", "results"}
    assert staff_client.get(f"/api/events/{event.slug}/photos/?status=done").json()["count"] == 0
    assert_error(staff_client.get(f"/api/events/{event.slug}/photos/?status=lost"), 400, "invalid")
