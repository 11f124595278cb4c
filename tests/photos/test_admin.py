"""The staff side in the Django admin: every list opens, the queue page shows live numbers."""

from __future__ import annotations

import pytest

from photos.models import Photo
from photos.services import photo_ingest
from tests.conftest import jpeg_bytes, uploaded

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="root-pass-123")


def test_every_admin_list_opens(client, superuser, event):
    photo_ingest(event=event, upload=uploaded("a.jpg", jpeg_bytes()), uploaded_by=superuser)
    client.force_login(superuser)
    for path in [
        "/admin/",
        "/admin/events/event/",
        "/admin/photos/photo/",
        "/admin/photos/photo/?status__exact=failed",
        "/admin/events/membership/",
        "/admin/faces/face/",
        "/admin/faces/match/",
        "/admin/faces/enginecall/",
        "/admin/accounts/selfie/",
        "/admin/accounts/user/",
        "/admin/django_q/failure/",
        "/admin/django_q/schedule/",
    ]:
        assert client.get(path).status_code == 200, path
    assert client.get(f"/admin/photos/photo/{Photo.objects.get().pk}/change/").status_code == 200


def test_queue_page_shows_the_numbers_and_failures(client, superuser, event):
    photo = photo_ingest(
        event=event, upload=uploaded("a.jpg", jpeg_bytes()), uploaded_by=superuser
    ).photo
    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.FAILED, error="ValueError: broken")
    photo_ingest(
        event=event,
        upload=uploaded("b.jpg", jpeg_bytes(colour=(0, 0, 9))),
        uploaded_by=superuser,
    )
    client.force_login(superuser)
    index = client.get("/admin/").content.decode()
    assert "/admin/queue/" in index
    page = client.get("/admin/queue/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-stat="current_queue_size">1<' in html
    assert "ValueError: broken" in html


def test_queue_page_is_for_staff_only(client, attendee):
    client.force_login(attendee)
    answer = client.get("/admin/queue/")
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]


def test_reprocess_action_queues_photos_again_and_refreshes_galleries(
    client, superuser, event, attendee, django_capture_on_commit_callbacks
):
    from core.generations import user_generation
    from faces.models import Match

    failed, done = (
        photo_ingest(
            event=event,
            upload=uploaded(f"{i}.jpg", jpeg_bytes(colour=(i, 0, 0))),
            uploaded_by=superuser,
        ).photo
        for i in (1, 2)
    )
    Photo.objects.filter(pk=failed.pk).update(status=Photo.Status.FAILED, attempts=3, error="x")
    Photo.objects.filter(pk=done.pk).update(status=Photo.Status.DONE, attempts=1)
    Match.objects.create(photo=done, event=event, user=attendee, distance=0.3)
    generation = user_generation(attendee.pk)
    client.force_login(superuser)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/admin/photos/photo/",
            {"action": "reprocess", "_selected_action": [failed.pk, done.pk]},
        )
    assert answer.status_code == 302
    for photo in (failed, done):
        photo.refresh_from_db()
        assert (photo.status, photo.attempts, photo.error) == (Photo.Status.QUEUED, 0, "")
    # The rescanned photo leaves the attendee's gallery now, not when the cache expires.
    assert user_generation(attendee.pk) != generation


def test_deleting_photos_in_the_admin_removes_files_and_refreshes_galleries(
    client, superuser, event, attendee, django_capture_on_commit_callbacks, monkeypatch
):
    from pathlib import Path

    from core.generations import user_generation
    from faces.models import Match

    photo = photo_ingest(
        event=event, upload=uploaded("a.jpg", jpeg_bytes()), uploaded_by=superuser
    ).photo
    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.DONE)
    Match.objects.create(photo=photo, event=event, user=attendee, distance=0.3)
    path = Path(photo.original.path)
    generation = user_generation(attendee.pk)
    client.force_login(superuser)
    from core import jobs

    queued = []
    monkeypatch.setattr(jobs, "enqueue", lambda *args: queued.append(args) or True)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/admin/photos/photo/",
            {"action": "delete_selected", "_selected_action": [photo.pk], "post": "yes"},
        )
    assert answer.status_code == 302
    assert not Photo.objects.exists() and not Match.objects.exists()
    assert not path.exists()
    assert user_generation(attendee.pk) != generation
    # The local engine keeps no vector outside the database: nothing to forget elsewhere.
    assert queued == []
