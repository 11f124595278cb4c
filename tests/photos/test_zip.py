"""GET /api/my-photos/download.zip: a valid zip of exactly my originals, streamed in constant memory."""

from __future__ import annotations

import gc
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from events.models import Event, Membership
from faces.models import Match
from photos.models import Photo

pytestmark = pytest.mark.django_db

URL = "/api/my-photos/download.zip"
MB = 1024 * 1024


@contextmanager
def received_zip(answer) -> Iterator[zipfile.ZipFile]:
    """The streamed answer, spooled to a temporary file (never memory) and opened as a zip."""
    with tempfile.TemporaryFile() as fh:
        for chunk in answer.streaming_content:
            fh.write(chunk)
        fh.seek(0)
        with zipfile.ZipFile(fh) as archive:
            yield archive


def entry(photo: Photo) -> str:
    """The name a photo of these tests (uploaded now, no EXIF time) has in the zip, as in
    ``<event>-<taken>-<id>.jpg`` (tests/photos/test_download_names.py tests the name itself)."""
    return f"{photo.event.slug}-{photo.created_at:%Y%m%d-%H%M}-{photo.pk}.jpg"


def photos_with_originals(
    user, event: Event, contents: list[bytes] | None = None, *, count: int = 0, shared: bytes = b""
) -> list[Photo]:
    """Done photos matched to ``user`` whose originals are on disk.

    With ``shared``, every original is a hard link to one file, so that hundreds of 4 MB
    originals cost one write.
    """
    # These originals are arbitrary bytes, served as stored: location removal, which only
    # serves images it can walk, is tested in tests/photos/test_original_privacy.py.
    Event.objects.filter(pk=event.pk).update(keep_location=True)
    root = Path(default_storage.location)
    contents = contents or []
    count = count or len(contents)
    source = None
    if shared:
        source = root / "shared.bin"
        source.write_bytes(shared)
    rows = []
    for i in range(count):
        name = f"photos/{event.pk}/{i:04d}.jpg"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if source is not None:
            os.link(source, path)
        else:
            path.write_bytes(contents[i])
        size = len(shared) if source is not None else len(contents[i])
        rows.append(
            Photo(
                event=event,
                sha256=f"{event.pk:04d}{i:060d}",
                original=name,
                original_name=f"IMG_{i:04d}.JPG",
                content_type="image/jpeg",
                size=size,
                status=Photo.Status.DONE,
            )
        )
    Photo.objects.bulk_create(rows, batch_size=500)
    photos = list(Photo.objects.filter(event=event).order_by("pk"))
    Match.objects.bulk_create(
        [Match(photo=p, event=event, user=user, distance=0.3) for p in photos], batch_size=500
    )
    return photos


def test_zip_is_valid_and_holds_exactly_my_originals(
    attendee, attendee_client, event, django_user_model
):
    contents = [os.urandom(100_000 + i) for i in range(5)]
    photos = photos_with_originals(attendee, event, contents)
    Match.objects.filter(photo=photos[4]).update(rejected=True)  # "not me": left out
    other = django_user_model.objects.create_user(username="bob", password="x")
    race = Event.objects.create(name="Race", slug="race")
    photos_with_originals(other, race, [b"not yours"])

    answer = attendee_client.get(URL)

    assert answer.status_code == 200
    assert answer.streaming
    assert answer["Content-Type"] == "application/zip"
    # Of no one event: the attendee joined none (their matches were made directly).
    assert answer["Content-Disposition"] == 'attachment; filename="findme-photos.zip"'
    with received_zip(answer) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names == [entry(p) for p in reversed(photos[:4])]  # newest first
        for photo, data in zip(photos[:4], contents[:4], strict=True):
            assert archive.read(entry(photo)) == data


def test_event_filter_limits_the_zip(attendee, attendee_client, event):
    race = Event.objects.create(name="Race", slug="race")
    Membership.objects.create(user=attendee, event=race)
    photos_with_originals(attendee, event, [b"wedding photo"])
    race_photo = photos_with_originals(attendee, race, [b"race photo"])[0]

    answer = attendee_client.get(URL, {"event": "race"})

    assert answer["Content-Disposition"] == 'attachment; filename="race.zip"'
    with received_zip(answer) as archive:
        assert archive.namelist() == [entry(race_photo)]
        assert archive.read(entry(race_photo)) == b"race photo"


def test_a_missing_original_is_left_out_and_the_zip_stays_valid(attendee, attendee_client, event):
    photos = photos_with_originals(attendee, event, [b"first", b"second"])
    default_storage.delete(photos[0].original.name)

    answer = attendee_client.get(URL)

    with received_zip(answer) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [entry(photos[1])]


def test_empty_gallery_gives_an_empty_valid_zip(attendee_client):
    answer = attendee_client.get(URL)
    with received_zip(answer) as archive:
        assert archive.namelist() == []


def test_zip_needs_a_login_and_a_joined_event(attendee_client, event):
    assert APIClient().get(URL).status_code == 401
    answer = attendee_client.get(URL, {"event": "wedding"})  # not joined
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_zip_of_500_photos_of_4_mb_streams_in_constant_memory(attendee, attendee_client, event):
    count, size = 500, 4 * MB
    photos_with_originals(attendee, event, count=count, shared=os.urandom(size))
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    peak = before
    total = 0

    answer = attendee_client.get(URL, {"page_size": 10})  # pagination does not apply to the zip
    for n, chunk in enumerate(answer.streaming_content):
        total += len(chunk)
        if n % 16 == 0:
            peak = max(peak, process.memory_info().rss)
    peak = max(peak, process.memory_info().rss)

    assert total > count * size  # every original went through, with headers
    growth = (peak - before) / MB
    print(f"zip of {count} x 4 MB: {total / MB:.0f} MB streamed, RSS grew {growth:.1f} MB")
    assert growth < 50, f"RSS grew by {growth:.1f} MB"
