"""The row is the record: dispatch, leases, the retry policy and the sweep (core/jobs.py)."""

from __future__ import annotations

import errno
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError
from django.utils import timezone

from accounts.models import Selfie
from accounts.services import selfie_store
from core import jobs
from events.models import Membership
from faces import services as faces_services
from faces.models import Match, MemberSearch
from faces.services import matching
from photos import services as photos_services
from photos.models import Photo
from photos.services import PHOTO_JOB, event_join, jobs_sweep, photo_ingest, photo_process
from tests.conftest import jpeg_bytes, uploaded

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker(monkeypatch) -> dict:
    """The broker as the code sees it: what was enqueued, and whether it is up."""
    state: dict = {"up": True, "sent": [], "size": 5}

    def async_task(func, *args, **kwargs):
        if not state["up"]:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        state["sent"].append((func, *args))
        return "task-id"

    monkeypatch.setattr("django_q.tasks.async_task", async_task)
    monkeypatch.setattr(jobs, "broker_queue_size", lambda: state["size"])
    return state


def upload(client, event, data: bytes, name: str = "p.jpg"):
    return client.post(
        f"/api/events/{event.slug}/photos/",
        {"file": SimpleUploadedFile(name, data, content_type="image/jpeg")},
        format="multipart",
    )


def sent_photos(broker: dict) -> list[int]:
    return [args[0] for func, *args in broker["sent"] if func == PHOTO_JOB.task]


# --- the answer never depends on the broker ---------------------------------------------------
def test_upload_answers_201_while_the_broker_is_down_and_the_sweep_hands_it_over(
    staff_client, event, broker, django_capture_on_commit_callbacks
):
    broker["up"] = False
    with django_capture_on_commit_callbacks(execute=True):
        answer = upload(staff_client, event, jpeg_bytes())
    assert answer.status_code == 201
    photo = Photo.objects.get(pk=answer.json()["id"])
    assert photo.status == Photo.Status.QUEUED
    assert photo.dispatched_at is None  # the failed enqueue is on the record
    assert Path(photo.original.path).read_bytes() == jpeg_bytes()

    result = jobs_sweep()[PHOTO_JOB.task]  # broker still down: nothing sent, nothing lost
    assert result.dispatched == 0
    assert Photo.objects.get(pk=photo.pk).dispatched_at is None

    broker["up"] = True
    assert jobs_sweep()[PHOTO_JOB.task].dispatched == 1
    assert sent_photos(broker) == [photo.pk]
    assert Photo.objects.get(pk=photo.pk).dispatched_at is not None
    assert jobs_sweep()[PHOTO_JOB.task].dispatched == 0  # sent once, not on every sweep


def test_selfie_is_kept_while_the_broker_is_down_and_handed_over_later(
    attendee, broker, django_capture_on_commit_callbacks
):
    broker["up"] = False
    with django_capture_on_commit_callbacks(execute=True):
        selfie = selfie_store(user=attendee, upload=SimpleUploadedFile("s.jpg", jpeg_bytes()))
    selfie.refresh_from_db()
    assert selfie.status == Selfie.Status.QUEUED and selfie.dispatched_at is None
    assert Path(selfie.image.path).is_file()
    broker["up"] = True
    assert jobs_sweep()["faces.tasks.member_index"].dispatched == 1
    assert ("faces.tasks.member_index", attendee.pk) in broker["sent"]


def test_a_full_disk_answers_503_and_stores_nothing(staff_client, event, monkeypatch):
    def disk_full(self, name, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", disk_full)
    answer = upload(staff_client, event, jpeg_bytes())
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "unavailable"
    assert int(answer["Retry-After"]) > 0
    assert not Photo.objects.exists()
    assert not [p for p in Path(django_settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def test_a_row_that_fails_to_store_removes_its_file_but_never_another_rows(
    staff_user, event, monkeypatch
):
    # The same bytes arrive twice at once: the second insert loses to the unique constraint
    # after writing the (identical) file. The first row's file must stay.
    first = photo_ingest(
        event=event, upload=uploaded("a.jpg", jpeg_bytes()), uploaded_by=staff_user
    ).photo
    real_existing = photos_services._photo_existing
    looks = []

    def first_look_misses(event, sha):  # the other upload commits right after this look
        looks.append(sha)
        return None if len(looks) == 1 else real_existing(event, sha)

    monkeypatch.setattr(photos_services, "_photo_existing", first_look_misses)
    again = photo_ingest(
        event=event, upload=uploaded("b.jpg", jpeg_bytes()), uploaded_by=staff_user
    )
    assert again.created is False and again.photo.pk == first.pk
    assert Path(first.original.path).read_bytes() == jpeg_bytes()

    # A row that fails for any other reason takes its own file with it.
    def insert_fails(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(Photo, "save", insert_fails)
    other = jpeg_bytes(colour=(1, 2, 3))
    with pytest.raises(OperationalError):
        photo_ingest(event=event, upload=uploaded("c.jpg", other), uploaded_by=None)
    files = [p for p in Path(django_settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert files == [Path(first.original.path)]


# --- claims and leases --------------------------------------------------------------------------
def test_a_run_that_lost_its_lease_cannot_finish_over_the_next_run(staff_user, event, broker):
    photo = photo_ingest(
        event=event, upload=uploaded("p.jpg", jpeg_bytes()), uploaded_by=staff_user
    ).photo
    old_token = jobs.claim(PHOTO_JOB, photo.pk)
    assert old_token == 1
    assert jobs.claim(PHOTO_JOB, photo.pk) is None  # never run twice at once
    # Its worker froze past the lease; the sweep gave the photo to another worker.
    Photo.objects.filter(pk=photo.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert jobs_sweep()[PHOTO_JOB.task].expired == 1
    new_token = jobs.claim(PHOTO_JOB, photo.pk)
    assert new_token == 2
    assert photos_services._photo_work(photo.pk, old_token) == "skipped"
    photo.refresh_from_db()
    assert photo.status == Photo.Status.PROCESSING and photo.attempts == 2
    assert photos_services._photo_work(photo.pk, new_token) == Photo.Status.DONE
    assert Photo.objects.get(pk=photo.pk).claimed_by.endswith(f":{__import__('os').getpid()}")


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_keeps_a_working_rows_lease_alive(staff_user, event, settings):
    settings.TASK_LEASE_S = 5
    settings.TASK_HEARTBEAT_S = 1
    photo = photo_ingest(
        event=event, upload=uploaded("p.jpg", jpeg_bytes()), uploaded_by=staff_user
    ).photo
    token = jobs.claim(PHOTO_JOB, photo.pk)
    first = Photo.objects.get(pk=photo.pk).lease_expires_at
    with jobs.lease_kept(PHOTO_JOB, photo.pk, token):
        time.sleep(2.5)  # the work; the heartbeat beats twice meanwhile
        renewed = Photo.objects.get(pk=photo.pk).lease_expires_at
    assert renewed > first + timedelta(seconds=1)
    # A row that another claim took is not renewed by the old heartbeat.
    Photo.objects.filter(pk=photo.pk).update(attempts=token + 1)
    with jobs.lease_kept(PHOTO_JOB, photo.pk, token):
        time.sleep(1.5)
    assert Photo.objects.get(pk=photo.pk).lease_expires_at == renewed


# --- messages the broker lost -------------------------------------------------------------------
def _photo(event, n: int, *, status: str, dispatched_ago: float) -> Photo:
    photo = photo_ingest(
        event=event,
        upload=uploaded(f"{n}.jpg", jpeg_bytes(colour=(50 * n, 40, 40))),
        uploaded_by=None,
    ).photo
    Photo.objects.filter(pk=photo.pk).update(
        status=status,
        dispatched_at=timezone.now() - timedelta(seconds=dispatched_ago),
        attempts=0 if status == Photo.Status.QUEUED else 1,  # a claimed row was claimed once
    )
    return photo


def test_a_queued_row_overtaken_by_later_ones_is_sent_again(event, broker, settings):
    settings.TASK_REDISPATCH_AFTER_S = 60
    lost = _photo(event, 1, status=Photo.Status.QUEUED, dispatched_ago=300)
    _photo(event, 2, status=Photo.Status.DONE, dispatched_ago=120)  # sent later, already done
    waiting = _photo(event, 3, status=Photo.Status.QUEUED, dispatched_ago=100)  # behind it
    fresh = _photo(event, 4, status=Photo.Status.QUEUED, dispatched_ago=5)
    broker["size"] = 2  # the broker still holds messages: only the FIFO order tells
    result = jobs_sweep()[PHOTO_JOB.task]
    assert result.redispatched == 1
    assert sent_photos(broker) == [lost.pk]
    assert waiting.pk not in sent_photos(broker) and fresh.pk not in sent_photos(broker)
    assert jobs_sweep()[PHOTO_JOB.task].redispatched == 0  # now freshly sent


def test_an_empty_broker_means_old_messages_are_gone(event, broker, settings):
    settings.TASK_REDISPATCH_AFTER_S = 60
    old = _photo(event, 1, status=Photo.Status.QUEUED, dispatched_ago=90)
    fresh = _photo(event, 2, status=Photo.Status.QUEUED, dispatched_ago=10)
    broker["size"] = 0  # Redis restarted empty, for instance
    jobs_sweep()
    assert sent_photos(broker) == [old.pk]
    assert fresh.pk not in sent_photos(broker)


def test_retry_delays_grow_exponentially_with_jitter_and_a_cap(settings):
    settings.TASK_RETRY_BASE_S = 10
    settings.TASK_RETRY_MAX_S = 60
    for attempts, low, high in [(1, 5, 10), (2, 10, 20), (3, 20, 40), (4, 30, 60), (9, 30, 60)]:
        delays = [jobs.retry_delay(attempts) for _ in range(200)]
        assert low <= min(delays) and max(delays) <= high
        assert max(delays) - min(delays) > (high - low) / 4  # jittered, not one value


# --- back-matches: recorded per member and event, completed by the sweep ------------------------
def _member(django_user_model, event, faces_dir: Path, name: str, selfie: str):
    user = django_user_model.objects.create_user(username=name, password="x")
    Membership.objects.create(user=user, event=event)
    selfie_store(
        user=user, upload=SimpleUploadedFile("s.jpg", (faces_dir / "people" / selfie).read_bytes())
    )
    return user


@pytest.mark.faces
def test_a_back_match_that_failed_is_retried_and_completed(
    faces_dir, event, django_user_model, broker, monkeypatch, settings
):
    """The acceptance run's late attendee: indexed, then "database is locked" inside the
    back-match. Before, they got 0 of their photos for good."""
    photo = photo_ingest(
        event=event,
        upload=uploaded("g.jpg", (faces_dir / "groups" / "two_people.jpg").read_bytes()),
        uploaded_by=None,
    ).photo
    assert photo_process(photo_id=photo.pk) == Photo.Status.DONE
    user = _member(django_user_model, event, faces_dir, "obama", "obama/obama_1.jpg")

    def locked(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(faces_services.members, "member_merge", locked)
    assert faces_services.member_index(user_id=user.pk)
    assert Selfie.objects.get(user=user).status == Selfie.Status.INDEXED
    row = MemberSearch.objects.get(user=user, event=event)
    assert row.status == MemberSearch.Status.QUEUED and "database is locked" in row.error
    assert row.not_before > timezone.now()
    assert not Match.objects.filter(user=user).exists()

    monkeypatch.setattr(faces_services.members, "member_merge", matching.member_merge)
    MemberSearch.objects.filter(pk=row.pk).update(not_before=timezone.now())
    assert jobs_sweep()[faces_services.BACKMATCH_JOB.task].dispatched == 1
    assert ("faces.tasks.member_match_event", user.pk, event.pk) in broker["sent"]
    assert faces_services.member_match_event(user_id=user.pk, event_id=event.pk) == 1
    assert Match.objects.filter(user=user, photo=photo, rejected=False).count() == 1
    assert MemberSearch.objects.get(pk=row.pk).status == MemberSearch.Status.DONE


@pytest.mark.faces
def test_a_join_before_the_selfie_is_indexed_waits_for_it(
    faces_dir, event, django_user_model, broker, django_capture_on_commit_callbacks
):
    photo = photo_ingest(
        event=event,
        upload=uploaded("g.jpg", (faces_dir / "groups" / "two_people.jpg").read_bytes()),
        uploaded_by=None,
    ).photo
    photo_process(photo_id=photo.pk)
    user = django_user_model.objects.create_user(username="biden", password="x")
    selfie_store(
        user=user,
        upload=SimpleUploadedFile("s.jpg", (faces_dir / "people/biden/biden_1.jpg").read_bytes()),
    )
    with django_capture_on_commit_callbacks(execute=True):
        event_join(user=user, slug=event.slug, join_code=event.join_code)
    assert ("faces.tasks.member_match_event", user.pk, event.pk) in broker["sent"]
    # The message arrives before the selfie is indexed: the row waits, unsent.
    assert faces_services.member_match_event(user_id=user.pk, event_id=event.pk) == 0
    row = MemberSearch.objects.get(user=user, event=event)
    assert (row.status, row.attempts, row.dispatched_at) == (MemberSearch.Status.QUEUED, 0, None)
    broker["sent"].clear()
    assert jobs_sweep()[faces_services.BACKMATCH_JOB.task].dispatched == 0  # not ready
    assert faces_services.member_index(user_id=user.pk)
    assert Match.objects.filter(user=user, photo=photo, rejected=False).count() == 1
    assert MemberSearch.objects.get(pk=row.pk).status == MemberSearch.Status.DONE


def test_a_rescued_photo_goes_before_the_backlog_and_a_spare_message_takes_the_next(event):
    backlog = [_photo(event, n, status=Photo.Status.QUEUED, dispatched_ago=30) for n in (1, 2, 3)]
    rescued = _photo(event, 4, status=Photo.Status.QUEUED, dispatched_ago=1)
    Photo.objects.filter(pk=rescued.pk).update(attempts=1)  # its worker died once
    # The next message, whichever photo it names, starts the rescued one: its own new message
    # sits behind the whole backlog.
    assert jobs.claim_next(PHOTO_JOB, backlog[0].pk) == (rescued.pk, 2)
    assert jobs.claim_next(PHOTO_JOB, backlog[0].pk) == (backlog[0].pk, 1)
    # The rescued photo's own message arrives later: its photo is taken, so it starts the oldest
    # due photo instead. Messages and due rows stay balanced.
    assert jobs.claim_next(PHOTO_JOB, rescued.pk) == (backlog[1].pk, 1)
    assert jobs.claim_next(PHOTO_JOB, backlog[1].pk) == (backlog[2].pk, 1)
    assert jobs.claim_next(PHOTO_JOB, backlog[2].pk) is None  # nothing is due: a no-op


def test_rescued_rows_claimed_ahead_of_the_backlog_do_not_make_it_look_lost(event, broker):
    """A rescued photo is sent again late and claimed first: the backlog behind it, sent long
    before, still has its messages in the broker and must not be sent twice."""
    backlog = [_photo(event, n, status=Photo.Status.QUEUED, dispatched_ago=120) for n in (1, 2)]
    rescued = _photo(event, 3, status=Photo.Status.PROCESSING, dispatched_ago=1)
    Photo.objects.filter(pk=rescued.pk).update(attempts=2)
    broker["size"] = 2
    assert jobs_sweep()[PHOTO_JOB.task].redispatched == 0
    assert not [pk for pk in sent_photos(broker) if pk in {p.pk for p in backlog}]


def test_a_database_gone_right_after_the_commit_does_not_fail_the_upload(
    staff_client, event, broker, monkeypatch, django_capture_on_commit_callbacks
):
    """The hand-over runs after the commit: nothing it does may turn a stored photo into an
    error. (It used to read the row again there, unguarded.)"""
    from django.db.models import QuerySet

    real = QuerySet.values_list
    committed = []

    def reads_fail_after_commit(self, *fields, **kwargs):
        if committed:
            raise OperationalError("server closed the connection unexpectedly")
        return real(self, *fields, **kwargs)

    monkeypatch.setattr(QuerySet, "values_list", reads_fail_after_commit)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        answer = upload(staff_client, event, jpeg_bytes())
    assert answer.status_code == 201
    committed.append(True)
    for callback in callbacks:
        callback()  # the database is gone now
    monkeypatch.setattr(QuerySet, "values_list", real)
    assert sent_photos(broker) == [answer.json()["id"]]
