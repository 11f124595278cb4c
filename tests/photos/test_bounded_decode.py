"""Bounded work in the web process.

A request judges an upload by its header and its structure and never decodes its pixels; a
selfie, which must be decoded to count its faces, is decoded at a bounded scale; Pillow's
decompression-bomb guard stays on for the process, and the worker still processes photos up to
PHOTO_MAX_PIXELS. The last test runs a real server and measures its memory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import psutil
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageFile, WebPImagePlugin

from accounts.models import Selfie
from core import imaging
from photos.models import Photo
from photos.services import photo_ingest, photo_process
from tests.conftest import uploaded
from tests.photos.test_ingest_api import assert_error, assert_nothing_stored, stored_files

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


# --- files -----------------------------------------------------------------------------------------
def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def blank_png(width: int, height: int) -> bytes:
    """A real 1-bit PNG of any size in a few kilobytes (the tester's file: 12 KB for 10000x10000).

    Written row by row, so that the test itself never holds the pixels.
    """
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the row's bits, all black
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def encoded(fmt: str, size: tuple[int, int], mode: str = "RGB", **options) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode == "L" else (200, 110, 40)).save(buffer, fmt, **options)
    return buffer.getvalue()


def heic(size: tuple[int, int]) -> bytes:
    # x265's fastest preset: a 12 MP frame in about 2 s instead of 15.
    return encoded("HEIF", size, quality=10, enc_params={"preset": "ultrafast"})


def heic_claiming(size: tuple[int, int]) -> bytes:
    """A small HEIC whose header (its 'ispe' box) claims ``size``: what a crafted file does.

    libheif reports the claimed size when the file is opened and fails only when the coded
    picture is decoded; so a refusal with image_too_large also shows nothing was decoded.
    """
    data = bytearray(heic((640, 480)))  # a size x265 codes without a cropping ('clap') box
    ispe = data.index(b"ispe")
    data[ispe + 8 : ispe + 16] = struct.pack(">II", *size)
    return bytes(data)


@pytest.fixture(scope="module")
def huge_jpeg() -> bytes:
    """A real baseline JPEG of 10000x10000 (grey, 1.2 MB)."""
    with _pillow_limit(None):
        return encoded("JPEG", (10000, 10000), "L", quality=50)


@pytest.fixture(scope="module")
def huge_webp() -> bytes:
    """A real lossless WebP of 10000x10000 (one colour: a few dozen bytes)."""
    with _pillow_limit(None):
        return encoded("WEBP", (10000, 10000), lossless=True, method=0, quality=0)


@contextlib.contextmanager
def _pillow_limit(limit: int | None) -> Iterator[None]:
    """Make a test fixture larger than the app allows; the app's own guard is restored."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


# --- watching the decoders ---------------------------------------------------------------------------
class DecodeSpy:
    """Records every pixel load and every WebP decoder made, in any plugin, while active."""

    def __init__(self) -> None:
        self.loads: list[tuple[str | None, tuple[int, int]]] = []
        self.webp_decoders = 0

    @contextlib.contextmanager
    def watching(self) -> Iterator[DecodeSpy]:
        from pillow_heif.as_plugin import _LibHeifImageFile

        spy = self

        def recorder(original):
            def load(image, *args, **kwargs):
                spy.loads.append((image.format, image.size))
                return original(image, *args, **kwargs)

            return load

        real_decoder = WebPImagePlugin._webp.WebPAnimDecoder

        def decoder(*args, **kwargs):
            spy.webp_decoders += 1
            return real_decoder(*args, **kwargs)

        with (
            mock.patch.object(ImageFile.ImageFile, "load", recorder(ImageFile.ImageFile.load)),
            mock.patch.object(
                WebPImagePlugin.WebPImageFile, "load", recorder(WebPImagePlugin.WebPImageFile.load)
            ),
            mock.patch.object(_LibHeifImageFile, "load", recorder(_LibHeifImageFile.load)),
            mock.patch.object(WebPImagePlugin._webp, "WebPAnimDecoder", decoder),
        ):
            yield self

    def sizes_loaded(self) -> set[tuple[int, int]]:
        """The sizes pixels were loaded at (a loaded image's further load() calls repeat one)."""
        return {size for _, size in self.loads}


@pytest.fixture
def decode_spy() -> DecodeSpy:
    return DecodeSpy()


def upload_photo(client, slug: str, data: bytes, name: str):
    body = {"file": SimpleUploadedFile(name, data, content_type="application/octet-stream")}
    return client.post(f"/api/events/{slug}/photos/", body, format="multipart")


def put_selfie(client, data: bytes, name: str = "me.png"):
    body = {
        "file": SimpleUploadedFile(name, data, content_type="application/octet-stream"),
        "consent": "true",
    }
    return client.put("/api/me/selfie/", body, format="multipart")


def assert_no_selfie_kept() -> None:
    assert not Selfie.objects.exists()
    assert stored_files() == []


# --- the process-wide guard ------------------------------------------------------------------------
def test_pillows_bomb_guard_is_on_and_sized_to_the_largest_accepted_image():
    assert Image.MAX_IMAGE_PIXELS is not None
    assert max(settings.PHOTO_MAX_PIXELS, settings.SELFIE_MAX_PIXELS) == Image.MAX_IMAGE_PIXELS
    # Any code in the process that opens a larger image is refused by Pillow itself.
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(blank_png(20000, 10001)))


def test_an_image_past_pillows_own_limit_is_image_too_large_not_a_crash(staff_client, event):
    answer = upload_photo(staff_client, event.slug, blank_png(15000, 15000), "huge.png")
    assert_error(answer, 400, "image_too_large")
    assert_nothing_stored()


def test_a_photo_of_the_full_photo_limit_is_processed_by_the_worker(huge_jpeg, event):
    assert settings.PHOTO_MAX_PIXELS == 10000 * 10000
    photo = photo_ingest(event=event, upload=uploaded("big.jpg", huge_jpeg), uploaded_by=None).photo
    assert (photo.width, photo.height) == (10000, 10000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
        # The worker's full-resolution decode (small faces' descriptors) passes the guard too.
        with photo.original.open("rb") as fh:
            assert imaging.decode_upright(fh).size == (10000, 10000)


# --- a selfie is judged by its header --------------------------------------------------------------
def test_the_testers_10000x10000_png_selfie_is_refused_unread_and_nothing_is_kept(
    attendee_client, decode_spy
):
    bomb = blank_png(10000, 10000)
    assert len(bomb) < 16_000  # the tester's file: 12 KB
    with decode_spy.watching():
        started = time.perf_counter()
        answer = put_selfie(attendee_client, bomb)
        elapsed = time.perf_counter() - started
    error = assert_error(answer, 400, "image_too_large")
    assert "10000x10000" in error["message"]
    assert f"{settings.SELFIE_MAX_PIXELS:,}" in error["message"]
    assert decode_spy.loads == []
    assert_no_selfie_kept()
    print(f"10000x10000 PNG selfie refused in {elapsed * 1000:.1f} ms")


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_a_10000x10000_selfie_of_another_type_is_refused_unread(
    fmt, attendee_client, decode_spy, huge_jpeg, huge_webp
):
    data = huge_jpeg if fmt == "JPEG" else huge_webp
    with decode_spy.watching():
        answer = put_selfie(attendee_client, data, name=f"me.{fmt.lower()}")
    assert_error(answer, 400, "image_too_large")
    assert decode_spy.loads == [] and decode_spy.webp_decoders == 0
    assert_no_selfie_kept()


def test_a_selfie_under_its_own_limit_but_over_the_default_is_refused_by_the_setting(
    attendee_client, settings
):
    settings.SELFIE_MAX_PIXELS = 2_000_000
    answer = put_selfie(attendee_client, blank_png(2000, 1001))
    assert "2,000,000" in assert_error(answer, 400, "image_too_large")["message"]
    assert_no_selfie_kept()


# --- a selfie is decoded at a bounded scale ----------------------------------------------------------
def test_a_large_jpeg_selfie_is_decoded_at_a_reduced_dct_scale(attendee_client, decode_spy):
    data = encoded("JPEG", (8160, 6120), quality=60)  # a 50 MP phone sensor's full frame
    with decode_spy.watching():
        answer = put_selfie(attendee_client, data, name="me.jpg")
    # A blank frame has no face: it was decoded, at 1/2 scale, and judged.
    assert_error(answer, 400, "no_face")
    assert decode_spy.sizes_loaded() == {(4080, 3060)}


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("png", lambda: blank_png(5000, 4000)),
        ("webp", lambda: encoded("WEBP", (5000, 4000), lossless=True, method=0, quality=0)),
        ("heic", lambda: heic_claiming((5000, 4000))),
        ("progressive-jpeg", lambda: encoded("JPEG", (5000, 4000), progressive=True)),
    ],
)
def test_a_selfie_that_cannot_be_read_smaller_is_refused_above_the_decode_cap(
    name, make, attendee_client, decode_spy
):
    data = make()
    with decode_spy.watching():
        answer = put_selfie(attendee_client, data, name=f"me.{name}")
    message = assert_error(answer, 400, "image_too_large")["message"]
    assert "5000x4000" in message and f"{4096 * 4096:,}" in message
    assert decode_spy.loads == []
    assert_no_selfie_kept()


@pytest.mark.parametrize(
    ("make", "decoded_at"),
    [
        (lambda: encoded("PNG", (4032, 3024)), (4032, 3024)),
        (lambda: encoded("WEBP", (4032, 3024), quality=80), (4032, 3024)),
        (lambda: heic((4032, 3024)), (4032, 3024)),
        # Under twice 2048 px: no DCT scale would help, and the file is under the cap.
        (lambda: encoded("JPEG", (4032, 3024), progressive=True), (4032, 3024)),
    ],
    ids=["png", "webp", "heic", "progressive-jpeg"],
)
def test_a_12_mp_phone_selfie_of_any_type_is_decoded_and_judged(
    make, decoded_at, attendee_client, decode_spy
):
    with decode_spy.watching():
        answer = put_selfie(attendee_client, make())
    assert_error(answer, 400, "no_face")  # decoded, and a blank frame has no face
    assert decode_spy.sizes_loaded() == {decoded_at}


def test_a_selfie_whose_body_does_not_decode_is_invalid_image_not_a_500(attendee_client):
    data = bytearray(heic((400, 300)))
    coded = data.index(b"mdat") + 4
    data[coded : coded + 64] = bytes(64)  # the header stands; the coded picture is gone
    assert_error(put_selfie(attendee_client, bytes(data), name="me.heic"), 400, "invalid_image")
    assert_no_selfie_kept()


# --- decode_upright: bounded, upright ----------------------------------------------------------------
def test_a_non_jpeg_is_reduced_before_it_is_turned_upright():
    exif = Image.Exif()
    exif[imaging.EXIF_ORIENTATION] = 6  # stored sideways: the camera was turned
    data = encoded("PNG", (3000, 1000), exif=exif.tobytes())
    image = imaging.decode_upright(io.BytesIO(data), max_side=1000)
    assert (image.mode, image.size) == ("RGB", (334, 1000))


def test_a_jpeg_too_large_for_the_callers_limit_is_refused_before_decoding(decode_spy):
    with decode_spy.watching(), pytest.raises(imaging.ImageRejected) as refused:
        imaging.decode_upright(io.BytesIO(encoded("JPEG", (3000, 2000))), max_pixels=5_000_000)
    assert refused.value.code == "image_too_large"
    assert decode_spy.loads == []


# --- photos: no upload is decoded in the request ----------------------------------------------------
@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_a_10000x10000_photo_over_the_limit_is_refused_unread(
    fmt, staff_client, event, settings, decode_spy, huge_jpeg, huge_webp
):
    settings.PHOTO_MAX_PIXELS = 64_000_000
    data = huge_jpeg if fmt == "JPEG" else huge_webp
    with decode_spy.watching():
        answer = upload_photo(staff_client, event.slug, data, f"big.{fmt.lower()}")
    error = assert_error(answer, 400, "image_too_large")
    assert "10000x10000" in error["message"]
    assert decode_spy.loads == [] and decode_spy.webp_decoders == 0
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("fmt", "make"),
    [
        ("webp", lambda: encoded("WEBP", (3000, 2000), quality=80)),
        ("webp-lossless", lambda: encoded("WEBP", (3000, 2000), lossless=True, method=0)),
        ("heic", lambda: heic((3000, 2000))),
        ("png", lambda: encoded("PNG", (3000, 2000))),
        ("jpeg", lambda: encoded("JPEG", (3000, 2000))),
    ],
)
def test_a_photo_of_each_type_is_accepted_without_decoding_its_pixels(
    fmt, make, staff_client, event, decode_spy
):
    data = make()
    with decode_spy.watching():
        answer = upload_photo(staff_client, event.slug, data, f"p.{fmt}")
    assert answer.status_code == 201, answer.content
    assert (answer.json()["width"], answer.json()["height"]) == (3000, 2000)
    assert decode_spy.loads == [] and decode_spy.webp_decoders == 0
    # The worker decodes it, once.
    assert photo_process(photo_id=answer.json()["id"]) == Photo.Status.DONE


def test_a_webp_photos_exif_orientation_is_read_from_its_chunks(staff_client, event):
    exif = Image.Exif()
    exif[imaging.EXIF_ORIENTATION] = 6
    exif[imaging.EXIF_DATETIME] = "2026:06:13 15:04:05"
    data = encoded("WEBP", (300, 200), exif=exif.tobytes())
    body = upload_photo(staff_client, event.slug, data, "p.webp").json()
    assert (body["width"], body["height"]) == (200, 300)
    assert body["taken_at"].startswith("2026-06-13T15:04:05")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: d[: len(d) * 2 // 3], "cut short"),
        (lambda d: d[:12] + b"VP8X" + struct.pack("<I", 10**6) + d[20:], "runs past the end"),
        (lambda d: d[:12] + b"XXXX" + d[16:], "holds no image"),
    ],
    ids=["truncated", "chunk-past-the-end", "no-image-chunk"],
)
def test_a_damaged_webp_is_refused_from_its_structure(
    damage, expected, staff_client, event, decode_spy
):
    data = damage(encoded("WEBP", (640, 480), quality=80))
    with decode_spy.watching():
        error = assert_error(upload_photo(staff_client, event.slug, data, "p.webp"), 400)
    assert error["code"] == "invalid_image"
    assert expected in error["message"]
    assert decode_spy.webp_decoders == 0
    assert_nothing_stored()


def test_a_heic_whose_body_does_not_decode_is_accepted_then_failed_by_the_worker_with_a_reason(
    staff_client, event
):
    data = bytearray(heic((640, 480)))
    coded = data.index(b"mdat") + 4
    data[coded : coded + 4] = b"\xff\xff\xff\xff"  # the coded picture's length runs off the end
    answer = upload_photo(staff_client, event.slug, bytes(data), "IMG_0001.HEIC")
    assert answer.status_code == 201, answer.content
    # The bytes are bad for good: failed at the first attempt, not retried.
    assert photo_process(photo_id=answer.json()["id"]) == Photo.Status.FAILED
    error = Photo.objects.get(pk=answer.json()["id"]).error
    assert "could not be decoded: it is damaged or cut short" in error


def test_a_jpeg_with_a_trailer_after_its_end_is_whole_and_a_cut_one_is_not(
    staff_client, event, decode_spy
):
    # Phones append a video (a motion photo) or other data after the image's end marker.
    jpeg = encoded("JPEG", (640, 480), progressive=True)
    whole = jpeg + b"ftypmp42" + os.urandom(20_000)
    cut = jpeg[: len(jpeg) // 2]
    with decode_spy.watching():
        assert upload_photo(staff_client, event.slug, whole, "motion.jpg").status_code == 201
        error = assert_error(upload_photo(staff_client, event.slug, cut, "cut.jpg"), 400)
    assert error["code"] == "invalid_image" and "cut short" in error["message"]
    assert decode_spy.loads == []


# --- a real server: eight bombs at once ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _multipart(fields: dict[str, str], file: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + file
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _put_selfie(port: int, token: str, data: bytes, name: str) -> tuple[int, dict, float]:
    body, content_type = _multipart({"consent": "true"}, data, name)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/me/selfie/",
        data=body,
        method="PUT",
        headers={"Authorization": f"Token {token}", "Content-Type": content_type},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310 - loopback
            status, payload = answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        status, payload = refused.code, refused.read()
    return status, json.loads(payload), time.perf_counter() - started


class RssPeak:
    """Samples a process's RSS every few milliseconds, keeping the highest."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def live_findme() -> Iterator[tuple[int, str, psutil.Process, Path]]:
    """`manage.py runserver` on the embedded defaults, in a temporary folder, with one member."""
    folder = Path(tempfile.mkdtemp(prefix="findme-bounds-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "AWS_STORAGE_BUCKET_NAME"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="1",
        SQLITE_PATH=str(folder / "db.sqlite3"),
        MEDIA_ROOT=str(folder / "media"),
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    for command in (["migrate", "--verbosity", "0"], ["createcachetable"]):
        subprocess.run([*manage, *command], env=env, cwd=ROOT, check=True, timeout=300)
    made = subprocess.run(
        [
            *manage,
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model\n"
            "from rest_framework.authtoken.models import Token\n"
            "user = get_user_model().objects.create_user('bob', password='bob-pass-1234')\n"
            "print(Token.objects.create(user=user).key)",
        ],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    token = made.stdout.strip().splitlines()[-1]
    port = _free_port()
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(
        [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, (folder / "server.log").read_text()
            assert time.monotonic() < deadline, "runserver did not listen within 60 s"
            time.sleep(0.1)
        yield port, token, psutil.Process(server.pid), folder
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.django_db(False)
def test_eight_10000x10000_selfies_at_once_leave_the_servers_memory_flat(live_findme):
    port, token, server, folder = live_findme
    # Warm up: a real selfie request that decodes and runs the face detector, so that the
    # modules, the dlib models and the request machinery are in memory before the baseline.
    status, body, _ = _put_selfie(port, token, encoded("JPEG", (640, 480)), "warm.jpg")
    assert (status, body["error"]["code"]) == (400, "no_face"), body
    time.sleep(0.5)
    before = server.memory_info().rss

    bomb = blank_png(10000, 10000)
    with RssPeak(server.pid) as rss, ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: _put_selfie(port, token, bomb, f"{i}.png"), range(8)))
    growth_mb = (max(rss.peak, server.memory_info().rss) - before) / 2**20

    times = ", ".join(f"{seconds * 1000:.0f}" for _, _, seconds in answers)
    print(
        f"\n8 concurrent 10000x10000 PNG selfies: {times} ms each; "
        f"server RSS {before / 2**20:.0f} MB before, peak growth {growth_mb:.1f} MB"
    )
    assert growth_mb < 50
    for status, body, _ in answers:
        assert status == 400 and body["error"]["code"] == "image_too_large", body
    media = folder / "media"
    assert not media.exists() or [p for p in media.rglob("*") if p.is_file()] == []
