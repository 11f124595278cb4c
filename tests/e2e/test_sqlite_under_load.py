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

from photos.models import Photo
from tests.cluster import cluster_log, running_cluster, wait_until

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
