"""Hostile uploads: polyglots, SVG with script, HTML dressed as JPEG, a decompression bomb,
oversized and broken EXIF, path traversal and CRLF in file names. Each gets a clean 4xx or is
stored safely, and whatever is served goes out as its real type with ``nosniff``."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from faces.models import Match
from photos.models import Photo
from photos.tasks import photo_process
from tests.conftest import jpeg_bytes

pytestmark = pytest.mark.django_db

SCRIPT = b"<script>alert(document.cookie)</script>"
HTML = b"<!DOCTYPE html><html><body>" + SCRIPT + b"</body></html>"


def upload(client, data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg"):
    return client.post(
        "/api/events/wedding/photos/",
        {"file": SimpleUploadedFile(name, data, content_type)},
        format="multipart",
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few dozen bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def assert_rejected(answer, status: int, codes: set[str]) -> None:
    assert answer.status_code == status, (answer.status_code, answer.content[:300])
    assert answer.json()["error"]["code"] in codes
    assert Photo.objects.count() == 0
    stored = Path(settings.MEDIA_ROOT) / "photos"
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))


def served(client, photo_id: int, variant: str):
    answer = client.get(f"/api/photos/{photo_id}/{variant}/")
    assert answer.status_code == 200
    assert answer["X-Content-Type-Options"] == "nosniff"
    body = b"".join(answer.streaming_content) if answer.streaming else answer.content
    return answer, body


# --- what is refused ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "name", "content_type"),
    [
        (
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">' + SCRIPT + b"</svg>",
            "cat.svg",
            "image/svg+xml",
        ),
        (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">' + SCRIPT,
            "cat.jpg",
            "image/jpeg",
        ),
        (HTML, "photo.jpg", "image/jpeg"),
        (HTML + jpeg_bytes(), "photo.jpg", "image/jpeg"),  # HTML first, a JPEG behind it
        (b"GIF89a" + HTML, "photo.gif", "image/gif"),
    ],
    ids=["svg", "svg-named-jpg", "html-named-jpg", "html-then-jpeg", "gif-html"],
)
def test_markup_is_refused_whatever_it_is_called(event, staff_client, data, name, content_type):
    assert_rejected(upload(staff_client, data, name, content_type), 400, {"unsupported_type"})


def test_html_behind_jpeg_magic_bytes_is_not_an_image(event, staff_client):
    assert_rejected(upload(staff_client, b"\xff\xd8\xff\xe0" + HTML), 400, {"invalid_image"})


def test_a_decompression_bomb_is_refused_from_its_header(event, staff_client):
    bomb = png_header_only(60_000, 60_000)  # 3.6 gigapixels in about 60 bytes
    assert len(bomb) < 200
    assert_rejected(upload(staff_client, bomb, "bomb.png", "image/png"), 400, {"image_too_large"})


# --- what is stored, and how it is served ------------------------------------------------------
def test_a_jpeg_with_html_appended_is_served_as_a_jpeg_only(event, staff_client):
    polyglot = jpeg_bytes((200, 150)) + HTML
    answer = upload(staff_client, polyglot)
    assert answer.status_code == 201
    photo_id = answer.json()["id"]
    assert photo_process(photo_id=photo_id) == Photo.Status.DONE

    original, body = served(staff_client, photo_id, "original")
    assert original["Content-Type"] == "image/jpeg"
    assert original["Content-Disposition"].startswith("attachment;")
    assert body.endswith(HTML)  # stored and served as uploaded: only its type makes it safe
    for variant, kind in (("thumb", "image/webp"), ("preview", "image/jpeg")):
        rendition, data = served(staff_client, photo_id, variant)
        assert rendition["Content-Type"] == kind
        assert SCRIPT not in data  # renditions are re-encoded pixels, nothing else


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_served_images_carry_their_real_type_and_nosniff(event, staff_client, fmt, content_type):
    buffer = io.BytesIO()
    Image.new("RGB", (120, 90), (10, 200, 10)).save(buffer, fmt)
    # The client's name and type say something else; the bytes decide.
    answer = upload(staff_client, buffer.getvalue(), "photo.txt", "text/html")
    assert answer.status_code == 201
    photo_id = answer.json()["id"]
    assert photo_process(photo_id=photo_id) == Photo.Status.DONE
    for variant, kind in (
        ("original", content_type),
        ("thumb", "image/webp"),
        ("preview", "image/jpeg"),
    ):
        response, body = served(staff_client, photo_id, variant)
        assert response["Content-Type"] == kind
        assert (
            Image.open(io.BytesIO(body)).format
            == {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}[kind]
        )


def test_an_oversized_exif_is_stored_and_served_without_location(
    event, staff_client, attendee, attendee_client
):
    exif = Image.Exif()
    exif[0x9286] = "x" * 60_000  # UserComment: close to the 64 KB a JPEG segment can hold
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0)})
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (90, 90, 90)).save(buffer, "JPEG", exif=exif.tobytes())
    answer = upload(staff_client, buffer.getvalue())
    assert answer.status_code == 201
    photo_id = answer.json()["id"]
    assert photo_process(photo_id=photo_id) == Photo.Status.DONE
    Match.objects.create(photo_id=photo_id, event=event, user=attendee, distance=0.3)

    _, body = served(attendee_client, photo_id, "original")
    kept = Image.open(io.BytesIO(body)).getexif()
    assert not kept.get_ifd(0x8825)
    assert kept.get(0x9286) == "x" * 60_000


def test_a_broken_exif_is_dropped_from_the_served_original(
    event, staff_client, attendee, attendee_client
):
    # An IFD that claims 65535 entries, running far past its segment.
    broken = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + b"\x00" * 64
    segment = b"\xff\xe1" + struct.pack(">H", len(broken) + 2) + broken
    image = jpeg_bytes((300, 200))
    answer = upload(staff_client, image[:2] + segment + image[2:])
    assert answer.status_code == 201
    photo_id = answer.json()["id"]
    assert photo_process(photo_id=photo_id) == Photo.Status.DONE
    Match.objects.create(photo_id=photo_id, event=event, user=attendee, distance=0.3)

    _, body = served(attendee_client, photo_id, "original")
    assert b"Exif\x00\x00" not in body
    assert body[2:] == image[2:]  # the rest exactly as uploaded


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../../../etc/passwd.jpg", "passwd.jpg"),
        ("..\\..\\windows\\win.ini.jpg", "win.ini.jpg"),
        ("/var/www/index.jpg", "index.jpg"),
    ],
)
def test_a_file_name_never_becomes_a_path(event, staff_client, name, shown):
    answer = upload(staff_client, jpeg_bytes(), name)
    assert answer.status_code == 201
    photo = Photo.objects.get(pk=answer.json()["id"])
    root = Path(settings.MEDIA_ROOT).resolve()
    stored = Path(photo.original.path).resolve()
    assert stored.is_relative_to(root / "photos" / str(event.pk))
    assert stored.name == f"{photo.sha256}.jpg"
    assert photo.original_name == shown  # kept for staff; downloads are named by photos.naming
    original = staff_client.get(f"/api/photos/{photo.pk}/original/")
    served_name = f"wedding-{photo.created_at:%Y%m%d-%H%M}-{photo.pk}.jpg"
    assert original["Content-Disposition"] == f'attachment; filename="{served_name}"'


def test_crlf_in_a_file_name_cannot_add_a_header(event, staff_client):
    answer = upload(staff_client, jpeg_bytes(), "a.jpg\r\nSet-Cookie: session=stolen\r\nX-Evil: 1")
    assert answer.status_code in (201, 400), answer.content[:300]
    if answer.status_code == 400:
        assert Photo.objects.count() == 0
        return
    photo = Photo.objects.get(pk=answer.json()["id"])
    original = staff_client.get(f"/api/photos/{photo.pk}/original/")
    assert original.status_code == 200
    disposition = original["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert "X-Evil" not in original and not original.cookies.get("session")


def test_a_name_with_a_newline_is_stored_and_never_served(event, staff_client):
    """Through the service directly (a multipart header cannot carry a raw newline)."""
    from core.uploads import upload_as_received
    from photos.services import photo_ingest

    received = upload_as_received("evil\r\nX-Evil: 1.jpg", jpeg_bytes(), "image/jpeg")
    try:
        photo = photo_ingest(event=event, upload=received, uploaded_by=None).photo
    finally:
        received.close()
    original = staff_client.get(f"/api/photos/{photo.pk}/original/")
    assert original.status_code == 200
    assert photo.original_name == "evil\r\nX-Evil: 1.jpg"
    served_name = f"wedding-{photo.created_at:%Y%m%d-%H%M}-{photo.pk}.jpg"
    assert original["Content-Disposition"] == f'attachment; filename="{served_name}"'
    assert "X-Evil" not in original
