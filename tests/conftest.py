from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from PIL import Image
from rest_framework.test import APIClient

from core.uploads import upload_as_received

ROOT = Path(__file__).resolve().parent.parent
SHARED_FACES = Path(os.environ.get("FINDME_FACES_DIR", ROOT.parent / "shared" / "faces"))


SHARED_CACHE = "redis" in settings.CACHES["default"]["BACKEND"].lower()


@pytest.fixture(autouse=True)
def _isolated_media_and_cache():
    """Every test starts with an empty media folder and an empty cache.

    The database cache lives in the test database and is reset with it; Redis is cleared.
    """
    from photos.gallery import hit_tally

    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    if SHARED_CACHE:
        _shared_cache_clear()
    hit_tally.discard()  # hits counted in this process and not written yet belong to no test
    yield
    if SHARED_CACHE:
        _shared_cache_clear()


def _shared_cache_clear() -> None:
    """Clear Redis for real. The app's tolerant cache skips a clear that fails, and everything
    for a second after any failure: a busy Redis would then hand one test's counts (rate limits,
    galleries) to the next."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    from core import cache as tolerant

    tolerant._failed_at.clear()
    RedisCache.clear(caches["default"])


_UPLOADS: list[UploadedFile] = []


def uploaded(name: str, content: bytes, content_type: str = "image/jpeg") -> UploadedFile:
    """``content`` as a view receives an uploaded file: through the upload handler, hashed and
    spooled to a temporary file (core.uploads.upload_as_received). Closed when the test ends,
    as Django closes a request's files when the request ends."""
    upload = upload_as_received(name, content, content_type)
    _UPLOADS.append(upload)
    return upload


@pytest.fixture(autouse=True)
def _uploads_closed():
    yield
    while _UPLOADS:
        _UPLOADS.pop().close()


@pytest.fixture
def faces_dir() -> Path:
    if not (SHARED_FACES / "truth.json").is_file():
        pytest.skip(f"the real face photos are absent: {SHARED_FACES} (see ../shared/faces)")
    return SHARED_FACES


@pytest.fixture
def faces_truth(faces_dir: Path) -> dict:
    return json.loads((faces_dir / "truth.json").read_text())


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="staff-pass-123", is_staff=True
    )


@pytest.fixture
def attendee(django_user_model):
    return django_user_model.objects.create_user(username="ann", password="ann-pass-1234")


@pytest.fixture
def staff_client(staff_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.fixture
def attendee_client(attendee) -> APIClient:
    client = APIClient()
    client.force_authenticate(attendee)
    return client


@pytest.fixture
def event(staff_user):
    from events.models import Event

    return Event.objects.create(name="Wedding", slug="wedding", created_by=staff_user)


def jpeg_bytes(
    size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30), **save
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", **save)
    return buffer.getvalue()


def face_photo_variants(faces_dir: Path, count: int, *, side: int = 560) -> list[bytes]:
    """``count`` distinct photos (one pixel differs) of the real faces in ../shared/faces, at a
    size dlib takes in a fraction of a second: for tests of the lifecycle, not of recall."""
    sources = sorted((faces_dir / "people").glob("*/*.jpg")) + [
        faces_dir / "groups" / "two_people.jpg"
    ]
    images = []
    for path in sources:
        image = Image.open(path).convert("RGB")
        image.thumbnail((side, side))
        images.append(image)
    out = []
    for n in range(count):
        image = images[n % len(images)].copy()
        image.putpixel((n % image.width, 0), (n % 256, (n // 256) % 256, 11))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out
