"""photo_process: claimed once, idempotent on rerun, retried, then failed with a readable error."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_q.models import OrmQ
from PIL import Image

from accounts.services import selfie_store
from events.models import Membership
from faces.models import Face, Match
from faces.services import match_reject, member_index
from photos import tasks
from photos.models import Photo
from photos.services import (
    PHOTO_JOB,
    jobs_sweep,
    photo_ingest,
    photo_process,
    photo_reprocess,
)
from tests.conftest import jpeg_bytes, uploaded

pytestmark = pytest.mark.django_db


def ingest_bytes(event, user, data: bytes, name: str = "p.jpg") -> Photo:
    upload = uploaded(name, data, content_type="image/jpeg")
    return photo_ingest(event=event, upload=upload, uploaded_by=user).photo


def gps_jpeg() -> bytes:
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    exif[0x0112] = 1
    buffer = io.BytesIO()
    Image.effect_noise((2400, 1800), 40).convert("RGB").save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_processing_writes_thumb_and_preview_without_metadata(event, staff_user):
    data = gps_jpeg()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # the source does carry GPS
    photo = ingest_bytes(event, staff_user, data)
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    photo.refresh_from_db()
    assert photo.status == Photo.Status.DONE and photo.attempts == 1 and photo.face_count == 0
    thumb = Image.open(io.BytesIO(bytes(photo.rendition.thumb)))
    preview = Image.open(io.BytesIO(bytes(photo.rendition.preview)))
    assert thumb.format == "WEBP" and max(thumb.size) == 400
    assert preview.format == "JPEG" and max(preview.size) == 1600
    assert (photo.thumb_width, photo.thumb_height) == thumb.size
    for image in (thumb, preview):
        assert not image.getexif().get_ifd(0x8825)
        assert "exif" not in image.info
    assert photo.placeholder.startswith("#") and len(photo.placeholder) == 7


def test_a_second_run_of_a_finished_photo_changes_nothing(event, staff_user):
    photo = ingest_bytes(event, staff_user, jpeg_bytes((800, 600)))
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    before = Photo.objects.filter(pk=photo.pk).values("updated_at", "attempts").get()
    assert photo_process(photo_id=photo.pk) == "skipped"  # another worker got there first
    assert Photo.objects.filter(pk=photo.pk).values("updated_at", "attempts").get() == before


def _backoff_passes(photo: Photo) -> None:
    """Time passes: the retry's back-off is over."""
    Photo.objects.filter(pk=photo.pk).update(not_before=timezone.now() - timedelta(seconds=1))


def test_a_photo_fails_after_the_last_retry_with_a_readable_error(event, staff_user, settings):
    settings.TASK_MAX_ATTEMPTS = 3
    settings.TASK_RETRY_BASE_S = 10
    photo = ingest_bytes(event, staff_user, jpeg_bytes())
    Path(photo.original.path).unlink()  # the storage lost the file
    waits = []
    for _ in range(2):
        started = timezone.now()
        assert photo_process(photo_id=photo.pk) == Photo.Status.QUEUED
        photo.refresh_from_db()
        waits.append((photo.not_before - started).total_seconds())
        assert photo.dispatched_at is None  # handed over again only when the back-off is over
        assert photo_process(photo_id=photo.pk) == "skipped"  # not before its back-off
        _backoff_passes(photo)
    # Exponential back-off with jitter: 10 s then 20 s, each scaled by 0.5-1.0.
    assert 5 <= waits[0] <= 10.5 and 10 <= waits[1] <= 20.5
    assert photo_process(photo_id=photo.pk) == Photo.Status.FAILED
    photo.refresh_from_db()
    assert photo.status == Photo.Status.FAILED
    assert photo.attempts == 3
    assert "FileNotFoundError" in photo.error
    assert photo_process(photo_id=photo.pk) == "skipped"


def test_one_bad_photo_does_not_stop_the_others(event, staff_user):
    bad = ingest_bytes(event, staff_user, jpeg_bytes(colour=(1, 1, 1)))
    good = ingest_bytes(event, staff_user, jpeg_bytes(colour=(200, 200, 200)))
    Path(bad.original.path).write_bytes(b"not an image at all, whatever its name says")
    # The task returns normally: the queue moves on to the next photo. Bytes that are no image
    # fail at once: no retry could read them.
    assert tasks.photo_process(bad.pk) == Photo.Status.FAILED
    assert "UnidentifiedImageError" in Photo.objects.get(pk=bad.pk).error
    assert tasks.photo_process(good.pk) == Photo.Status.DONE


@pytest.mark.django_db(transaction=True)
def test_a_retry_is_handed_to_the_broker_by_the_sweep_once_due(event, staff_user):
    photo = ingest_bytes(event, staff_user, jpeg_bytes())
    Path(photo.original.path).unlink()
    photo_process(photo_id=photo.pk)
    before = _queued_tasks()
    assert jobs_sweep()[PHOTO_JOB.task].dispatched == 0  # the back-off is not over
    _backoff_passes(photo)
    assert jobs_sweep()[PHOTO_JOB.task].dispatched == 1
    assert _queued_tasks() == before + 1
    assert Photo.objects.get(pk=photo.pk).dispatched_at is not None


def _queued_tasks() -> int:
    from django.conf import settings

    if "redis" in settings.Q_CLUSTER:
        from django_q.brokers import get_broker

        return get_broker().queue_size()
    return OrmQ.objects.count()


def test_sweep_requeues_at_once_a_photo_whose_worker_stopped_beating(event, staff_user):
    stuck = ingest_bytes(event, staff_user, jpeg_bytes(colour=(5, 5, 5)))
    alive = ingest_bytes(event, staff_user, jpeg_bytes(colour=(9, 9, 9)))
    now = timezone.now()
    # Two workers claimed a photo each; one died 40 s ago, the other is still beating.
    Photo.objects.filter(pk=stuck.pk).update(
        status=Photo.Status.PROCESSING, attempts=1, lease_expires_at=now - timedelta(seconds=1)
    )
    Photo.objects.filter(pk=alive.pk).update(
        status=Photo.Status.PROCESSING, attempts=1, lease_expires_at=now + timedelta(seconds=20)
    )
    result = jobs_sweep()[PHOTO_JOB.task]
    assert (result.expired, result.dispatched) == (1, 1)
    stuck.refresh_from_db()
    assert stuck.status == Photo.Status.QUEUED and stuck.dispatched_at is not None
    assert Photo.objects.get(pk=alive.pk).status == Photo.Status.PROCESSING
    assert photo_process(photo_id=stuck.pk) == Photo.Status.DONE
    assert Photo.objects.get(pk=stuck.pk).attempts == 2
    assert jobs_sweep()[PHOTO_JOB.task].expired == 0


def test_sweep_fails_a_photo_that_killed_its_worker_on_every_attempt(event, staff_user, settings):
    settings.TASK_MAX_ATTEMPTS = 3
    photo = ingest_bytes(event, staff_user, jpeg_bytes())
    Photo.objects.filter(pk=photo.pk).update(
        status=Photo.Status.PROCESSING,
        attempts=3,
        lease_expires_at=timezone.now() - timedelta(seconds=5),
    )
    assert jobs_sweep()[PHOTO_JOB.task].failed == 1
    photo.refresh_from_db()
    assert photo.status == Photo.Status.FAILED
    assert "stopped" in photo.error


@pytest.mark.faces
def test_reprocessing_replaces_faces_and_matches_and_keeps_not_me(
    faces_dir, event, staff_user, django_user_model
):
    users = {}
    for name, selfie in [("obama", "obama/obama_1.jpg"), ("biden", "biden/biden_1.jpg")]:
        users[name] = django_user_model.objects.create_user(username=name, password="x")
        Membership.objects.create(user=users[name], event=event)
        selfie_store(
            user=users[name],
            upload=SimpleUploadedFile("s.jpg", (faces_dir / "people" / selfie).read_bytes()),
        )
        assert member_index(user_id=users[name].pk)
    photo = ingest_bytes(event, staff_user, (faces_dir / "groups" / "two_people.jpg").read_bytes())

    def snapshot():
        faces = sorted(
            Face.objects.filter(photo=photo).values_list("index", "left", "top", "width", "height")
        )
        matches = sorted(
            Match.objects.filter(photo=photo).values_list("user__username", "rejected")
        )
        return faces, matches

    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    first = snapshot()
    assert len(first[0]) == 2
    assert first[1] == [("biden", False), ("obama", False)]

    assert photo_reprocess(photo_id=photo.pk)
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    assert snapshot() == first  # a rerun replaces, never duplicates

    assert match_reject(user_id=users["biden"].pk, photo_id=photo.pk)
    photo_reprocess(photo_id=photo.pk)
    photo_process(photo_id=photo.pk)
    faces, matches = snapshot()
    assert len(faces) == 2
    assert matches == [("biden", True), ("obama", False)]  # "not me" stays not me


def test_the_job_sweep_runs_twice_a_minute():
    """django-q2 runs a schedule at most once a minute: two, half a minute apart."""
    from django_q.models import Schedule

    sweeps = Schedule.objects.filter(func="photos.tasks.jobs_sweep").order_by("next_run")
    assert [(s.schedule_type, s.minutes, s.repeats) for s in sweeps] == [("I", 1, -1)] * 2
    gap = (sweeps[1].next_run - sweeps[0].next_run).total_seconds() % 60
    assert 25 <= gap <= 35
