"""One name per photo wherever it is saved: ``<event>-<taken>-<id>.<ext>`` for a single
download, a zip entry and a shared file (the tile's data-name), and ``<event>.zip`` for a zip."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.test import Client

from events.models import Event, Membership
from photos.models import Photo
from photos.naming import photo_download_name
from tests.photos.test_zip import photos_with_originals, received_zip

pytestmark = pytest.mark.django_db

TAKEN = datetime(2026, 12, 1, 15, 30, 42, tzinfo=UTC)


def disposition_name(answer) -> str:
    found = re.fullmatch(r'attachment; filename="([^"]+)"', answer["Content-Disposition"])
    assert found, answer["Content-Disposition"]
    return found.group(1)


@pytest.fixture
def photo(attendee, event) -> Photo:
    Membership.objects.create(user=attendee, event=event)
    (photo,) = photos_with_originals(attendee, event, [b"the original bytes"])
    Photo.objects.filter(pk=photo.pk).update(taken_at=TAKEN)
    photo.refresh_from_db()
    return photo


def test_a_photo_is_named_by_event_time_taken_and_id(photo):
    assert photo_download_name(photo) == f"wedding-20261201-1530-{photo.pk}.jpg"


def test_without_a_time_taken_the_upload_time_names_it(photo):
    Photo.objects.filter(pk=photo.pk).update(
        taken_at=None, created_at=datetime(2026, 11, 30, 8, 5, tzinfo=UTC)
    )
    photo.refresh_from_db()
    assert photo_download_name(photo) == f"wedding-20261130-0805-{photo.pk}.jpg"


@pytest.mark.parametrize(
    ("content_type", "sent_as", "extension"),
    [
        ("image/jpeg", "IMG_1.JPG", "jpg"),
        ("image/jpeg", "scan.jpeg", "jpg"),
        ("image/png", "Screenshot.PNG", "png"),
        ("image/heic", "IMG_7.HEIF", "heif"),  # a HEIC file's own other extension stays
        ("image/heic", "IMG_7.jpg", "heic"),  # a name that lies about the format does not
        ("image/webp", "", "webp"),
    ],
)
def test_jpeg_is_jpg_and_other_formats_keep_their_own_extension(
    photo, content_type, sent_as, extension
):
    photo.content_type, photo.original_name = content_type, sent_as
    assert photo_download_name(photo) == f"wedding-20261201-1530-{photo.pk}.{extension}"


def test_the_single_download_and_the_zip_entry_have_the_same_name(photo, attendee_client):
    single = attendee_client.get(f"/api/photos/{photo.pk}/original/")
    assert single.status_code == 200
    name = disposition_name(single)
    assert name == f"wedding-20261201-1530-{photo.pk}.jpg"

    for url, query in (
        ("/api/my-photos/download.zip", {}),
        ("/api/my-photos/download.zip", {"event": "wedding"}),
        ("/api/my-photos/selection.zip", {"ids": photo.pk}),
    ):
        answer = attendee_client.get(url, query)
        assert disposition_name(answer) == "wedding.zip", (url, query)
        with received_zip(answer) as archive:
            assert archive.namelist() == [name]
            assert archive.read(name) == b"the original bytes"
            # The entry's own date is the time taken too.
            assert archive.getinfo(name).date_time == (2026, 12, 1, 15, 30, 42)


def test_the_gallery_page_gives_each_photo_its_download_name(photo, attendee):
    client = Client()
    client.force_login(attendee)
    html = client.get("/my/").content.decode()
    assert f'data-name="wedding-20261201-1530-{photo.pk}.jpg"' in html


def test_a_zip_of_photos_of_several_events_is_named_after_none(photo, attendee, attendee_client):
    race = Event.objects.create(name="Race", slug="race")
    Membership.objects.create(user=attendee, event=race)
    (at_race,) = photos_with_originals(attendee, race, [b"race"])

    everything = attendee_client.get("/api/my-photos/download.zip")
    assert disposition_name(everything) == "findme-photos.zip"
    chosen = attendee_client.get(
        "/api/my-photos/selection.zip", {"ids": f"{photo.pk},{at_race.pk}"}
    )
    assert disposition_name(chosen) == "findme-photos.zip"
    with received_zip(chosen) as archive:
        assert sorted(archive.namelist()) == sorted(
            [f"wedding-20261201-1530-{photo.pk}.jpg", photo_download_name(at_race)]
        )
    only_race = attendee_client.get("/api/my-photos/selection.zip", {"ids": at_race.pk})
    assert disposition_name(only_race) == "race.zip"
