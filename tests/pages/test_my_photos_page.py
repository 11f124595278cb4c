"""My photos: exactly my photos, laid out so nothing shifts, with honest empty states."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Selfie
from events.models import Event
from faces.models import Match
from photos.views import MY_PHOTOS_PER_PAGE
from tests.conftest import jpeg_bytes
from tests.pages.conftest import join, match_make, photo_make

pytestmark = pytest.mark.django_db


def tile_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<li class="tile" id="photo-(\d+)"', html)]


@pytest.fixture
def indexed_selfie(attendee):
    from accounts.services import selfie_store

    selfie_store(user=attendee, upload=SimpleUploadedFile("s.jpg", jpeg_bytes()))
    Selfie.objects.filter(user=attendee).update(status="indexed", indexed_at=timezone.now())


def test_anonymous_visitor_is_sent_to_log_in(client):
    answer = client.get("/my/")
    assert answer.status_code == 302
    assert answer["Location"] == "/accounts/login/?next=/my/"


def test_a_new_member_is_told_to_join_an_event(ann_client):
    html = ann_client.get("/my/").content.decode()
    assert "Join an event with the link you were given" in html


def test_a_member_without_a_selfie_is_told_to_add_one(ann_client, attendee, event):
    join(attendee, event)
    html = ann_client.get("/my/").content.decode()
    assert "You have not added a selfie yet" in html
    assert 'href="/me/selfie/"' in html


def test_photos_still_processing_are_mentioned_without_a_count(
    ann_client, attendee, event, indexed_selfie
):
    join(attendee, event)
    photo_make(event, status="queued")
    photo_make(event, status="processing")
    photo_make(event, status="done")
    html = ann_client.get("/my/").content.decode()
    # Whose faces those two hold is not known yet: they are the event's, not "yours".
    assert "The photographer's latest photos are still being checked" in html
    assert "2 photos" not in html


def test_a_selfie_being_read_is_explained(ann_client, attendee, event):
    from accounts.services import selfie_store

    join(attendee, event)
    selfie_store(user=attendee, upload=SimpleUploadedFile("s.jpg", jpeg_bytes()))
    assert "We are reading your selfie" in ann_client.get("/my/").content.decode()


def test_shows_exactly_my_live_matches(
    ann_client, attendee, event, indexed_selfie, django_user_model
):
    join(attendee, event)
    other = django_user_model.objects.create_user(username="bob", password="bob-pass-1234")
    mine = [photo_make(event) for _ in range(3)]
    for photo in mine:
        match_make(photo, attendee)
    match_make(photo_make(event), attendee, rejected=True)  # said "not me"
    match_make(photo_make(event), other)  # someone else's
    photo_make(event)  # nobody's
    match_make(photo_make(event, status="processing"), attendee)  # not finished

    page = ann_client.get("/my/")
    assert page.status_code == 200
    html = page.content.decode()
    assert tile_ids(html) == [p.pk for p in reversed(mine)]  # newest first
    assert "3 photos" in html
    assert 'href="/api/my-photos/download.zip"' in html


def test_thumbnails_are_lazy_sized_and_coloured_while_loading(
    ann_client, attendee, event, indexed_selfie
):
    join(attendee, event)
    photo = photo_make(event, placeholder="#336699")
    match_make(photo, attendee)
    html = ann_client.get("/my/").content.decode()
    img = re.search(rf"<img src=\"/api/photos/{photo.pk}/thumb/\"[^>]*>", html).group(0)
    assert 'loading="lazy"' in img
    assert 'width="400"' in img and 'height="267"' in img
    # static/js/gallery.js paints it from the link's data attribute (the CSP forbids style="").
    assert 'data-placeholder="#336699"' in html
    assert 'alt="Photo from Wedding' in img
    assert f'href="/api/photos/{photo.pk}/preview/"' in html
    assert f'href="/api/photos/{photo.pk}/original/" download' in html
    assert f'action="/my/photos/{photo.pk}/not-me/"' in html
    assert f'data-api="/api/photos/{photo.pk}/not-me/"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "js/gallery.js" in html
    assert '<dialog class="lightbox"' in html


def test_pages_of_sixty(ann_client, attendee, event, indexed_selfie):
    join(attendee, event)
    for _ in range(MY_PHOTOS_PER_PAGE + 1):
        match_make(photo_make(event), attendee)
    first = ann_client.get("/my/").content.decode()
    assert len(tile_ids(first)) == MY_PHOTOS_PER_PAGE
    assert "Page 1 of 2" in first
    assert 'rel="next" href="?page=2"' in first
    second = ann_client.get("/my/?page=2").content.decode()
    assert len(tile_ids(second)) == 1
    assert not set(tile_ids(first)) & set(tile_ids(second))


def test_members_of_several_events_can_filter(ann_client, attendee, event, indexed_selfie):
    party = Event.objects.create(name="After party", slug="party")
    join(attendee, event)
    join(attendee, party)
    at_wedding = photo_make(event)
    at_party = photo_make(party)
    match_make(at_wedding, attendee)
    match_make(at_party, attendee)

    everything = ann_client.get("/my/").content.decode()
    assert '<nav class="chips" aria-label="Events">' in everything
    assert 'href="/my/?event=party"' in everything
    assert set(tile_ids(everything)) == {at_wedding.pk, at_party.pk}
    only_party = ann_client.get("/my/?event=party").content.decode()
    assert tile_ids(only_party) == [at_party.pk]
    assert 'href="/api/my-photos/download.zip?event=party"' in only_party
    assert ann_client.get("/my/?event=not-mine").status_code == 404


def test_one_event_needs_no_filter(ann_client, attendee, event, indexed_selfie):
    join(attendee, event)
    assert 'aria-label="Events"' not in ann_client.get("/my/").content.decode()


def test_not_me_without_javascript_removes_the_photo_and_comes_back(
    ann_client, attendee, event, indexed_selfie
):
    join(attendee, event)
    keep, drop = photo_make(event), photo_make(event)
    match_make(keep, attendee)
    match_make(drop, attendee)
    answer = ann_client.post(f"/my/photos/{drop.pk}/not-me/", {"next": "/my/?page=1"})
    assert answer.status_code == 302
    assert answer["Location"] == "/my/?page=1"
    assert Match.objects.get(photo=drop, user=attendee).rejected
    html = ann_client.get(answer["Location"]).content.decode()
    assert tile_ids(html) == [keep.pk]
    # The page offers the undo once (tests/photos/test_not_me_undo.py follows it).
    assert "Removed from your gallery." in html
    assert f'action="/my/photos/{drop.pk}/not-me/undo/"' in html


def test_not_me_never_redirects_off_site(ann_client, attendee, event, indexed_selfie):
    photo = photo_make(event)
    match_make(photo, attendee)
    answer = ann_client.post(f"/my/photos/{photo.pk}/not-me/", {"next": "https://evil.example/"})
    assert answer["Location"] == "/my/"


def test_not_me_needs_a_post(ann_client, attendee, event):
    photo = photo_make(event)
    match_make(photo, attendee)
    assert ann_client.get(f"/my/photos/{photo.pk}/not-me/").status_code == 405
    assert not Match.objects.get(photo=photo).rejected


def test_not_me_on_someone_elses_photo_changes_nothing(ann_client, event, django_user_model):
    other = django_user_model.objects.create_user(username="bob", password="bob-pass-1234")
    photo = photo_make(event)
    match_make(photo, other)
    answer = ann_client.post(f"/my/photos/{photo.pk}/not-me/")
    assert answer.status_code == 302
    assert not Match.objects.get(photo=photo, user=other).rejected


def _queries_for_my_page(client) -> int:
    # The page reads the API's answer for its live polling through the gallery cache: measure
    # with that answer cached each time, like with like (a miss's own queries do not grow with
    # the photos either: tests/photos/test_gallery_api.py).
    assert client.get("/my/").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/my/").status_code == 200
    return len(queries)


def test_query_count_does_not_grow_with_the_number_of_photos(
    ann_client, attendee, event, indexed_selfie, django_assert_max_num_queries
):
    party = Event.objects.create(name="After party", slug="party")
    join(attendee, event)
    join(attendee, party)
    photo_make(event, status="queued")
    match_make(photo_make(event), attendee)
    few = _queries_for_my_page(ann_client)

    for i in range(40):
        match_make(photo_make(event if i % 2 else party), attendee)
    many = _queries_for_my_page(ann_client)
    assert many == few
    with django_assert_max_num_queries(10):
        ann_client.get("/my/")
