"""Originals and the zip go out without GPS or other location tags; storage keeps the upload."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
import zipfile
import zlib

import pillow_heif
import pytest
from PIL import Image

from events.models import Event
from faces.models import Match
from photos import privacy
from photos.models import Photo
from photos.services import photo_ingest
from tests.conftest import uploaded

pytestmark = pytest.mark.django_db

GPS_IFD, EXIF_IFD, ORIENTATION, DATETIME_ORIGINAL = 0x8825, 0x8769, 0x0112, 0x9003
TAKEN = "2024:05:06 07:08:09"
# 48° 51' 30" as the three RATIONALs a camera writes: the coordinates' bytes in the EXIF.
LATITUDE_BYTES = {
    order: b"".join(struct.pack(order + "II", n, 1) for n in (48, 51, 30)) for order in "<>"
}


def exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    exif[ORIENTATION] = 6
    exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = TAKEN
    return exif


def with_gps(fmt: str, size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buffer, fmt, exif=exif_with_gps().tobytes())
    return buffer.getvalue()


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def scan_data(jpeg: bytes) -> bytes:
    """The bytes from the start-of-scan marker on: the pixels as encoded."""
    at = 2
    while jpeg[at + 1] != 0xDA:
        at += 2 + struct.unpack(">H", jpeg[at + 2 : at + 4])[0]
    return jpeg[at:]


def assert_location_free(data: bytes) -> None:
    exif = Image.open(io.BytesIO(data)).getexif()
    assert not exif.get_ifd(GPS_IFD)
    assert not any(raw in data for raw in LATITUDE_BYTES.values())
    assert exif.get(ORIENTATION) == 6
    assert exif.get_ifd(EXIF_IFD).get(DATETIME_ORIGINAL) == TAKEN


@pytest.fixture
def gps_photo(event, staff_user, attendee) -> Photo:
    data = with_gps("JPEG", (1200, 900))
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)  # the upload carries GPS
    photo = photo_ingest(event=event, upload=uploaded("IMG_1.JPG", data), uploaded_by=staff_user)
    photo = photo.photo
    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.DONE)
    Match.objects.create(photo=photo, event=event, user=attendee, distance=0.3)
    return photo


def stored(photo: Photo) -> bytes:
    with photo.original.open("rb") as fh:
        return fh.read()


def served(answer) -> bytes:
    return b"".join(answer.streaming_content) if answer.streaming else answer.content


def test_original_is_served_without_location_and_with_untouched_pixels(gps_photo, attendee_client):
    answer = attendee_client.get(f"/api/photos/{gps_photo.pk}/original/")

    assert answer.status_code == 200
    body = served(answer)
    assert_location_free(body)
    original = stored(gps_photo)
    assert scan_data(body) == scan_data(original)
    assert int(answer["Content-Length"]) == len(body)
    assert answer["Content-Type"] == "image/jpeg"
    # Named by event, EXIF time taken and id (photos/naming.py), not "IMG_1.JPG".
    name = f"wedding-20240506-0708-{gps_photo.pk}.jpg"
    assert answer["Content-Disposition"] == f'attachment; filename="{name}"'
    # Storage still holds the upload, and the hash still names it.
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)
    assert hashlib.sha256(original).hexdigest() == gps_photo.sha256


def test_served_etag_names_the_served_bytes_and_revalidates(gps_photo, attendee_client):
    url = f"/api/photos/{gps_photo.pk}/original/"
    answer = attendee_client.get(url)
    assert answer["ETag"] == f'"{gps_photo.sha256}-original-noloc"'
    assert answer["Cache-Control"] == "private, max-age=31536000, immutable"

    again = attendee_client.get(url, HTTP_IF_NONE_MATCH=answer["ETag"])
    assert again.status_code == 304
    assert again["ETag"] == answer["ETag"]

    # The ETag of the bytes as stored does not validate the rewritten ones.
    stale = attendee_client.get(url, HTTP_IF_NONE_MATCH=f'"{gps_photo.sha256}-original"')
    assert stale.status_code == 200


def test_zip_entry_is_the_location_free_original(gps_photo, attendee_client):
    answer = attendee_client.get("/api/my-photos/download.zip")

    with zipfile.ZipFile(io.BytesIO(served(answer))) as archive:
        (name,) = archive.namelist()
        entry = archive.read(name)
    assert_location_free(entry)
    assert scan_data(entry) == scan_data(stored(gps_photo))
    assert entry == served(attendee_client.get(f"/api/photos/{gps_photo.pk}/original/"))


def test_an_event_that_keeps_location_serves_the_stored_bytes(gps_photo, attendee_client):
    Event.objects.filter(pk=gps_photo.event_id).update(keep_location=True)
    original = stored(gps_photo)

    answer = attendee_client.get(f"/api/photos/{gps_photo.pk}/original/")
    assert served(answer) == original
    assert answer["ETag"] == f'"{gps_photo.sha256}-original"'

    archive = attendee_client.get("/api/my-photos/download.zip")
    with zipfile.ZipFile(io.BytesIO(served(archive))) as opened:
        assert [opened.read(n) for n in opened.namelist()] == [original]


def test_events_keep_no_location_unless_told(staff_user):
    assert Event.objects.create(name="Run", slug="run").keep_location is False


def test_event_admin_lists_the_keep_location_setting(client, django_user_model, event):
    admin = django_user_model.objects.create_superuser(username="root", password="x" * 12)
    client.force_login(admin)
    changelist = client.get("/admin/events/event/")
    assert changelist.status_code == 200
    assert "column-keep_location" in changelist.content.decode()
    change = client.get(f"/admin/events/event/{event.pk}/change/")
    assert 'name="keep_location"' in change.content.decode()


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("PNG", "image/png"), ("WEBP", "image/webp"), ("JPEG", "image/jpeg")],
)
def test_each_format_loses_its_gps_and_keeps_its_length_and_pixels(fmt, content_type):
    data = with_gps(fmt)
    out = b"".join(privacy.location_removed(io.BytesIO(data), content_type, chunk_size=4096))
    assert_location_free(out)
    assert len(out) == len(data)  # scrubbed in place: nothing moved
    assert Image.open(io.BytesIO(out)).tobytes() == Image.open(io.BytesIO(data)).tobytes()


def test_heic_loses_its_gps():
    pillow_heif.register_heif_opener()
    data = with_gps("HEIF")
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)
    out = b"".join(privacy.location_removed(io.BytesIO(data), "image/heic"))
    exif = Image.open(io.BytesIO(out)).getexif()
    assert not exif.get_ifd(GPS_IFD)
    assert exif.get_ifd(EXIF_IFD).get(DATETIME_ORIGINAL) == TAKEN
    assert len(out) == len(data)


def exif_with_a_located_thumbnail(thumbnail: bytes) -> bytes:
    """An EXIF (``Exif\\0\\0`` and a little-endian TIFF) whose IFD0 holds the orientation and
    whose IFD1 points at ``thumbnail``, as cameras store their embedded preview."""
    ifd0 = struct.pack("<HHHIHH", 1, ORIENTATION, 3, 1, 6, 0) + struct.pack("<I", 26)
    ifd1 = struct.pack("<HHHIIHHII", 2, 0x0201, 4, 1, 56, 0x0202, 4, 1, len(thumbnail))
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + ifd1 + struct.pack("<I", 0)
    assert len(tiff) == 56
    return b"Exif\x00\x00" + tiff + thumbnail


def test_the_embedded_thumbnail_loses_its_own_gps_and_xmp_and_still_decodes():
    xmp = jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>Paris</x:xmpmeta>")
    small = with_gps("JPEG", (40, 30))
    thumbnail = small[:2] + xmp + small[2:]
    buffer = io.BytesIO()
    Image.effect_noise((320, 240), 40).convert("RGB").save(
        buffer, "JPEG", exif=exif_with_a_located_thumbnail(thumbnail)
    )
    data = buffer.getvalue()
    assert all(raw in data for raw in LATITUDE_BYTES.values()) and b"Paris" in data

    out = b"".join(privacy.location_removed(io.BytesIO(data), "image/jpeg"))

    assert len(out) == len(data)
    assert not any(raw in out for raw in LATITUDE_BYTES.values())
    assert b"Paris" not in out
    at = data.index(thumbnail)
    cleaned = Image.open(io.BytesIO(out[at : at + len(thumbnail)]))
    assert cleaned.size == (40, 30)
    assert not cleaned.getexif().get_ifd(GPS_IFD)
    assert cleaned.getexif().get_ifd(EXIF_IFD).get(DATETIME_ORIGINAL) == TAKEN
    assert Image.open(io.BytesIO(out)).getexif().get(ORIENTATION) == 6
    assert scan_data(out) == scan_data(data)


XMP_WITH_PLACE = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.5N" '
    b'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:City="Paris"/>'
    b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


def test_heic_xmp_is_emptied_in_place_and_the_file_still_reads():
    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    image = Image.effect_noise((96, 64), 40).convert("RGB")
    image.save(buffer, "HEIF", exif=exif_with_gps().tobytes(), xmp=XMP_WITH_PLACE)
    data = buffer.getvalue()
    assert b"Paris" in data

    out = b"".join(privacy.location_removed(io.BytesIO(data), "image/heic"))

    assert b"Paris" not in out and b"GPSLatitude" not in out
    assert len(out) == len(data)
    heif = pillow_heif.open_heif(io.BytesIO(out))
    assert len(heif.info["xmp"]) == len(XMP_WITH_PLACE)
    assert heif.info["xmp"].startswith(b"<?xpacket begin=")
    assert heif.info["xmp"].endswith(b'<?xpacket end="w"?>')
    assert Image.open(io.BytesIO(out)).tobytes() == Image.open(io.BytesIO(data)).tobytes()
    assert not Image.open(io.BytesIO(out)).getexif().get_ifd(GPS_IFD)


def test_webp_xmp_becomes_an_unknown_chunk_of_zeros_and_the_file_still_reads():
    buffer = io.BytesIO()
    image = Image.effect_noise((96, 64), 40).convert("RGB")
    image.save(buffer, "WEBP", exif=exif_with_gps().tobytes(), xmp=XMP_WITH_PLACE, lossless=True)
    data = buffer.getvalue()
    assert b"Paris" in data

    out = b"".join(privacy.location_removed(io.BytesIO(data), "image/webp"))

    assert b"Paris" not in out and b"XMP " not in out
    assert len(out) == len(data)
    assert Image.open(io.BytesIO(out)).tobytes() == image.tobytes()
    assert_location_free(out)


def test_an_xmp_too_short_for_an_empty_packet_becomes_spaces():
    assert privacy._empty_xmp(12) == b" " * 12
    packet = privacy._empty_xmp(400)
    assert len(packet) == 400
    assert packet.startswith(b"<?xpacket begin=") and packet.endswith(b'<?xpacket end="w"?>')


def test_jpeg_xmp_and_iptc_are_dropped_and_unreadable_exif_too():
    base = with_gps("JPEG")
    xmp = jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>Paris</x:xmpmeta>")
    iptc = jpeg_segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04Paris")
    broken = jpeg_segment(0xE1, b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xffParis")
    data = base[:2] + xmp + iptc + broken + base[2:]

    out = b"".join(privacy.location_removed(io.BytesIO(data), "image/jpeg"))

    assert b"Paris" not in out
    assert out.count(b"Exif\x00\x00") == 1  # the camera's, scrubbed; the broken one dropped
    assert_location_free(out)
    assert scan_data(out) == scan_data(base)


def test_png_xmp_text_chunk_is_dropped():
    data = with_gps("PNG")
    text = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00<x:xmpmeta>Paris</x:xmpmeta>"
    chunk = struct.pack(">I", len(text)) + b"iTXt" + text
    chunk += struct.pack(">I", zlib.crc32(b"iTXt" + text))
    data = data[:33] + chunk + data[33:]  # after the signature and IHDR
    out = b"".join(privacy.location_removed(io.BytesIO(data), "image/png"))
    assert b"Paris" not in out
    assert_location_free(out)


def test_a_file_that_is_not_what_it_claims_is_not_served():
    with pytest.raises(privacy.LocationNotRemovable):
        b"".join(privacy.location_removed(io.BytesIO(b"<html>" * 10), "image/jpeg"))


def test_the_scan_data_streams_in_pieces_of_the_chunk_size():
    data = with_gps("JPEG", (2000, 1500))
    pieces = list(privacy.location_removed(io.BytesIO(data), "image/jpeg", chunk_size=8192))
    head, rest = pieces[0], pieces[1:]
    assert len(head) < 4096  # the segments before the scan, EXIF included
    sizes = sorted(len(p) for p in rest)
    assert len(rest) > 10 and sizes[len(sizes) // 2] == 8192
    # A piece may run a few bytes over: a trailing 0xFF, or the 12 bytes that tell an
    # FF E1 in the noise from an embedded EXIF segment, wait for the next read.
    assert sizes[-1] <= 8192 + 12


def test_location_removal_wins_over_sending_the_file_through_nginx(
    gps_photo, attendee_client, settings
):
    """nginx would send the stored file, location included: with location to remove, the
    answer is always the rewritten bytes, whatever the X-Accel-Redirect setting says."""
    settings.SERVE_ORIGINALS_VIA_ACCEL_REDIRECT = True
    settings.ORIGINALS_ACCEL_PREFIX = "/internal/originals/"

    answer = attendee_client.get(f"/api/photos/{gps_photo.pk}/original/")

    assert answer.status_code == 200
    assert "X-Accel-Redirect" not in answer
    assert_location_free(served(answer))


def _large_original(path, fmt: str, megabytes: int) -> None:
    """A file of ``fmt`` with the camera's GPS EXIF up front and ``megabytes`` of image data
    behind it, written a megabyte at a time (the stripper never decodes that data)."""
    small = with_gps(fmt, (64, 48))
    with path.open("wb") as fh:
        if fmt == "JPEG":
            fh.write(small[: len(small) - len(scan_data(small))] + b"\xff\xda")
            for _ in range(megabytes):
                fh.write(os.urandom(1 << 20))
            fh.write(b"\xff\xd9")
        elif fmt == "PNG":
            fh.write(small[: small.index(b"IDAT") - 4])
            fh.write(struct.pack(">I", megabytes << 20) + b"IDAT")
            for _ in range(megabytes):
                fh.write(os.urandom(1 << 20))
            fh.write(b"\x00\x00\x00\x00" + small[small.index(b"IEND") - 4 :])
        else:
            fh.write(small)
            fh.write(b"JUNK" + struct.pack("<I", megabytes << 20))
            for _ in range(megabytes):
                fh.write(os.urandom(1 << 20))


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")],
)
def test_a_large_original_streams_without_being_held_in_memory(tmp_path, fmt, content_type):
    path = tmp_path / "large"
    _large_original(path, fmt, 40)
    served_bytes = 0
    tracemalloc.start()
    try:
        with path.open("rb") as source:
            for piece in privacy.location_removed(source, content_type, chunk_size=256 * 1024):
                served_bytes += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert served_bytes == path.stat().st_size  # scrubbed in place, every byte went out
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a 40 MB original"


@pytest.mark.parametrize("chunk_size", [7, 1000, 256 * 1024])
def test_images_embedded_behind_the_first_lose_their_gps_too(chunk_size):
    """A phone's MPF JPEG: a second image, with its own EXIF, right after the first's end."""
    primary, secondary = with_gps("JPEG"), with_gps("JPEG", (160, 120))
    data = primary + secondary

    out = b"".join(privacy.location_removed(io.BytesIO(data), "image/jpeg", chunk_size=chunk_size))

    assert len(out) == len(data)  # the MPF index's offsets still hold
    assert not any(raw in out for raw in LATITUDE_BYTES.values())
    assert_location_free(out[: len(primary)])
    assert_location_free(out[len(primary) :])
    assert scan_data(out[len(primary) :]) == scan_data(secondary)
