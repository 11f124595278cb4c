"""Structured logs (issue 15): one line per event, carrying the ids of what it is about."""

from __future__ import annotations

import json
import logging

import pytest

from core.logging import ContextFilter, JsonFormatter, PlainFormatter, log_context
from photos.models import Photo
from photos.services import photo_ingest
from tests.cluster import cluster_log, running_cluster, wait_until
from tests.conftest import jpeg_bytes, uploaded


def record(message: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    made = logging.getLogger("findme.test").makeRecord(
        "findme.test", logging.INFO, __file__, 1, message, args, exc_info, extra=extra or None
    )
    ContextFilter().filter(made)
    return made


def test_bound_fields_are_on_every_line_made_inside_the_block_and_gone_after():
    with log_context(photo_id=7, attempt=2):
        with log_context(user_id=3):
            inner = json.loads(JsonFormatter().format(record("photo %s: %s", 7, "done")))
        middle = json.loads(JsonFormatter().format(record("again")))
    outside = json.loads(JsonFormatter().format(record("later")))
    assert inner["message"] == "photo 7: done"
    assert inner["photo_id"] == 7 and inner["attempt"] == 2 and inner["user_id"] == 3
    assert inner["level"] == "INFO" and inner["logger"] == "findme.test" and inner["ts"]
    assert middle["photo_id"] == 7 and "user_id" not in middle
    assert "photo_id" not in outside


def test_extra_fields_and_tracebacks_stay_on_the_line():
    try:
        raise ValueError("broken bytes")
    except ValueError:
        import sys

        line = json.loads(
            JsonFormatter().format(record("failed", exc_info=sys.exc_info(), status="failed"))
        )
    assert line["status"] == "failed"
    assert "ValueError: broken bytes" in line["exc"]


def test_the_plain_format_puts_the_fields_after_the_message():
    with log_context(photo_id=9):
        text = PlainFormatter().format(record("photo %s: %s", 9, "done"))
    assert text.endswith("findme.test: photo 9: done [photo_id=9]")


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_a_worker_s_line_for_a_photo_carries_the_photo_and_the_task(event):
    photo = photo_ingest(
        event=event, upload=uploaded("a.jpg", jpeg_bytes()), uploaded_by=None
    ).photo
    with running_cluster(workers=1, LOG_FORMAT="json") as cluster:
        wait_until(
            lambda: Photo.objects.get(pk=photo.pk).status == Photo.Status.DONE,
            timeout=90,
            proc=cluster,
            what="the photo to be processed",
        )
        wait_until(
            lambda: f'"message": "photo {photo.pk}: done"' in cluster_log(cluster, whole=True),
            timeout=10,
            proc=cluster,
            what="the worker's line for the photo",
        )
        lines = [
            json.loads(text)
            for text in cluster_log(cluster, whole=True).splitlines()
            if text.startswith("{")
        ]
    done = next(line for line in lines if line["message"] == f"photo {photo.pk}: done")
    assert done["photo_id"] == photo.pk and done["status"] == "done" and done["attempt"] == 1
    assert done["task"] == "photos.tasks.photo_process"
    assert done["task_id"] and len(done["task_id"]) >= 16
