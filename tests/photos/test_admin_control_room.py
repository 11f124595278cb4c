"""The event and photo pages of the admin as staff run an event with them (issue 15): progress
and exact counts per event, thumbnails and file names, search by hash prefix or name, the
preview with its faces framed and who each is matched to, and constant query counts."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from events.models import Event, Membership
from faces.models import Face, Match
from photos.models import Photo
from tests.pages.conftest import photo_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    root = django_user_model.objects.create_superuser(username="root", password="root-pass-123")
    client.force_login(root)
    return client


def face_make(photo, index: int, *, left=0.1, top=0.2, width=0.1, height=0.15) -> Face:
    return Face.objects.create(
        photo=photo,
        event=photo.event,
        index=index,
        left=left,
        top=top,
        width=width,
        height=height,
        engine="local",
    )


def many_photos(event, count: int) -> None:
    Photo.objects.bulk_create(
        Photo(
            event=event,
            sha256=hashlib.sha256(f"{event.pk}-{n}".encode()).hexdigest(),
            original=f"photos/{event.pk}/{n}.jpg",
            original_name=f"IMG_{n:04d}.jpg",
            content_type="image/jpeg",
            size=1000,
            width=4000,
            height=3000,
            status=("done", "queued", "failed", "processing")[n % 4],
        )
        for n in range(count)
    )


def test_the_event_list_shows_progress_and_exact_counts(staff_client, event, attendee):
    done = [photo_make(event) for _ in range(3)]
    photo_make(event, status="queued")
    photo_make(event, status="failed")
    Membership.objects.create(user=attendee, event=event)
    matched = face_make(done[0], 0)
    Match.objects.create(photo=done[0], event=event, user=attendee, face=matched, distance=0.4)
    said_not_me = face_make(done[1], 0)
    Match.objects.create(
        photo=done[1], event=event, user=attendee, face=said_not_me, distance=0.45, rejected=True
    )
    face_make(done[2], 0)
    face_make(done[2], 1)

    html = staff_client.get("/admin/events/event/").content.decode()
    assert 'aria-label="1 queued, 3 done, 1 failed"' in html
    row = re.search(r"<tr>.*?Wedding.*?</tr>", html, re.S).group(0)
    cells = re.findall(r'<td class="field-(\w+)[^"]*">(.*?)</td>', row, re.S)
    values = {name: value for name, value in cells}
    assert values["members"] == "1"
    assert values["matched_photos"] == "1"
    assert values["unmatched_faces"] == "3"  # the rejected face and the two nobody claims


def test_the_event_list_keeps_one_query_count_with_5000_photos(staff_client, event):
    many_photos(event, 10)
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get("/admin/events/event/").status_code == 200
    other = Event.objects.create(name="Race", slug="race")
    many_photos(other, 5000)
    with CaptureQueriesContext(connection) as many:
        html = staff_client.get("/admin/events/event/").content.decode()
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert 'aria-label="1250 queued, 1250 processing, 1250 done, 1250 failed"' in html


def test_the_photo_list_shows_thumbnails_and_names_with_a_constant_query_count(staff_client, event):
    many_photos(event, 20)
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get("/admin/photos/photo/").status_code == 200
    many_photos(Event.objects.create(name="Race", slug="race"), 5000)
    with CaptureQueriesContext(connection) as many:
        html = staff_client.get("/admin/photos/photo/").content.decode()
    assert len(many) == len(few)
    done = Photo.objects.filter(status="done").order_by("-pk").first()
    assert f'src="/api/photos/{done.pk}/thumb/"' in html
    assert "IMG_" in html


def test_search_finds_a_photo_by_hash_prefix_or_file_name(staff_client, event):
    many_photos(event, 30)
    target = Photo.objects.get(original_name="IMG_0007.jpg")
    by_hash = staff_client.get("/admin/photos/photo/", {"q": target.sha256[:8]}).content.decode()
    assert "IMG_0007.jpg" in by_hash and "IMG_0008.jpg" not in by_hash
    by_name = staff_client.get("/admin/photos/photo/", {"q": "img_0007"}).content.decode()
    assert "IMG_0007.jpg" in by_name and "IMG_0008.jpg" not in by_name


def test_a_photo_page_frames_its_faces_and_names_their_matches(staff_client, event, attendee):
    photo = photo_make(event)  # 1200 x 800
    first = face_make(photo, 0, left=0.25, top=0.5, width=0.1, height=0.2)
    face_make(photo, 1)
    Match.objects.create(photo=photo, event=event, user=attendee, face=first, distance=0.4321)
    html = staff_client.get(f"/admin/photos/photo/{photo.pk}/change/").content.decode()
    assert f'href="/api/photos/{photo.pk}/preview/"' in html
    assert '<rect x="300.0" y="400.0" width="120.0" height="160.0"></rect>' in html
    assert "ann (0.432)" in html
    assert "<td>2</td><td>nobody</td>" in html


def test_the_reprocess_failed_action_queues_only_failed_photos(staff_client, event):
    failed = photo_make(event, status="failed")
    done = photo_make(event)
    answer = staff_client.post(
        "/admin/events/event/",
        {"action": "reprocess_failed", "_selected_action": [event.pk]},
        follow=True,
    )
    assert "1 failed photos queued again." in answer.content.decode()
    assert Photo.objects.get(pk=failed.pk).status == "queued"
    assert Photo.objects.get(pk=done.pk).status == "done"


def test_the_event_page_offers_the_upload(staff_client, event):
    html = staff_client.get(f"/admin/events/event/{event.pk}/change/").content.decode()
    assert 'id="findme-upload"' in html
    assert f'data-upload-url="/api/events/{event.slug}/photos/"' in html
    assert "admin-findme/upload.js" in html
    assert 'href="/admin/authtoken/tokenproxy/add/"' in html  # an upload token for the watcher


def test_the_event_page_lists_upload_tokens_with_expiry_and_use(
    staff_client, event, django_user_model, settings
):
    settings.TOKEN_TTL_DAYS = 30
    ana = django_user_model.objects.create_user(username="ana", password="x", is_staff=True)
    ben = django_user_model.objects.create_user(username="ben", password="x", is_staff=True)
    gone = django_user_model.objects.create_user(
        username="gone", password="x", is_staff=True, is_active=False
    )
    guest = django_user_model.objects.create_user(username="guest", password="x")
    keys = {user: Token.objects.create(user=user).key for user in (ana, ben, gone, guest)}
    Token.objects.filter(user=ben).update(created=timezone.now() - timedelta(days=31))
    other = Event.objects.create(name="Other", slug="other", join_code="OTHER1")
    for _ in range(3):
        Photo.objects.filter(pk=photo_make(event).pk).update(uploaded_by=ana)
    Photo.objects.filter(pk=photo_make(other).pk).update(uploaded_by=ben)

    html = staff_client.get(f"/admin/events/event/{event.pk}/change/").content.decode()

    rows = re.findall(
        r"<tr><td>(\w+)</td><td><code>(\w+)…</code></td><td>[^<]+</td>"
        r"<td>([^<]+)</td><td>(\d+)</td>",
        html,
    )
    assert [(name, start, photos) for name, start, _, photos in rows] == [
        ("ana", keys[ana][:6], "3"),
        ("ben", keys[ben][:6], "0"),  # the other event's photo is not counted here
    ]
    assert rows[1][2].startswith("expired")
    assert not rows[0][2].startswith("expired")
    assert all(key not in html for key in keys.values())  # never the whole key
    assert f'href="/admin/authtoken/tokenproxy/{ana.pk}/delete/"' in html


def test_admin_pages_are_refused_to_attendees(client, attendee, event):
    client.force_login(attendee)
    for path in ["/admin/events/event/", "/admin/photos/photo/", "/admin/queue/"]:
        answer = client.get(path)
        assert answer.status_code == 302 and "/admin/login/" in answer["Location"], path
