"""GET /api/my-photos/: what it lists, how it pages, and how its per-user cache behaves."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Selfie
from core.counters import counter_add
from core.generations import generation_key
from events.models import Event, Membership
from faces.engines.base import DetectedFace
from faces.models import Match
from faces.services import faces_store
from photos import gallery
from photos.models import Photo

pytestmark = pytest.mark.django_db

URL = "/api/my-photos/"


def photos_matched(user, event: Event, n: int, *, start: int = 0, **extra) -> list[Photo]:
    """n done photos of ``event``, each a minute newer than the last, all matched to ``user``."""
    epoch = timezone.now() - timedelta(days=30)
    Photo.objects.bulk_create(
        [
            Photo(
                event=event,
                sha256=f"{event.pk:04d}{start + i:060d}",
                original=f"photos/{event.pk}/{start + i}.jpg",
                content_type="image/jpeg",
                size=100,
                width=640,
                height=480,
                status=Photo.Status.DONE,
                face_count=1,
                **extra,
            )
            for i in range(n)
        ]
    )
    photos = list(Photo.objects.filter(event=event).order_by("pk"))[start : start + n]
    for i, photo in enumerate(photos):  # auto_now_add ignores bulk values: order them here
        Photo.objects.filter(pk=photo.pk).update(created_at=epoch + timedelta(minutes=start + i))
    if user is not None:
        Match.objects.bulk_create(
            [Match(photo=p, event=event, user=user, distance=0.3) for p in photos]
        )
    return photos


def ids(answer) -> list[int]:
    assert answer.status_code == 200, answer.content
    return [p["id"] for p in answer.json()["results"]]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def counters_ready():
    """Every gallery counter exists, so every request takes the same path through the cache."""
    counter_add(gallery.HITS_KEY, 0)
    counter_add(gallery.MISSES_KEY, 0)
    counter_add(gallery.STORED_KEY, 0)


# --- what is listed ---------------------------------------------------------------------------
def test_lists_only_my_live_matches_of_done_photos_newest_first(
    attendee, attendee_client, event, django_user_model
):
    other = django_user_model.objects.create_user(username="bob", password="x")
    mine = photos_matched(attendee, event, 3)
    photos_matched(other, event, 2, start=3)  # someone else's
    rejected = photos_matched(attendee, event, 1, start=5)[0]
    Match.objects.filter(photo=rejected).update(rejected=True)
    queued = photos_matched(attendee, event, 1, start=6)[0]
    Photo.objects.filter(pk=queued.pk).update(status=Photo.Status.QUEUED)

    answer = attendee_client.get(URL)

    assert ids(answer) == [p.pk for p in reversed(mine)]
    body = answer.json()
    assert body["count"] == 3
    assert body["next"] is None and body["previous"] is None
    first = body["results"][0]
    assert set(first) >= {
        "id", "event", "sha256", "status", "width", "height", "taken_at", "faces",
        "created_at", "thumb_url", "preview_url", "download_url",
    }  # fmt: skip
    assert first["event"] == "wedding"
    assert first["thumb_url"].endswith(f"/api/photos/{first['id']}/thumb/")
    assert first["download_url"].endswith(f"/api/photos/{first['id']}/original/")
    assert answer["Content-Type"] == "application/json"


def test_event_filter_lists_only_that_event(attendee, attendee_client, event):
    race = Event.objects.create(name="Race", slug="race")
    Membership.objects.create(user=attendee, event=event)
    Membership.objects.create(user=attendee, event=race)
    wedding_photos = photos_matched(attendee, event, 2)
    race_photos = photos_matched(attendee, race, 3)

    assert set(ids(attendee_client.get(URL, {"event": "race"}))) == {p.pk for p in race_photos}
    assert set(ids(attendee_client.get(URL, {"event": "wedding"}))) == {
        p.pk for p in wedding_photos
    }
    assert len(ids(attendee_client.get(URL))) == 5


def test_event_filter_for_an_event_not_joined_is_404_in_the_error_shape(attendee_client, event):
    for slug in ["wedding", "no-such-event"]:
        answer = attendee_client.get(URL, {"event": slug})
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
        assert set(answer.json()["error"]) == {"code", "message", "detail"}


def test_pages_follow_page_and_page_size(attendee, attendee_client, event):
    photos = list(reversed(photos_matched(attendee, event, 5)))  # newest first

    first = attendee_client.get(URL, {"page_size": 2})
    second = attendee_client.get(URL, {"page_size": 2, "page": 2})
    last = attendee_client.get(URL, {"page_size": 2, "page": 3})

    assert ids(first) == [p.pk for p in photos[:2]]
    assert ids(second) == [p.pk for p in photos[2:4]]
    assert ids(last) == [photos[4].pk]
    assert first.json()["count"] == 5
    assert "page=2" in first.json()["next"]
    assert last.json()["next"] is None


def test_page_size_is_capped_at_500(attendee, attendee_client, event):
    photos_matched(attendee, event, 501)

    answer = attendee_client.get(URL, {"page_size": 1000})

    assert len(ids(answer)) == 500
    assert answer.json()["count"] == 501
    assert answer.json()["next"] is not None


def test_page_past_the_end_is_404_in_the_error_shape(attendee, attendee_client, event):
    photos_matched(attendee, event, 1)
    answer = attendee_client.get(URL, {"page": 9})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_anonymous_caller_gets_401_in_the_error_shape():
    answer = APIClient().get(URL)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "not_authenticated"


# --- constant queries ---------------------------------------------------------------------------
def test_sql_queries_do_not_grow_with_the_number_of_matches(
    event, django_user_model, django_assert_num_queries, counters_ready
):
    one = django_user_model.objects.create_user(username="one", password="x")
    fifty = django_user_model.objects.create_user(username="fifty", password="x")
    photos_matched(one, event, 1)
    photos_matched(fifty, event, 50, start=1)
    one_client, fifty_client = client_for(one), client_for(fifty)

    with CaptureQueriesContext(connection) as cold:
        assert len(ids(one_client.get(URL))) == 1
    with CaptureQueriesContext(connection) as warm:
        assert len(ids(one_client.get(URL))) == 1

    with django_assert_num_queries(len(cold)):
        assert len(ids(fifty_client.get(URL))) == 50
    with django_assert_num_queries(len(warm)):
        assert len(ids(fifty_client.get(URL))) == 50

    # Whatever the cache backend adds, the photos are read by two queries (count and page) on
    # a miss, and not at all on a hit.
    def photo_queries(ctx) -> list[str]:
        return [q["sql"] for q in ctx.captured_queries if '"photos_photo"' in q["sql"]]

    assert len(photo_queries(cold)) == 2
    assert photo_queries(warm) == []
    # Metadata only: the renditions table is never touched.
    for sql in [q["sql"] for q in cold.captured_queries]:
        assert "photos_rendition" not in sql


def test_cold_queries_stay_constant_after_an_invalidation(
    event, django_user_model, django_assert_num_queries, counters_ready
):
    one = django_user_model.objects.create_user(username="one", password="x")
    fifty = django_user_model.objects.create_user(username="fifty", password="x")
    photos_matched(one, event, 1)
    photos_matched(fifty, event, 50, start=1)
    for user in (one, fifty):
        client_for(user).get(URL)  # the generation exists now
    from core.generations import users_generation_bump

    users_generation_bump([one.pk, fifty.pk])

    with CaptureQueriesContext(connection) as cold_one:
        client_for(one).get(URL)
    with django_assert_num_queries(len(cold_one)):
        assert len(ids(client_for(fifty).get(URL))) == 50


# --- the cache ----------------------------------------------------------------------------------
def test_second_request_is_a_hit_with_the_same_bytes_and_is_counted(
    attendee, attendee_client, event, staff_client
):
    photos_matched(attendee, event, 3)

    first = attendee_client.get(URL)
    second = attendee_client.get(URL)
    attendee_client.get(URL, {"page_size": 2})  # another variant: a miss of its own

    assert second.content == first.content
    stats = staff_client.get("/api/admin/queue/stats/")
    assert stats.status_code == 200
    user_cache = stats.json()["cache"]["user_photos_cache"]
    assert user_cache["hits"] == 1
    assert user_cache["misses"] == 2
    assert user_cache["hit_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert user_cache["size"] == 2


def cache_counters(staff_client) -> dict:
    stats = staff_client.get("/api/admin/queue/stats/")
    assert stats.status_code == 200
    return stats.json()["cache"]["user_photos_cache"]


def test_size_counts_pages_written_and_a_miss_that_ends_in_404_writes_none(
    attendee, attendee_client, event, staff_client
):
    photos_matched(attendee, event, 1)

    assert attendee_client.get(URL, {"page": 9}).status_code == 404
    assert cache_counters(staff_client) | {"hit_rate": None} == {
        "hits": 0, "misses": 1, "hit_rate": None, "size": 0,
    }  # fmt: skip

    attendee_client.get(URL)
    attendee_client.get(URL)
    assert cache_counters(staff_client)["size"] == 1


def test_size_is_counted_whatever_the_cache_backend(
    attendee, attendee_client, event, staff_client, settings
):
    """No backend's private storage is read: a cache the stats know nothing about counts too."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()  # locmem caches of one name share their store across tests
    photos_matched(attendee, event, 2)

    attendee_client.get(URL)
    attendee_client.get(URL, {"page_size": 1})
    attendee_client.get(URL)

    assert cache_counters(staff_client) == {"hits": 1, "misses": 2, "hit_rate": 0.3333, "size": 2}


@pytest.mark.parametrize("cache_seconds", [30, 0])
def test_etag_answers_304_until_the_gallery_changes(
    attendee, attendee_client, event, settings, cache_seconds, django_capture_on_commit_callbacks
):
    settings.MY_PHOTOS_CACHE_SECONDS = cache_seconds
    photo, _ = photos_matched(attendee, event, 2)

    first = attendee_client.get(URL)
    etag = first["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert first["Cache-Control"] == "private, no-cache"

    same = attendee_client.get(URL, HTTP_IF_NONE_MATCH=etag)
    assert same.status_code == 304 and same.content == b""
    assert (same["ETag"], same["Cache-Control"]) == (etag, "private, no-cache")
    assert attendee_client.get(URL, HTTP_IF_NONE_MATCH=f'"x", W/{etag}').status_code == 304
    other_page = attendee_client.get(URL, {"page_size": 1}, HTTP_IF_NONE_MATCH=etag)
    assert other_page.status_code == 200 and other_page["ETag"] != etag

    with django_capture_on_commit_callbacks(execute=True):
        attendee_client.post(f"/api/photos/{photo.pk}/not-me/")
    changed = attendee_client.get(URL, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert len(ids(changed)) == 1 and changed["ETag"] != etag


def test_cache_is_per_user(attendee, attendee_client, event, django_user_model):
    other = django_user_model.objects.create_user(username="bob", password="x")
    mine = photos_matched(attendee, event, 2)
    theirs = photos_matched(other, event, 1, start=2)

    assert set(ids(attendee_client.get(URL))) == {p.pk for p in mine}
    assert ids(client_for(other).get(URL)) == [theirs[0].pk]


def test_gallery_is_cached_until_the_generation_moves(attendee, attendee_client, event):
    photos_matched(attendee, event, 2)
    assert len(ids(attendee_client.get(URL))) == 2

    # A change that bypasses the services (no generation bump) stays invisible while cached...
    Match.objects.filter(user=attendee).delete()
    assert len(ids(attendee_client.get(URL))) == 2

    # ...and shows as soon as the user's generation moves.
    from core.generations import users_generation_bump

    users_generation_bump([attendee.pk])
    assert ids(attendee_client.get(URL)) == []


def test_an_evicted_generation_never_revives_a_stale_page(attendee, attendee_client, event):
    photos_matched(attendee, event, 2)
    assert len(ids(attendee_client.get(URL))) == 2
    Match.objects.filter(user=attendee).delete()

    cache.delete(generation_key(attendee.pk))  # as a full cache would cull it

    assert ids(attendee_client.get(URL)) == []


def test_cache_off_when_seconds_is_zero(attendee, attendee_client, event, settings):
    settings.MY_PHOTOS_CACHE_SECONDS = 0
    photos_matched(attendee, event, 1)
    assert len(ids(attendee_client.get(URL))) == 1
    Match.objects.filter(user=attendee).delete()
    assert ids(attendee_client.get(URL)) == []


def test_not_me_empties_the_cached_gallery_at_once(
    attendee, attendee_client, event, django_capture_on_commit_callbacks
):
    photo, kept = photos_matched(attendee, event, 2)
    assert len(ids(attendee_client.get(URL))) == 2

    with django_capture_on_commit_callbacks(execute=True):
        answer = attendee_client.post(f"/api/photos/{photo.pk}/not-me/")

    assert answer.status_code == 204
    assert ids(attendee_client.get(URL)) == [kept.pk]


def _descriptor(seed: int) -> bytes:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return (vector / np.linalg.norm(vector) * 0.5).tobytes()


def test_a_new_match_appears_at_once_through_the_real_matching_service(
    attendee, attendee_client, event, django_capture_on_commit_callbacks
):
    """faces_store (what photo processing calls) bumps the member's generation on commit."""
    Membership.objects.create(user=attendee, event=event)
    Selfie.objects.create(
        user=attendee,
        image="selfies/ann.jpg",
        consent_at=timezone.now(),
        status=Selfie.Status.INDEXED,
        indexed_at=timezone.now(),
        descriptor=_descriptor(1),
        engine="local",
    )
    old = photos_matched(attendee, event, 1)[0]
    new = photos_matched(None, event, 1, start=1)[0]
    assert ids(attendee_client.get(URL)) == [old.pk]

    with django_capture_on_commit_callbacks(execute=True):
        faces_store(
            event_id=event.pk,
            photo_id=new.pk,
            detected=[DetectedFace(0.1, 0.1, 0.2, 0.2, descriptor=_descriptor(1))],
        )

    assert Match.objects.filter(photo=new, user=attendee, rejected=False).exists()
    assert ids(attendee_client.get(URL)) == [new.pk, old.pk]


def test_gallery_rows_are_exactly_the_shared_photo_shape(attendee, attendee_client, event):
    """The gallery's faster serializer must never drift from PhotoOutputSerializer."""
    from rest_framework.test import APIRequestFactory

    from photos.api_gallery import GalleryPhotoSerializer
    from photos.serializers import PhotoOutputSerializer

    photos = photos_matched(attendee, event, 3)
    Photo.objects.filter(pk=photos[0].pk).update(taken_at=timezone.now())
    rows = list(Photo.objects.filter(pk__in=[p.pk for p in photos]).select_related("event"))
    request = APIRequestFactory().get(URL, HTTP_HOST="testserver")
    context = {"request": request}

    fast = GalleryPhotoSerializer(rows, many=True, context=context).data
    shared = PhotoOutputSerializer(rows, many=True, context=context).data

    assert fast == shared
    assert fast[0]["preview_url"] == f"http://testserver/api/photos/{rows[0].pk}/preview/"
