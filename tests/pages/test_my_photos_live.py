"""My photos, live: the page carries what its polling starts from (the API's URL and ETag for
the same photos), and says only what it knows."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from accounts.models import Selfie
from events.models import Event
from tests.conftest import jpeg_bytes
from tests.pages.conftest import join, match_make, photo_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def indexed_selfie(attendee):
    from accounts.services import selfie_store

    selfie_store(user=attendee, upload=SimpleUploadedFile("s.jpg", jpeg_bytes()))
    Selfie.objects.filter(user=attendee).update(status="indexed", indexed_at=timezone.now())


def live_notice(page_html: str) -> dict[str, str]:
    found = re.search(r'<div class="notices" id="live-notice"([^>]*)>', page_html)
    assert found, "no live notice on the page"
    return {
        name: html_lib.unescape(value)
        for name, value in re.findall(r'data-live-([a-z]+)="([^"]*)"', found.group(1))
    }


def test_the_page_polls_the_api_with_the_etag_of_what_it_shows(
    ann_client, attendee, event, indexed_selfie
):
    join(attendee, event)
    mine = [photo_make(event) for _ in range(3)]
    for photo in mine:
        match_make(photo, attendee)

    live = live_notice(ann_client.get("/my/").content.decode())

    assert live["url"] == "/api/my-photos/"
    assert live["count"] == "3"
    assert sorted(int(pk) for pk in live["ids"].split()) == sorted(p.pk for p in mine)
    assert ann_client.get(live["url"], HTTP_IF_NONE_MATCH=live["etag"]).status_code == 304


def test_a_page_of_one_event_polls_that_event_with_its_own_etag(
    ann_client, attendee, event, indexed_selfie, staff_user
):
    party = Event.objects.create(name="Party", slug="party", created_by=staff_user)
    for e in (event, party):
        join(attendee, e)
        match_make(photo_make(e), attendee)

    whole = live_notice(ann_client.get("/my/").content.decode())
    only = live_notice(ann_client.get("/my/", {"event": "party"}).content.decode())

    assert only["url"] == "/api/my-photos/?event=party"
    assert only["count"] == "1" and whole["count"] == "2"
    assert only["etag"] != whole["etag"]
    assert ann_client.get(only["url"], HTTP_IF_NONE_MATCH=only["etag"]).status_code == 304
    assert ann_client.get(whole["url"], HTTP_IF_NONE_MATCH=whole["etag"]).status_code == 304


def test_a_change_after_the_page_was_built_is_a_200_to_its_first_poll(
    ann_client, attendee, event, indexed_selfie, django_capture_on_commit_callbacks
):
    join(attendee, event)
    match_make(photo_make(event), attendee)
    live = live_notice(ann_client.get("/my/").content.decode())
    from faces.services.matching import galleries_changed

    with django_capture_on_commit_callbacks(execute=True):
        new = match_make(photo_make(event), attendee).photo
        galleries_changed([attendee.pk])  # what matching does once it stored the match

    answer = ann_client.get(live["url"], HTTP_IF_NONE_MATCH=live["etag"])
    assert answer.status_code == 200
    assert new.pk in [p["id"] for p in answer.json()["results"]]


def test_an_empty_gallery_polls_too_and_its_script_comes_from_static(
    ann_client, attendee, event, indexed_selfie
):
    join(attendee, event)
    page_html = ann_client.get("/my/").content.decode()

    live = live_notice(page_html)
    assert live["count"] == "0" and live["ids"] == ""
    assert re.search(r'<script src="/static/js/live\.js[^"]*" defer></script>', page_html)
    # No inline script anywhere: the CSP allows scripts from static/js/ only.
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", page_html)


def test_no_polling_before_joining_an_event(ann_client):
    page_html = ann_client.get("/my/").content.decode()
    assert 'id="live-notice"' not in page_html
    assert "js/live.js" not in page_html


def test_the_events_backlog_is_never_shown_as_the_guests_own_count(
    ann_client, attendee, event, indexed_selfie, staff_user
):
    join(attendee, event)
    match_make(photo_make(event), attendee)
    for _ in range(3):
        photo_make(event, status="queued")
    photo_make(event, status="processing")

    page_html = ann_client.get("/my/").content.decode()

    assert "The photographer's latest photos are still being checked" in page_html
    assert "4 photos" not in page_html  # the event's, not hers
    assert "reload in a minute" not in page_html.lower()

    # A page of another event of hers says nothing of this one's backlog.
    party = Event.objects.create(name="Party", slug="party", created_by=staff_user)
    join(attendee, party)
    match_make(photo_make(party), attendee)
    party_html = ann_client.get("/my/", {"event": "party"}).content.decode()
    assert "still being checked" not in party_html


def test_an_empty_gallery_with_a_backlog_does_not_promise_photos(
    ann_client, attendee, event, indexed_selfie
):
    join(attendee, event)
    photo_make(event, status="queued")

    page_html = ann_client.get("/my/").content.decode()

    assert "No photos of you yet" in page_html
    assert "on their way" not in page_html
    assert "still being checked" in page_html
