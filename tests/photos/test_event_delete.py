"""Deleting an event, in the admin or anywhere else: its members' galleries empty at once, its
photo files are deleted in the background, and nothing of another event is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from core import jobs
from core.generations import user_generation
from events.models import Event
from faces.models import Match
from photos import services as photos_services
from photos import tasks as photos_tasks
from photos.models import Photo
from photos.services import photo_ingest
from tests.conftest import jpeg_bytes, uploaded

pytestmark = pytest.mark.django_db


def photo_in(event: Event, n: int) -> Photo:
    upload = uploaded(f"p{n}.jpg", jpeg_bytes(colour=(60 * n, 90, 160)), "image/jpeg")
    photo = photo_ingest(event=event, upload=upload, uploaded_by=None).photo
    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.DONE)
    return photo


@pytest.fixture
def queued(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(jobs, "enqueue", lambda *args: calls.append(args) or True)
    return calls


def test_deleting_an_event_in_the_admin_deletes_its_files_and_empties_galleries(
    client, staff_user, event, attendee, queued, django_capture_on_commit_callbacks
):
    other = Event.objects.create(name="Race", slug="race", created_by=staff_user)
    kept = photo_in(other, 1)
    photos = [photo_in(event, n) for n in (2, 3)]
    assert photos[0].pk != photos[1].pk
    Match.objects.create(photo=photos[0], event=event, user=attendee, distance=0.3)
    paths = [Path(p.original.path) for p in photos]
    assert all(path.is_file() for path in paths)
    generation = user_generation(attendee.pk)
    event_id = event.pk

    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(f"/admin/events/event/{event_id}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    assert not Event.objects.filter(pk=event_id).exists()
    assert not Photo.objects.filter(event_id=event_id).exists()
    assert user_generation(attendee.pk) != generation  # the gallery is stale at once
    assert ("photos.tasks.event_files_delete", event_id) in queued
    assert ("faces.tasks.event_forget", event_id) in queued

    assert photos_tasks.event_files_delete(event_id) == 2
    assert not any(path.exists() for path in paths)
    assert not (Path(settings.MEDIA_ROOT) / "photos" / str(event_id)).exists()
    assert Path(kept.original.path).is_file()
    # Run twice (a retried task): nothing left, nothing else touched.
    assert photos_tasks.event_files_delete(event_id) == 0
    assert Path(kept.original.path).is_file()


def test_a_delete_behind_the_services_back_is_covered_by_the_sweep(
    event, queued, django_capture_on_commit_callbacks
):
    photo = photo_in(event, 1)
    with django_capture_on_commit_callbacks(execute=True):
        Event.objects.filter(pk=event.pk).delete()  # a shell: no service, no task
    assert queued == []
    assert photos_tasks.event_files_sweep() == 1
    assert not Path(photo.original.path).exists()


def test_the_files_task_refuses_while_the_event_exists(event):
    photo = photo_in(event, 1)
    assert photos_tasks.event_files_delete(event.pk) == 0
    assert Path(photo.original.path).is_file()


def test_files_of_an_event_deleted_while_the_broker_was_down_are_swept(
    staff_user, event, monkeypatch, django_capture_on_commit_callbacks
):
    other = Event.objects.create(name="Race", slug="race", created_by=staff_user)
    kept = photo_in(other, 1)
    doomed = [photo_in(event, n) for n in (2, 3)]
    monkeypatch.setattr(jobs, "enqueue", lambda *args: False)  # the broker is down
    with django_capture_on_commit_callbacks(execute=True):
        assert photos_services.events_delete(event_ids=[event.pk]) == 1
    assert all(Path(p.original.path).is_file() for p in doomed)  # the task was never queued
    assert photos_tasks.event_files_sweep() == 2
    assert not any(Path(p.original.path).exists() for p in doomed)
    assert Path(kept.original.path).is_file()  # a live event's files stay
    assert photos_tasks.event_files_sweep() == 0
