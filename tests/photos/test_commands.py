"""Staff's management commands: reprocess, purge_event, create_upload_token."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from events.models import Event, Membership
from faces.models import Match
from photos.models import Photo
from tests.pages.conftest import match_make, photo_make

pytestmark = pytest.mark.django_db


def run(*args: str, stdin: str | None = None, monkeypatch=None) -> str:
    out = StringIO()
    if stdin is not None:
        monkeypatch.setattr("builtins.input", lambda prompt="": stdin)
    call_command(*args, stdout=out)
    return out.getvalue()


def test_reprocess_queues_the_event_s_finished_photos_or_only_the_failed(event, staff_user):
    done = photo_make(event)
    failed = photo_make(event, status="failed")
    queued = photo_make(event, status="queued")
    other = photo_make(Event.objects.create(name="Other", slug="other"), status="failed")

    assert "1 photos of wedding queued again." in run(
        "reprocess", "--event", "wedding", "--status", "failed"
    )
    statuses = dict(Photo.objects.values_list("pk", "status"))
    assert statuses[failed.pk] == "queued" and statuses[done.pk] == "done"
    assert statuses[other.pk] == "failed" and statuses[queued.pk] == "queued"

    assert "1 photos of wedding queued again." in run("reprocess", "--event", "wedding")
    assert Photo.objects.get(pk=done.pk).status == "queued"
    # Run again: nothing is finished any more, nothing changes.
    assert "0 photos of wedding queued again." in run("reprocess", "--event", "wedding")


def test_reprocess_of_an_unknown_event_says_so():
    with pytest.raises(CommandError, match="No event has the slug 'nope'"):
        run("reprocess", "--event", "nope")


def test_purge_event_asks_first_and_deletes_only_when_the_slug_is_typed(
    event, attendee, monkeypatch, django_capture_on_commit_callbacks
):
    photo = photo_make(event)
    Membership.objects.create(user=attendee, event=event)
    match_make(photo, attendee)
    with pytest.raises(CommandError, match="Not deleted"):
        run("purge_event", "wedding", stdin="y", monkeypatch=monkeypatch)
    assert Event.objects.filter(slug="wedding").exists() and Photo.objects.exists()

    with django_capture_on_commit_callbacks(execute=False):
        out = run("purge_event", "wedding", stdin="wedding", monkeypatch=monkeypatch)
    assert "Deleted Wedding (wedding): 1 photos, 1 members." in out
    assert not Event.objects.exists() and not Photo.objects.exists() and not Match.objects.exists()


def test_purge_event_with_yes_does_not_ask(event, monkeypatch, django_capture_on_commit_callbacks):
    def no_prompt(prompt=""):
        raise AssertionError("asked")

    monkeypatch.setattr("builtins.input", no_prompt)
    with django_capture_on_commit_callbacks(execute=False):
        run("purge_event", "wedding", "--yes")
    assert not Event.objects.exists()


def test_create_upload_token_prints_a_token_that_uploads(event, staff_user, attendee):
    token = run("create_upload_token", "--user", "staff").strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    answer = client.post("/api/events/wedding/photos/check/", {"sha256": []}, format="json")
    assert answer.status_code == 200
    # The same token again, not a new one each time.
    assert run("create_upload_token", "--user", "staff").strip() == token
    with pytest.raises(CommandError, match="not active staff"):
        run("create_upload_token", "--user", "ann")
    with pytest.raises(CommandError, match="No user"):
        run("create_upload_token", "--user", "nobody")
