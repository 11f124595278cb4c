"""Every page a person uses, checked by axe-core (Deque's rules engine) in Debian's chromium.

axe-core is what browsers' own accessibility audits run; axe-playwright-python ships it and
injects it into the page. The rules are WCAG 2.1 A and AA: labels, names, contrast, landmarks,
headings, language, ARIA. Each page is checked in the state a person sees it: empty and full,
with an error shown, with the lightbox open. A failure prints axe's own report.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.browser import DESKTOP, PASSWORD, new_page
from tests.conftest import jpeg_bytes, uploaded

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WCAG_21_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


@pytest.fixture(scope="module")
def axe():
    from axe_playwright_python.sync_playwright import Axe

    return Axe()


def assert_accessible(axe, page, where: str) -> None:
    results = axe.run(page, options=WCAG_21_AA)
    assert results.violations_count == 0, f"{where}:\n{results.generate_report()}"
    # The rules did run: a page that axe could not read would pass with no violation at all.
    assert results.response["passes"], f"{where}: axe checked nothing"


def gallery_of(user, event, count: int) -> None:
    from faces.models import Match
    from photos.models import Photo, Rendition
    from photos.services import photo_ingest

    for n in range(count):
        colour = (40 + 50 * n, 120, 200 - 40 * n)
        buffer = io.BytesIO()
        Image.new("RGB", (800, 600), colour).save(buffer, format="JPEG")
        photo = photo_ingest(
            event=event,
            upload=uploaded(f"p{n}.jpg", buffer.getvalue(), "image/jpeg"),
            uploaded_by=None,
        ).photo
        thumb, preview = io.BytesIO(), io.BytesIO()
        Image.new("RGB", (400, 300), colour).save(thumb, format="WEBP")
        Image.new("RGB", (800, 600), colour).save(preview, format="JPEG")
        Rendition.objects.create(photo=photo, thumb=thumb.getvalue(), preview=preview.getvalue())
        Photo.objects.filter(pk=photo.pk).update(
            status=Photo.Status.DONE, width=800, height=600, placeholder="#5078c8"
        )
        Match.objects.create(photo=photo, event=event, user=user, distance=0.3)


def log_in(page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def test_anonymous_pages(browser, axe, live_server, event):
    page = new_page(browser, live_server.url)
    for path in ["/", "/accounts/login/", "/accounts/signup/", "/accounts/password-reset/"]:
        page.goto(path)
        assert_accessible(axe, page, path)

    # A form with its errors shown.
    page.goto("/accounts/signup/")
    page.get_by_role("button", name="Sign up").click()  # nothing filled in
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("alert").wait_for()
    assert_accessible(axe, page, "login with an error")

    page.goto(f"/e/{event.slug}/join/?code=wrong")
    assert_accessible(axe, page, "a join link with a wrong code")
    page.context.close()


def test_attendee_pages(browser, axe, live_server, event, django_user_model, monkeypatch):
    from events.models import Membership

    # Three a page, so that four photos show the pagination too.
    monkeypatch.setattr("photos.views.MY_PHOTOS_PER_PAGE", 3)

    user = django_user_model.objects.create_user(username="ann", password=PASSWORD)
    page = new_page(browser, live_server.url)
    log_in(page, "ann")

    page.goto(f"/e/{event.slug}/join/?code={event.join_code}")
    assert_accessible(axe, page, "the join page")
    page.get_by_role("button", name=f"Join {event.name}").click()
    page.wait_for_url("**/me/selfie/")
    assert_accessible(axe, page, "the selfie page, no selfie yet")

    page.locator("#selfie-file").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo\n"}
    )
    page.get_by_role("button", name="Save my selfie").click()
    page.get_by_role("alert").wait_for()
    assert_accessible(axe, page, "the selfie page with an error")

    page.goto("/my/")
    assert_accessible(axe, page, "an empty gallery")

    gallery_of(user, event, 4)
    assert Membership.objects.filter(user=user, event=event).exists()
    for viewport in (None, DESKTOP):
        if viewport:
            page.set_viewport_size(viewport)
        page.goto("/my/")
        page.locator("li.tile").first.wait_for()
        assert page.locator("li.tile").count() == 3
        assert page.get_by_role("link", name="Older →").is_visible()
        assert_accessible(axe, page, f"the gallery at {page.viewport_size['width']} px")

    page.locator(".tile-open").first.click()
    page.locator("dialog#lightbox").wait_for(state="visible")
    assert_accessible(axe, page, "the gallery with the lightbox open")
    page.keyboard.press("Escape")

    page.goto("/me/face-data/delete/")
    assert_accessible(axe, page, "the face data deletion confirmation")
    page.context.close()


def test_staff_pages(browser, axe, live_server, event, staff_user):
    staff_user.set_password(PASSWORD)
    staff_user.save()
    page = new_page(browser, live_server.url)
    log_in(page, staff_user.username)
    page.goto(f"/e/{event.slug}/qr/")
    assert_accessible(axe, page, "the join QR code page")
    from photos.models import Photo
    from photos.services import photo_ingest

    failed = photo_ingest(
        event=event,
        upload=uploaded("f.jpg", jpeg_bytes(), "image/jpeg"),
        uploaded_by=staff_user,
    ).photo
    Photo.objects.filter(pk=failed.pk).update(
        status=Photo.Status.FAILED, attempts=3, error="The file cannot be decoded."
    )
    page.goto("/admin/queue/")
    page.get_by_text("The file cannot be decoded.").wait_for()
    assert_accessible(axe, page, "the staff queue page with a failure")
    page.context.close()
