"""Proof that the member lock and the engine cap hold across real worker processes.

Two real django-q2 clusters (3 and 2 workers, as two worker machines) on one PostgreSQL and one
broker take 30 photos and 5 pending members, each member's indexing task enqueued three times so that several workers reach for the
same selfie at once. The engine's heavy calls hold a slot of the shared semaphore
(FACE_LOCAL_CONCURRENT=2); each holder appends an enter line once it has its slot and an exit
line before it lets go (FINDME_SEMAPHORE_TRACE), so replaying the file gives a lower bound of
the true number of calls in flight at every moment.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django_q.tasks import async_task
from PIL import Image

from accounts.models import Selfie
from accounts.services import selfie_store
from events.models import Event, Membership
from faces.models import EngineCall
from photos.models import Photo
from photos.services import photo_ingest
from tests.cluster import running_cluster, wait_until
from tests.conftest import uploaded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.cluster,
    pytest.mark.faces,
    pytest.mark.postgres,
]

CAP = 2
WORKERS = 3
PHOTOS = 30


def variant(path: Path, n: int) -> bytes:
    """The photo at a size dlib handles quickly, with one pixel changed: distinct bytes."""
    image = Image.open(path).convert("RGB")
    image.thumbnail((640, 640))
    image.putpixel((0, 0), (n % 256, 7, 7))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def engine_calls(operation: str) -> int:
    row = EngineCall.objects.filter(engine="local", operation=operation).first()
    return row.count if row else 0


def trace_peak(trace: Path) -> tuple[int, int, set[str]]:
    holders = highest = enters = 0
    pids: set[str] = set()
    for line in trace.read_text().splitlines():
        _, event, _name, pid, _thread = line.split()
        if event == "enter":
            holders += 1
            enters += 1
            highest = max(highest, holders)
            pids.add(pid)
        else:
            holders -= 1
    return highest, enters, pids


def test_two_clusters_index_each_member_once_and_never_exceed_the_engine_cap(
    faces_dir, django_user_model, tmp_path
):
    if connection.vendor != "postgresql":
        pytest.skip("the proof runs on PostgreSQL: set DATABASE_URL=postgres://...")
    event = Event.objects.create(name="Proof", slug="proof")
    people = sorted(p for p in (faces_dir / "people").iterdir() if p.is_dir())[:5]
    assert len(people) == 5
    members = []
    for folder in people:
        user = django_user_model.objects.create_user(username=folder.name, password="x-long-pass")
        Membership.objects.create(user=user, event=event)
        selfie = sorted(folder.glob("*.jpg"))[0]
        selfie_store(  # enqueues member_index once, on commit
            user=user,
            upload=SimpleUploadedFile("selfie.jpg", selfie.read_bytes(), "image/jpeg"),
        )
        members.append(user)
    for user in members:  # and twice more: three tasks race for each selfie
        async_task("faces.tasks.member_index", user.pk)
        async_task("faces.tasks.member_index", user.pk)

    sources = [p for p in sorted(faces_dir.rglob("*.jpg")) if p.name != "bald_guys.jpg"]
    photo_ids = [
        photo_ingest(
            event=event,
            upload=uploaded(f"p{n}.jpg", variant(sources[n % len(sources)], n), "image/jpeg"),
            uploaded_by=None,
        ).photo.pk
        for n in range(PHOTOS)
    ]
    assert len(set(photo_ids)) == PHOTOS

    trace = tmp_path / "engine-calls.log"
    # Two clusters, as two worker machines would run them, on one database and one broker.
    machine = {"FACE_LOCAL_CONCURRENT": str(CAP), "FINDME_SEMAPHORE_TRACE": str(trace)}
    with (
        running_cluster(workers=WORKERS, **machine) as first,
        running_cluster(workers=WORKERS - 1, **machine) as second,
    ):
        for cluster in (first, second):
            wait_until(
                lambda: (
                    Photo.objects.filter(pk__in=photo_ids, status=Photo.Status.DONE).count()
                    == PHOTOS
                    and Selfie.objects.filter(status=Selfie.Status.INDEXED).count() == len(members)
                ),
                timeout=240,
                proc=cluster,
                what="30 photos done and 5 selfies indexed",
            )
        # Which cluster each worker belongs to, read while they are alive.
        trees = {cluster.pid: _descendants(cluster.pid) for cluster in (first, second)}

    # Each member indexed exactly once, counted at the engine, whatever the number of tasks.
    assert engine_calls("member_enroll") == len(members)
    assert set(Selfie.objects.values_list("attempts", flat=True)) == {1}
    # Every photo done, by exactly one run.
    photos = Photo.objects.filter(pk__in=photo_ids)
    assert set(photos.values_list("status", flat=True)) == {Photo.Status.DONE}
    assert set(photos.values_list("attempts", flat=True)) == {1}
    assert engine_calls("photo_index") == PHOTOS
    # The cap held across the worker processes, and was reached.
    highest, enters, pids = trace_peak(trace)
    assert enters == PHOTOS + len(members)
    assert len(pids) >= 2, "the engine calls ran in several worker processes"
    assert highest == CAP
    # Both machines took work: the claims name workers of each cluster.
    workers = {
        int(claim.rsplit(":", 1)[1]) for claim in photos.values_list("claimed_by", flat=True)
    }
    assert all(workers & tree for tree in trees.values()), (workers, trees)


def _descendants(pid: int) -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process(pid).children(recursive=True)}
