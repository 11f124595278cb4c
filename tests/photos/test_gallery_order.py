"""The gallery's order (when a photo was taken, else uploaded; newest first) and its day or hour
headings, on the page and in GET /api/my-photos/."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from events.models import Event
from photos.gallery import gallery_grouping
from photos.models import Photo
from tests.pages.conftest import join, match_make, photo_make

pytestmark = pytest.mark.django_db


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def mine(user, event: Event, *, taken: datetime | None, uploaded: datetime) -> Photo:
    photo = photo_make(event)
    Photo.objects.filter(pk=photo.pk).update(taken_at=taken, created_at=uploaded)
    match_make(photo, user)
    return photo


@pytest.fixture
def page_client(attendee) -> Client:
    client = Client()
    client.force_login(attendee)
    return client


def tile_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<li class="tile" id="photo-(\d+)"', html)]


def headings(html: str) -> list[tuple[str, list[int]]]:
    """Each group heading of the page with the tiles under it, in order."""
    out = []
    for section in re.findall(r'<section class="gallery-group".*?</section>', html, flags=re.S):
        title = re.search(
            r'<h2 class="gallery-group-title"[^>]*><time[^>]*>([^<]*)</time>', section
        )
        out.append((title.group(1) if title else "", tile_ids(section)))
    return out


# --- order ----------------------------------------------------------------------------------------
def test_the_gallery_is_ordered_by_time_taken_else_upload_time_newest_first(
    attendee, attendee_client, page_client, event
):
    join(attendee, event)
    # Uploaded in one order, taken in another; one without an EXIF time sits by its upload.
    taken_late = mine(attendee, event, taken=at(5, 18), uploaded=at(6, 9, 0))
    taken_early = mine(attendee, event, taken=at(5, 11), uploaded=at(6, 9, 1))
    no_exif = mine(attendee, event, taken=None, uploaded=at(5, 14))
    taken_latest = mine(attendee, event, taken=at(5, 20), uploaded=at(6, 8, 59))
    expected = [taken_latest.pk, taken_late.pk, no_exif.pk, taken_early.pk]

    answer = attendee_client.get("/api/my-photos/")
    assert [row["id"] for row in answer.json()["results"]] == expected
    answer = attendee_client.get("/api/my-photos/", {"event": event.slug})
    assert [row["id"] for row in answer.json()["results"]] == expected
    assert tile_ids(page_client.get("/my/").content.decode()) == expected


def test_photos_taken_at_the_same_moment_keep_a_stable_order(attendee, attendee_client, event):
    same = [mine(attendee, event, taken=at(5, 12), uploaded=at(6, 9, n)) for n in range(3)]
    answer = attendee_client.get("/api/my-photos/")
    assert [row["id"] for row in answer.json()["results"]] == [p.pk for p in reversed(same)]


def test_the_order_holds_across_pages(attendee, attendee_client, event):
    photos = [mine(attendee, event, taken=at(1 + n, 12), uploaded=at(20, n)) for n in range(5)]
    first = attendee_client.get("/api/my-photos/", {"page_size": 2}).json()
    second = attendee_client.get("/api/my-photos/", {"page_size": 2, "page": 2}).json()
    seen = [row["id"] for row in first["results"] + second["results"]]
    assert seen == [p.pk for p in reversed(photos)][:4]


def test_the_list_reads_no_image_bytes(attendee, attendee_client, page_client, event):
    join(attendee, event)
    mine(attendee, event, taken=at(5, 12), uploaded=at(6, 9))
    for client, url in ((attendee_client, "/api/my-photos/"), (page_client, "/my/")):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        sql = " ".join(q["sql"] for q in queries.captured_queries)
        assert "photos_rendition" not in sql, url
        assert "COALESCE" in sql, url  # ordered in the database, not in Python


# --- headings -------------------------------------------------------------------------------------
def test_grouping_is_by_day_over_days_by_hour_for_a_long_day_and_none_for_a_short_while():
    assert gallery_grouping(None, None) == ""
    assert gallery_grouping(at(5, 14), at(5, 15, 30)) == ""
    assert gallery_grouping(at(5, 14), at(5, 16)) == "hour"
    assert gallery_grouping(at(5, 23, 50), at(6, 0, 10)) == "day"  # past midnight is a new day
    assert gallery_grouping(at(5, 9), at(7, 9)) == "day"


def test_an_event_over_several_days_has_a_heading_per_day(attendee, page_client, event):
    join(attendee, event)
    sat_evening = mine(attendee, event, taken=at(12, 19), uploaded=at(14, 9))
    sat_noon = mine(attendee, event, taken=at(12, 12), uploaded=at(14, 9))
    sunday = mine(attendee, event, taken=at(13, 10), uploaded=at(14, 9))

    html = page_client.get("/my/").content.decode()

    assert headings(html) == [
        ("Sunday 13 December 2026", [sunday.pk]),
        ("Saturday 12 December 2026", [sat_evening.pk, sat_noon.pk]),
    ]
    assert '<time datetime="2026-12-12">' in html
    assert 'aria-labelledby="group-20261212"' in html and 'id="group-20261212"' in html


def test_a_long_single_day_event_has_a_heading_per_hour(attendee, page_client, event):
    join(attendee, event)
    late = mine(attendee, event, taken=at(12, 17, 45), uploaded=at(12, 18))
    later = mine(attendee, event, taken=at(12, 17, 50), uploaded=at(12, 18))
    early = mine(attendee, event, taken=at(12, 15, 5), uploaded=at(12, 18))

    html = page_client.get("/my/").content.decode()

    assert headings(html) == [
        ("17:00 – 18:00", [later.pk, late.pk]),
        ("15:00 – 16:00", [early.pk]),
    ]
    assert '<time datetime="2026-12-12T17:00">' in html


def test_a_short_event_has_no_headings(attendee, page_client, event):
    join(attendee, event)
    photos = [mine(attendee, event, taken=at(12, 15, n), uploaded=at(12, 18)) for n in range(3)]
    html = page_client.get("/my/").content.decode()
    assert headings(html) == [("", [p.pk for p in reversed(photos)])]
    assert "gallery-group-title" not in html


def test_every_page_of_a_gallery_is_grouped_alike(attendee, page_client, event, monkeypatch):
    # Page 2 holds photos of one day only: still headed by day, as page 1 is.
    monkeypatch.setattr("photos.views.MY_PHOTOS_PER_PAGE", 2)
    join(attendee, event)
    mine(attendee, event, taken=at(13, 12), uploaded=at(14, 9))
    mine(attendee, event, taken=at(12, 18), uploaded=at(14, 9))
    third = mine(attendee, event, taken=at(12, 17), uploaded=at(14, 9))
    last = mine(attendee, event, taken=at(12, 16), uploaded=at(14, 9))

    html = page_client.get("/my/?page=2").content.decode()

    assert headings(html) == [("Saturday 12 December 2026", [third.pk, last.pk])]


def test_the_groups_and_the_count_come_in_a_fixed_number_of_queries(attendee, page_client, event):
    join(attendee, event)
    start = at(1, 8)
    for n in range(30):
        mine(attendee, event, taken=start + timedelta(hours=7 * n), uploaded=at(20, 9))
    page_client.get("/my/")  # the gallery cache warm, as for any later visit
    with CaptureQueriesContext(connection) as few:
        page_client.get("/my/")
    for n in range(30):
        mine(attendee, event, taken=start + timedelta(hours=5 * n), uploaded=at(20, 9))
    page_client.get("/my/")
    with CaptureQueriesContext(connection) as many:
        html = page_client.get("/my/").content.decode()
    assert len(many) == len(few)
    assert len(headings(html)) == 9  # 1 to 9 December
