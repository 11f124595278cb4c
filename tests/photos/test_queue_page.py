"""The queue statistics (issue 15): one source, shown by the API and by the admin page that
refreshes itself; exact against a known state; workers_active against a real cluster."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from faces.models import EngineCall
from photos.models import Photo
from photos.monitoring import queue_stats, throughput
from photos.templatetags.findme_admin import duration, percent, usd
from tests.cluster import running_cluster, wait_until
from tests.pages.conftest import photo_make


@pytest.fixture
def staff_client(client, django_user_model):
    root = django_user_model.objects.create_superuser(username="root", password="root-pass-123")
    client.force_login(root)
    return client


def finished(event, status: str, minutes_ago: float) -> Photo:
    photo = photo_make(event, status=status)
    when = timezone.now() - timedelta(minutes=minutes_ago)
    Photo.objects.filter(pk=photo.pk).update(
        processed_at=when if status == "done" else None, updated_at=when
    )
    return photo


@pytest.mark.django_db
def test_the_figures_are_exact_for_a_known_state(event, staff_client):
    for minutes in (1, 2, 7, 59):
        finished(event, "done", minutes)
    finished(event, "failed", 3)
    finished(event, "done", 90)  # over an hour ago: in no figure of the hour
    queued = photo_make(event, status="queued")
    Photo.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(seconds=125))
    EngineCall.objects.create(engine="local", operation="detect", count=7)

    stats = queue_stats()
    assert stats["queue"]["processed_last_hour"] == 4
    assert stats["queue"]["failed_last_hour"] == 1
    assert stats["queue"]["current_queue_size"] == 1
    assert 124 <= stats["queue"]["oldest_queued_age_s"] <= 130
    series = stats["queue"]["throughput"]
    assert series["done"] == [1] + [0] * 9 + [1, 2]
    assert series["failed"] == [0] * 11 + [1]
    assert stats["engine"]["calls_by_operation"] == {"detect": 7}

    html = staff_client.get("/admin/queue/?part=live").content.decode()
    assert 'data-stat="processed_last_hour">4<' in html
    assert "waiting 2 min 5 s" in html or "waiting 2 min 6 s" in html
    assert '<th scope="row">detect</th><td>7 calls</td>' in html
    assert 'aria-label="Photos finished per 5 minutes over the last hour' in html
    assert "No worker cluster is running" in html
    page = staff_client.get("/admin/queue/").content.decode()
    assert 'data-refresh-url="/admin/queue/?part=live"' in page


@pytest.mark.django_db
def test_the_live_part_is_for_staff_only(client, attendee):
    client.force_login(attendee)
    answer = client.get("/admin/queue/?part=live")
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]


def test_figures_are_written_for_people():
    assert duration(42) == "42 s"
    assert duration(125) == "2 min 5 s"
    assert duration(7800) == "2 h 10 min"
    assert duration(3 * 86400 + 4 * 3600) == "3 d 4 h"
    assert duration(None) == "—"
    assert percent(0.8333) == "83.3 %"
    assert percent(0) == "0.0 %"
    assert usd(0.096) == "$0.10"
    assert usd(0.0012) == "$0.0012"
    assert usd(0) == "$0.00"


@pytest.mark.django_db
def test_an_empty_hour_has_twelve_empty_slices():
    series = throughput()
    assert series["done"] == [0] * 12 and series["failed"] == [0] * 12


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_workers_active_is_what_a_running_cluster_has():
    assert queue_stats()["queue"]["workers_active"] == 0
    with running_cluster(workers=2) as cluster:
        wait_until(
            lambda: queue_stats()["queue"]["workers_active"] == 2,
            timeout=60,
            proc=cluster,
            what="the cluster to report its 2 workers",
        )
        clusters = queue_stats()["queue"]["clusters"]
        assert len(clusters) == 1
        assert clusters[0]["host"] == socket.gethostname()
        assert clusters[0]["workers"] == 2
        assert clusters[0]["uptime_s"] >= 0
    wait_until(
        lambda: queue_stats()["queue"]["workers_active"] == 0,
        timeout=30,
        what="the stopped cluster's report to expire",
    )
