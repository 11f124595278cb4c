"""Joining an event through its link, and the QR code staff show for it."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from events.models import Membership
from tests.conftest import jpeg_bytes

pytestmark = pytest.mark.django_db


def join_link(event) -> str:
    """The join page for someone with an account (the QR code leads to the landing page)."""
    return f"/e/{event.slug}/join/?code={event.join_code}"


def test_anonymous_visitor_is_sent_to_log_in_and_back(client, event):
    link = join_link(event)
    answer = client.get(link)
    assert answer.status_code == 302
    assert answer["Location"] == f"/accounts/login/?next={quote(link, safe='/')}"
    login = client.get(answer["Location"]).content.decode()
    assert "Log in to join the event" in login
    assert f'href="/accounts/signup/?next={quote(link, safe="/")}"' in login


def test_join_link_shows_the_event_and_joins_on_confirm(ann_client, attendee, event):
    page = ann_client.get(join_link(event))
    assert page.status_code == 200
    assert "Join Wedding" in page.content.decode()
    assert 'name="csrfmiddlewaretoken"' in page.content.decode()
    assert not Membership.objects.filter(user=attendee, event=event).exists()

    joined = ann_client.post(f"/e/{event.slug}/join/", {"code": event.join_code})
    assert joined.status_code == 302
    assert joined["Location"] == "/me/selfie/"  # no selfie yet: that comes next
    assert Membership.objects.filter(user=attendee, event=event).exists()
    assert "You joined Wedding." in ann_client.get("/me/selfie/").content.decode()


def test_a_member_with_a_selfie_goes_to_the_event_gallery(ann_client, attendee, event):
    from accounts.services import selfie_store

    selfie_store(user=attendee, upload=SimpleUploadedFile("s.jpg", jpeg_bytes()))
    joined = ann_client.post(f"/e/{event.slug}/join/", {"code": event.join_code})
    assert joined["Location"] == f"/my/?event={event.slug}"
    assert ann_client.get(join_link(event))["Location"] == f"/my/?event={event.slug}"


@pytest.mark.parametrize("code", ["wrong", "", " "])
def test_a_wrong_code_is_404_with_a_clear_message(ann_client, attendee, event, code):
    for answer in (
        ann_client.get(f"/e/{event.slug}/join/?code={code}"),
        ann_client.post(f"/e/{event.slug}/join/", {"code": code}),
    ):
        assert answer.status_code == 404
        assert "No event matches this link or code" in answer.content.decode()
    assert not Membership.objects.filter(user=attendee).exists()


def test_an_unknown_event_is_404(ann_client):
    answer = ann_client.get("/e/nope/join/?code=abc")
    assert answer.status_code == 404
    assert "This join link does not work" in answer.content.decode()


def test_staff_see_the_join_link_as_a_qr_code(staff_page_client, event):
    page = staff_page_client.get(f"/e/{event.slug}/qr/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html
    assert "<title>Join Wedding</title>" in html
    assert f"http://testserver/e/wedding/?code={event.join_code}" in html

    svg = staff_page_client.get(f"/e/{event.slug}/qr.svg")
    assert svg.status_code == 200
    assert svg["Content-Type"] == "image/svg+xml"
    assert svg.content.lstrip().startswith(b"<?xml")


def test_the_qr_code_is_for_staff_only(ann_client, client, event):
    assert ann_client.get(f"/e/{event.slug}/qr/").status_code == 404
    assert ann_client.get(f"/e/{event.slug}/qr.svg").status_code == 404
    assert client.get(f"/e/{event.slug}/qr/").status_code == 302


def test_the_admin_event_list_links_to_the_qr_code(staff_user, event):
    staff_user.is_superuser = True
    staff_user.save()
    client = Client()
    client.force_login(staff_user)
    listing = client.get("/admin/events/event/")
    assert listing.status_code == 200
    assert f'href="/e/{event.slug}/qr/"' in listing.content.decode()
