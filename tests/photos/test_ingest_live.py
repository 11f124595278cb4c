"""Uploads against a live server: memory while streaming a large body, and the duplicate race."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from django.conf import settings
from PIL import Image
from rest_framework.authtoken.models import Token

from photos.models import Photo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff_token(staff_user) -> str:
    return Token.objects.create(user=staff_user).key


def big_jpeg(path: Path, megabytes: int) -> bytes:
    """A valid JPEG of noise, about ``megabytes`` in size (noise does not compress away)."""
    rng = np.random.default_rng(7)
    side = int((megabytes * 1024 * 1024 / 1.1) ** 0.5)  # ~1.15 bytes per noisy pixel at q95
    pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=95)
    return path.read_bytes()


class PeakRss:
    """Samples this process's resident memory in a thread."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_a_50_mb_upload_streams_without_raising_rss_by_20_mb(
    live_server, event, staff_token, tmp_path, settings
):
    settings.PHOTO_MAX_UPLOAD_MB = 60
    path = tmp_path / "huge.jpg"
    data = big_jpeg(path, 50)
    assert len(data) > 45 * 1024 * 1024
    digest = hashlib.sha256(data).hexdigest()
    del data
    url = f"{live_server.url}/api/events/{event.slug}/photos/"
    # The server runs in this process (a thread); the client streams from disk in another
    # thread, so what grows here is the server's memory (plus a little for the client).
    with PeakRss() as rss, path.open("rb") as fh:
        answer = httpx.post(
            url,
            files={"file": ("huge.jpg", fh, "image/jpeg")},
            headers={"Authorization": f"Token {staff_token}"},
            timeout=120,
        )
    assert answer.status_code == 201, answer.text
    assert answer.json()["sha256"] == digest
    growth_mb = (rss.peak - rss.baseline) / (1024 * 1024)
    assert growth_mb < 20, f"RSS grew by {growth_mb:.1f} MB"
    photo = Photo.objects.get()
    assert photo.size == path.stat().st_size
    with photo.original.open("rb") as stored:
        assert hashlib.sha256(stored.read()).hexdigest() == digest


def test_concurrent_uploads_of_the_same_file_make_one_row_and_one_file(
    live_server, event, staff_token, tmp_path
):
    path = tmp_path / "same.jpg"
    Image.effect_noise((1200, 900), 64).convert("RGB").save(path, format="JPEG", quality=90)
    url = f"{live_server.url}/api/events/{event.slug}/photos/"
    barrier = threading.Barrier(6)

    def send(_: int) -> httpx.Response:
        content = path.read_bytes()
        barrier.wait(timeout=30)
        return httpx.post(
            url,
            files={"file": ("same.jpg", content, "image/jpeg")},
            headers={"Authorization": f"Token {staff_token}"},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(send, range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 5 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.json()["duplicate"] for a in answers) == 5
    assert Photo.objects.count() == 1
    files = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert len(files) == 1
