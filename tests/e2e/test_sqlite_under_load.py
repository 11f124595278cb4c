"""The laptop setup under load: SQLite shared by a threaded web server and a 3-worker cluster.

WAL, a busy timeout and IMMEDIATE transactions (config/settings.py) are what keep "database is
locked" away; this proves it with concurrent uploads while the workers write their results.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection
from PIL import Image
from rest_framework.authtoken.models import Token

from accounts.models import Selfie
from events.models import Membership
from faces.models import Match, MemberSearch
from photos.models import Photo
from tests.cluster import cluster_log, running_cluster, wait_until
from tests.conftest import face_photo_variants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


def small_photo(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((900, 600), 30 + i).convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def test_concurrent_uploads_while_three_workers_write(live_server, event, staff_user):
    if connection.vendor != "sqlite":
        pytest.skip("this proves the SQLite settings; PostgreSQL has row locks of its own")
    token = Token.objects.create(user=staff_user).key
    url = f"{live_server.url}/api/events/{event.slug}/photos/"
    photos = [small_photo(i) for i in range(40)]

    def send(data: bytes) -> int:
        answer = httpx.post(
            url,
            files={"file": ("p.jpg", data, "image/jpeg")},
            headers={"Authorization": f"Token {token}"},
            timeout=60,
        )
        return answer.status_code

    with running_cluster(workers=3) as cluster:
        with ThreadPoolExecutor(max_workers=6) as pool:
            statuses = list(pool.map(send, photos))
        assert statuses == [201] * 40
        wait_until(
            lambda: Photo.objects.filter(status=Photo.Status.DONE).count() == 40,
            timeout=240,
            proc=cluster,
            what="all 40 photos to be done",
        )
        log = cluster_log(cluster, whole=True)
    assert Photo.objects.filter(attempts=1).count() == 40  # no attempt was lost to a lock
    assert "database is locked" not in log


@pytest.mark.faces
def test_enrolments_and_uploads_while_the_cluster_back_matches_meet_no_lock(
    live_server, event, staff_user, django_user_model, faces_dir
):
    """The acceptance run that lost a late attendee's photos: 7 attendees enrol (selfie, then
    the cluster indexes and back-matches them) while photos are uploaded and processed, all on
    one SQLite file. No request and no task may fail with "database is locked"."""
    if connection.vendor != "sqlite":
        pytest.skip("this proves the SQLite settings; PostgreSQL has row locks of its own")
    staff_token = Token.objects.create(user=staff_user).key
    selfies = sorted((faces_dir / "people").glob("*/*_1.jpg")) + sorted(
        (faces_dir / "people").glob("*/*_2.jpg")
    )
    attendees = []
    for n, path in enumerate(selfies[:7]):
        user = django_user_model.objects.create_user(username=f"guest{n}", password="x")
        Membership.objects.create(user=user, event=event)
        attendees.append((Token.objects.create(user=user).key, path.read_bytes()))
    photos = face_photo_variants(faces_dir, 30)

    def send_photo(data: bytes) -> int:
        return httpx.post(
            f"{live_server.url}/api/events/{event.slug}/photos/",
            files={"file": ("p.jpg", data, "image/jpeg")},
            headers={"Authorization": f"Token {staff_token}"},
            timeout=60,
        ).status_code

    def enrol(attendee: tuple[str, bytes]) -> int:
        token, selfie = attendee
        return httpx.put(
            f"{live_server.url}/api/me/selfie/",
            files={"file": ("me.jpg", selfie, "image/jpeg")},
            data={"consent": "true"},
            headers={"Authorization": f"Token {token}"},
            timeout=60,
        ).status_code

    with running_cluster(workers=2) as cluster:
        with ThreadPoolExecutor(max_workers=6) as pool:
            first = list(pool.map(send_photo, photos[:15]))
            # Enrolments land while the first photos are processed and the rest arrive.
            enrolled = pool.map(enrol, attendees)
            rest = list(pool.map(send_photo, photos[15:]))
            enrolled = list(enrolled)
        assert first + rest == [201] * 30
        assert enrolled == [201] * 7
        wait_until(
            lambda: (
                Photo.objects.filter(status=Photo.Status.DONE).count() == 30
                and Selfie.objects.filter(status=Selfie.Status.INDEXED).count() == 7
                and MemberSearch.objects.filter(status=MemberSearch.Status.DONE).count() == 7
            ),
            timeout=300,
            proc=cluster,
            what="30 photos done, 7 selfies indexed and 7 back-matches done",
        )
        log = cluster_log(cluster, whole=True)
    assert "database is locked" not in log
    for model in (Photo, Selfie, MemberSearch):
        assert not model.objects.filter(error__icontains="locked").exists()
    assert Photo.objects.filter(attempts=1).count() == 30  # no attempt lost to a lock
    assert Match.objects.filter(rejected=False).exists()
