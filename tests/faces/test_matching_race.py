"""A photo stored while a member is being indexed is matched by one side or the other, never
by neither, on PostgreSQL where the two run at once (SQLite serialises every writer).

The photo's transaction has stored its faces and read the event's members (the member is not
indexed yet) but has not committed; the member becomes indexed and its back-match starts. The
back-match must wait for that photo, or it would read the event's faces without it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from accounts.models import Selfie
from events.models import Membership
from faces.engines.base import DetectedFace
from faces.models import Match
from faces.services import faces_store, member_match_event
from photos.models import Photo

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

VECTOR = np.full(128, 0.5 / np.sqrt(128), dtype=np.float32).tobytes()


def in_thread(target, *args) -> threading.Thread:
    def run() -> None:
        try:
            target(*args)
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_member_indexed_while_a_photo_is_stored_is_matched_to_it(event, attendee, settings):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: the two cannot overlap there")
    settings.FACE_ENGINE = "local"
    Membership.objects.create(user=attendee, event=event)
    selfie = Selfie.objects.create(
        user=attendee,
        image="selfies/x.jpg",
        status=Selfie.Status.INDEXING,
        descriptor=VECTOR,
        engine="local",
        consent_at=timezone.now(),
    )
    photo = Photo.objects.create(
        event=event, sha256="d" * 64, original="photos/d.jpg", content_type="image/jpeg", size=1
    )
    stored, release = threading.Event(), threading.Event()

    def photo_task() -> None:
        with transaction.atomic():
            face = DetectedFace(0.1, 0.1, 0.2, 0.2, descriptor=VECTOR)
            assert faces_store(event_id=event.pk, photo_id=photo.pk, detected=[face]) == 0
            stored.set()  # faces written, members read (none indexed), not committed
            assert release.wait(30)

    photo_thread = in_thread(photo_task)
    assert stored.wait(30)
    Selfie.objects.filter(pk=selfie.pk).update(
        status=Selfie.Status.INDEXED, indexed_at=timezone.now()
    )
    results: list[int] = []
    member_thread = in_thread(
        lambda: results.append(member_match_event(user_id=attendee.pk, event_id=event.pk))
    )
    member_thread.join(1.0)
    assert member_thread.is_alive(), "the back-match did not wait for the photo being stored"
    release.set()
    photo_thread.join(30)
    member_thread.join(30)
    assert results == [1]
    assert Match.objects.filter(photo=photo, user=attendee, rejected=False).exists()
