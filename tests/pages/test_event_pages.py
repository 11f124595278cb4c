"""The event's landing page, where its QR code leads; a guest's first minutes (no password, one
tap); their private link; keeping the account; the poster; the organiser's cover and logo."""

from __future__ import annotations

import io
import re
from datetime import date

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from accounts.models import Selfie, User
from events.models import Membership
from photos.admin import EventForm
from tests.pages.conftest import join, match_make, photo_make

pytestmark = pytest.mark.django_db


def landing(event) -> str:
    return f"/e/{event.slug}/?code={event.join_code}"


def test_the_landing_page_names_the_event_and_offers_one_action(client, event):
    event.date = date(2026, 6, 13)
    event.organiser = "Photos by Ana Silva"
    event.save()
    photo_make(event)
    photo_make(event)
    photo_make(event, status="queued")  # not findable yet: not counted
    page = client.get(landing(event))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1" in html and "Wedding</h1>" in html
    assert "Saturday 13 June 2026" in html
    assert "Photos by Ana Silva" in html
    assert "<strong>2</strong> photos so far" in html
    assert html.count("Find my photos") == 1
    assert f'action="/e/{event.slug}/guest/"' in html


def test_without_a_code_the_page_asks_for_it_and_a_wrong_one_is_refused(client, event):
    asked = client.get(f"/e/{event.slug}/")
    assert asked.status_code == 200
    assert 'name="code"' in asked.content.decode()
    assert "Wedding" not in asked.content.decode()
    wrong = client.get(f"/e/{event.slug}/?code=nope")
    assert wrong.status_code == 404
    assert "No event matches this link or code" in wrong.content.decode()
    assert "Wedding" not in wrong.content.decode()


def test_the_qr_code_leads_to_the_landing_page(staff_page_client, event):
    page = staff_page_client.get(f"/e/{event.slug}/qr/")
    assert page.status_code == 200
    assert f"/e/{event.slug}/?code={event.join_code}" in page.content.decode()


def test_find_my_photos_makes_a_signed_in_guest_member_and_asks_for_a_selfie(client, event):
    answer = client.post(f"/e/{event.slug}/guest/", {"code": event.join_code})
    assert answer.status_code == 302
    assert answer["Location"] == f"/me/selfie/?event={event.slug}"
    guest = User.objects.get(is_guest=True)
    assert Membership.objects.filter(user=guest, event=event).exists()
    selfie_page = client.get(answer["Location"])
    assert selfie_page.status_code == 200
    html = selfie_page.content.decode()
    assert "Welcome to Wedding" in html
    assert 'action="/me/selfie/?event=wedding"' in html
    assert ">My link</a>" in html  # the guest is offered their private link


def test_a_wrong_code_posted_makes_no_guest(client, event):
    answer = client.post(f"/e/{event.slug}/guest/", {"code": "nope"})
    assert answer.status_code == 404
    assert not User.objects.filter(is_guest=True).exists()


def test_a_signed_in_member_goes_straight_to_their_gallery(ann_client, attendee, event):
    join(attendee, event)
    html = ann_client.get(landing(event)).content.decode()
    assert f'href="/my/?event={event.slug}"' in html
    assert "/guest/" not in html


def test_a_signed_in_non_member_joins_as_themselves(ann_client, attendee, event):
    html = ann_client.get(landing(event)).content.decode()
    assert f'action="/e/{event.slug}/join/"' in html
    answer = ann_client.post(f"/e/{event.slug}/join/", {"code": event.join_code})
    assert answer.status_code == 302
    assert Membership.objects.filter(user=attendee, event=event).exists()
    assert not User.objects.filter(is_guest=True).exists()


def guest_client(event) -> tuple[Client, User]:
    client = Client()
    client.post(f"/e/{event.slug}/guest/", {"code": event.join_code})
    return client, User.objects.get(is_guest=True)


def test_the_private_link_is_shown_and_sent_by_email(event):
    client, _ = guest_client(event)
    page = client.get("/me/link/")
    assert page.status_code == 200
    link = re.search(r'value="(http://testserver/g/[^"]+/)"', page.content.decode()).group(1)
    sent = client.post("/me/link/", {"email": "guest@example.com"})
    assert sent.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["guest@example.com"]
    # The link in the email opens the same gallery on a fresh device.
    emailed = re.search(r"http://testserver(/g/\S+/)", mail.outbox[0].body).group(1)
    other = Client()
    assert other.get(emailed).status_code == 302
    assert other.get("/api/me/").json()["username"].startswith("guest-")
    assert link.startswith("http://testserver/g/")
    # The address is not kept.
    assert User.objects.get(is_guest=True).email == ""


def test_a_bad_address_is_refused_and_nothing_sent(event):
    client, _ = guest_client(event)
    page = client.post("/me/link/", {"email": "not an address"})
    assert page.status_code == 200
    assert "Enter a valid email address" in page.content.decode()
    assert mail.outbox == []


def test_a_guest_saves_their_account_and_keeps_their_gallery(event):
    client, guest = guest_client(event)
    photo = photo_make(event)
    match_make(photo, guest)
    answer = client.post(
        "/accounts/keep/",
        {
            "username": "ana",
            "email": "ana@example.com",
            "password1": "a-long-passphrase-42",
            "password2": "a-long-passphrase-42",
        },
    )
    assert answer.status_code == 302
    user = User.objects.get(pk=guest.pk)
    assert (
        not user.is_guest and user.username == "ana" and user.check_password("a-long-passphrase-42")
    )
    # Still signed in on this device, with the same photos.
    gallery = client.get("/my/")
    assert gallery.status_code == 200
    assert f"/api/photos/{photo.pk}/thumb/" in gallery.content.decode()
    fresh = Client()
    assert fresh.login(username="ana", password="a-long-passphrase-42")


def test_password_rule_errors_sit_under_the_password_not_the_confirmation(client):
    page = client.post(
        "/accounts/signup/",
        {"username": "zed", "email": "zed@example.com", "password1": "123", "password2": "123"},
    )
    html = page.content.decode()
    password1 = html.index('for="id_password1"')
    password2 = html.index('for="id_password2"')
    error = html.index("This password is too short")
    assert password1 < error < password2


@pytest.mark.faces
def test_the_selfie_on_file_is_shown_to_its_owner_only(ann_client, attendee, faces_dir):
    data = (faces_dir / "people/obama/obama_1.jpg").read_bytes()
    ann_client.post(
        "/me/selfie/",
        {"file": SimpleUploadedFile("me.jpg", data, content_type="image/jpeg"), "consent": "true"},
    )
    assert Selfie.objects.filter(user=attendee).exists()
    page = ann_client.get("/me/selfie/").content.decode()
    assert 'src="/me/selfie/photo.jpg"' in page
    photo = ann_client.get("/me/selfie/photo.jpg")
    assert photo.status_code == 200 and photo["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(photo.content))
    assert max(image.size) <= 320
    assert "private" in photo["Cache-Control"]
    again = ann_client.get("/me/selfie/photo.jpg", HTTP_IF_NONE_MATCH=photo["ETag"])
    assert again.status_code == 304
    stranger = Client()
    stranger.force_login(User.objects.create_user("eve", password="eve-pass-1234"))
    assert stranger.get("/me/selfie/photo.jpg").status_code == 404


def branding_upload(size: tuple[int, int], mode: str = "RGB", fmt: str = "JPEG", **save):
    buffer = io.BytesIO()
    Image.new(mode, size, (10, 120, 200) if mode == "RGB" else (10, 120, 200, 0)).save(
        buffer, format=fmt, **save
    )
    return SimpleUploadedFile(f"upload.{fmt.lower()}", buffer.getvalue())


def test_a_cover_and_logo_set_in_the_admin_are_bounded_and_served_for_good(client, event):
    exif = Image.Exif()
    exif[0x8825] = {2: (48, 51, 0)}  # GPS latitude
    form = EventForm(
        data={"name": event.name, "slug": event.slug, "join_code": event.join_code},
        files={
            "cover": branding_upload((4000, 3000), exif=exif),
            "logo": branding_upload((1200, 600), mode="RGBA", fmt="PNG"),
        },
        instance=event,
    )
    assert form.is_valid(), form.errors
    event = form.save()
    cover = Image.open(event.cover.open("rb"))
    assert cover.format == "JPEG" and max(cover.size) == 1600
    assert 0x8825 not in cover.getexif()
    logo = Image.open(event.logo.open("rb"))
    assert logo.format == "PNG" and max(logo.size) == 400 and logo.mode == "RGBA"

    html = client.get(landing(event)).content.decode()
    cover_url = re.search(r'class="landing-cover" src="([^"]+)"', html).group(1)
    served = client.get(cover_url)
    assert served.status_code == 200 and served["Content-Type"] == "image/jpeg"
    assert "immutable" in served["Cache-Control"]
    assert client.get(f"/e/{event.slug}/files/cover-0000.jpg").status_code == 404


def test_a_cover_that_is_no_image_is_refused_in_the_form(event):
    form = EventForm(
        data={"name": event.name, "slug": event.slug, "join_code": event.join_code},
        files={"cover": SimpleUploadedFile("x.jpg", b"<svg onload=alert(1)>")},
        instance=event,
    )
    assert not form.is_valid()
    assert "cover" in form.errors


@pytest.mark.parametrize("size", ["a4", "a5"])
def test_the_poster_prints_on_a4_or_a5_with_name_code_and_one_instruction(
    staff_page_client, event, size
):
    html = staff_page_client.get(f"/e/{event.slug}/qr/?size={size}").content.decode()
    assert f'class="poster poster-{size}"' in html
    assert "Wedding</h1>" in html
    assert event.join_code in html
    assert "Scan with your phone" in html
    assert "<svg" in html
