"""GET /api/my-photos/ as an open gallery polls it: If-None-Match, what moves the ETag, and what
a 304 costs the server."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Selfie
from events.models import Membership
from faces.engines.base import DetectedFace
from faces.services import faces_store
from photos import gallery
from tests.photos.test_gallery_api import _descriptor, client_for, ids, photos_matched

pytestmark = pytest.mark.django_db

URL = "/api/my-photos/"


def member_with_selfie(user, event, seed: int) -> None:
    Membership.objects.create(user=user, event=event)
    Selfie.objects.create(
        user=user,
        image=f"selfies/{user.pk}.jpg",
        consent_at=timezone.now(),
        status=Selfie.Status.INDEXED,
        indexed_at=timezone.now(),
        descriptor=_descriptor(seed),
        engine="local",
    )


def face_found(event, photo, seed: int) -> None:
    """What photo processing does with a face: faces_store matches it and bumps the matched
    members' generations on commit."""
    faces_store(
        event_id=event.pk,
        photo_id=photo.pk,
        detected=[DetectedFace(0.1, 0.1, 0.2, 0.2, descriptor=_descriptor(seed))],
    )


def test_the_current_etag_gets_304_with_the_same_etag_and_no_body(attendee, event):
    photos_matched(attendee, event, 2)
    client = client_for(attendee)
    first = client.get(URL)
    assert first.status_code == 200

    again = client.get(URL, HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == first["ETag"]
    assert again["Cache-Control"] == "private, no-cache"
    # A stale ETag, or none that matches, gets the whole page again.
    other = client.get(URL, HTTP_IF_NONE_MATCH='"not-this-one"')
    assert other.status_code == 200 and other["ETag"] == first["ETag"]


def test_my_new_match_changes_my_etag_and_another_members_match_does_not(
    attendee, event, django_user_model, django_capture_on_commit_callbacks
):
    bob = django_user_model.objects.create_user(username="bob", password="x")
    member_with_selfie(attendee, event, seed=1)
    member_with_selfie(bob, event, seed=2)
    old = photos_matched(attendee, event, 1)[0]
    bobs_photo, my_photo = photos_matched(None, event, 2, start=1)
    ann, bob_client = client_for(attendee), client_for(bob)
    etag = ann.get(URL)["ETag"]
    bob_etag = bob_client.get(URL)["ETag"]

    # Bob is found in a photo: his gallery changes, mine does not.
    with django_capture_on_commit_callbacks(execute=True):
        face_found(event, bobs_photo, seed=2)
    assert ann.get(URL, HTTP_IF_NONE_MATCH=etag).status_code == 304
    changed_for_bob = bob_client.get(URL, HTTP_IF_NONE_MATCH=bob_etag)
    assert changed_for_bob.status_code == 200 and ids(changed_for_bob) == [bobs_photo.pk]

    # I am found in a photo: my ETag moves and the answer lists it.
    with django_capture_on_commit_callbacks(execute=True):
        face_found(event, my_photo, seed=1)
    changed = ann.get(URL, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    assert ids(changed) == [my_photo.pk, old.pk]
    assert ann.get(URL, HTTP_IF_NONE_MATCH=changed["ETag"]).status_code == 304


def test_each_event_filter_has_its_own_etag(attendee, event, staff_user):
    from events.models import Event

    other = Event.objects.create(name="Party", slug="party", created_by=staff_user)
    for e in (event, other):
        Membership.objects.create(user=attendee, event=e)
        photos_matched(attendee, e, 1)
    client = client_for(attendee)
    whole = client.get(URL)["ETag"]
    filtered = client.get(URL, {"event": "party"})

    assert len(ids(filtered)) == 1 and filtered["ETag"] != whole
    assert client.get(URL, {"event": "party"}, HTTP_IF_NONE_MATCH=whole).status_code == 200
    assert (
        client.get(URL, {"event": "party"}, HTTP_IF_NONE_MATCH=filtered["ETag"]).status_code == 304
    )


def _logged_in(user) -> Client:
    """A browser's session: the cookie, read and checked on every request."""
    client = Client()
    client.force_login(user)
    return client


def _unexpected(ctx: CaptureQueriesContext) -> list[str]:
    """Queries other than authentication (the session, the user) and reads of the cache table
    (the cache itself, when it is the database rather than Redis)."""
    allowed = ('FROM "django_session"', 'FROM "accounts_user"', 'FROM "findme_cache"')
    return [
        q["sql"]
        for q in ctx.captured_queries
        if not (q["sql"].startswith("SELECT") and any(a in q["sql"] for a in allowed))
    ]


def test_a_304_reads_nothing_beyond_authentication_and_the_cache(
    attendee, event, django_assert_max_num_queries, monkeypatch
):
    # The hits it counts are written once a second at most; this test must not straddle one.
    monkeypatch.setattr(gallery, "HITS_FLUSH_SECONDS", 3600)
    photos_matched(attendee, event, 3)
    browser = _logged_in(attendee)
    etag = browser.get(URL)["ETag"]

    # The session, the user, and one cache read (a query only when the cache is the database).
    with django_assert_max_num_queries(3), CaptureQueriesContext(connection) as ctx:
        answer = browser.get(URL, HTTP_IF_NONE_MATCH=etag)

    assert answer.status_code == 304
    assert _unexpected(ctx) == []


def test_a_304_still_comes_from_the_cache_after_the_page_itself_expired(
    attendee, event, monkeypatch
):
    """Open galleries poll every 5-10 s; the cached page lives MY_PHOTOS_CACHE_SECONDS. Its ETag
    outlives it, so an unchanged gallery is not rebuilt from the database each time it expires."""
    monkeypatch.setattr(gallery, "HITS_FLUSH_SECONDS", 3600)
    photos_matched(attendee, event, 3)
    browser = _logged_in(attendee)
    etag = browser.get(URL)["ETag"]
    user_id = attendee.pk
    variant = f"http://testserver{URL}"
    cache.delete(gallery._page_key(user_id, variant))  # as the page's timeout would

    with CaptureQueriesContext(connection) as ctx:
        answer = browser.get(URL, HTTP_IF_NONE_MATCH=etag)

    assert answer.status_code == 304
    assert _unexpected(ctx) == []
    # A request without the ETag still gets the page, rebuilt.
    assert len(ids(browser.get(URL))) == 3


def test_polls_answered_304_are_counted_as_cache_hits(attendee, event, staff_client):
    photos_matched(attendee, event, 1)
    client = client_for(attendee)
    etag = client.get(URL)["ETag"]  # a miss
    for _ in range(3):
        assert client.get(URL, HTTP_IF_NONE_MATCH=etag).status_code == 304

    stats = staff_client.get("/api/admin/queue/stats/").json()["cache"]["user_photos_cache"]
    assert (stats["hits"], stats["misses"]) == (3, 1)


def test_hits_are_written_to_the_shared_counter_in_batches(attendee, event, monkeypatch):
    from core.counters import counters_get

    photos_matched(attendee, event, 1)
    client = client_for(attendee)
    etag = client.get(URL)["ETag"]
    monkeypatch.setattr(gallery, "HITS_FLUSH_SECONDS", 3600)
    for _ in range(3):
        client.get(URL, HTTP_IF_NONE_MATCH=etag)
    assert counters_get([gallery.HITS_KEY])[gallery.HITS_KEY] == 0

    monkeypatch.setattr(gallery, "HITS_FLUSH_SECONDS", 0)
    client.get(URL, HTTP_IF_NONE_MATCH=etag)  # the first hit past the interval writes them all
    assert counters_get([gallery.HITS_KEY])[gallery.HITS_KEY] == 4


def test_if_match_beside_if_none_match_is_weighed_first(attendee, event):
    photos_matched(attendee, event, 1)
    client = client_for(attendee)
    etag = client.get(URL)["ETag"]

    refused = client.get(URL, HTTP_IF_NONE_MATCH=etag, HTTP_IF_MATCH='"something-else"')

    assert refused.status_code == 412


def test_a_rejected_match_moves_the_etag_at_once(
    attendee, event, django_capture_on_commit_callbacks
):
    photo, _ = photos_matched(attendee, event, 2)
    client = client_for(attendee)
    etag = client.get(URL)["ETag"]
    assert client.get(URL, HTTP_IF_NONE_MATCH=etag).status_code == 304

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"/api/photos/{photo.pk}/not-me/").status_code == 204

    assert client.get(URL, HTTP_IF_NONE_MATCH=etag).status_code == 200
