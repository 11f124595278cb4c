"""My photos, live, in Debian's chromium on a phone: with the gallery open, a photo in which
the guest is found appears without a reload, with a notice that counts the guest's own photos.

The photo is finished the way photo processing finishes one (``photos.services._photo_work``'s
last transaction: the faces stored and matched by ``faces_store``, the row done, the renditions
written), so the gallery hears of it the way it would from a worker: the match bumps the guest's
gallery generation on commit. How long it took to appear is printed, not asserted.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from django.db import transaction
from django.utils import timezone
from PIL import Image

from tests.browser import PASSWORD, PHONE, new_page, screenshot
from tests.e2e.test_accessibility import assert_accessible, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

API = "/api/my-photos/"


@pytest.fixture(scope="module")
def axe():
    from axe_playwright_python.sync_playwright import Axe

    return Axe()


def descriptor(seed: int) -> bytes:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return (vector / np.linalg.norm(vector) * 0.5).tobytes()


@pytest.fixture
def guest(django_user_model, event):
    from accounts.models import Selfie
    from events.models import Membership

    user = django_user_model.objects.create_user(username="guest", password=PASSWORD)
    Membership.objects.create(user=user, event=event)
    Selfie.objects.create(
        user=user,
        image="selfies/guest.jpg",
        consent_at=timezone.now(),
        status=Selfie.Status.INDEXED,
        indexed_at=timezone.now(),
        descriptor=descriptor(1),
        engine="local",
    )
    return user


def photo_processed(event, n: int, *, face_seed: int) -> tuple[int, float]:
    """A photo of ``event`` with one face, processed: returns its id and the moment its
    transaction committed (what "processed" means to a gallery)."""
    from faces.engines.base import DetectedFace
    from faces.services import faces_store
    from photos.models import Photo, Rendition

    colour = (60 + 40 * n % 190, 140, 200 - 30 * n % 190)
    thumb, preview = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (400, 300), colour).save(thumb, format="WEBP")
    Image.new("RGB", (800, 600), colour).save(preview, format="JPEG")
    photo = Photo.objects.create(
        event=event,
        sha256=f"{n:064x}",
        original=f"photos/{event.pk}/{n}.jpg",
        original_name=f"IMG_{n:04d}.JPG",
        content_type="image/jpeg",
        size=1000,
        status=Photo.Status.PROCESSING,
    )
    with transaction.atomic():
        faces_store(
            event_id=event.pk,
            photo_id=photo.pk,
            detected=[DetectedFace(0.3, 0.2, 0.2, 0.3, descriptor=descriptor(face_seed))],
        )
        Photo.objects.filter(pk=photo.pk).update(
            status=Photo.Status.DONE,
            width=800,
            height=600,
            thumb_width=400,
            thumb_height=300,
            placeholder="#5078c8",
            face_count=1,
            processed_at=timezone.now(),
        )
        Rendition.objects.create(photo=photo, thumb=thumb.getvalue(), preview=preview.getvalue())
    return photo.pk, time.monotonic()


def polls_of(page) -> list[int]:
    """The status of every poll of the API the page made, as they come."""
    statuses: list[int] = []
    page.on(
        "response",
        lambda r: statuses.append(r.status) if r.url.split("?")[0].endswith(API) else None,
    )
    return statuses


def csp_errors_of(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_a_new_photo_of_me_appears_without_a_reload_with_a_notice(
    browser, axe, live_server, event, guest, django_user_model
):
    from events.models import Membership

    first, _ = photo_processed(event, 1, face_seed=1)
    # Another guest of the event, found in photos of their own: never in this gallery.
    other = django_user_model.objects.create_user(username="other", password=PASSWORD)
    Membership.objects.create(user=other, event=event)
    from accounts.models import Selfie

    Selfie.objects.create(
        user=other,
        image="selfies/other.jpg",
        consent_at=timezone.now(),
        status=Selfie.Status.INDEXED,
        indexed_at=timezone.now(),
        descriptor=descriptor(2),
        engine="local",
    )

    page = new_page(browser, live_server.url, PHONE)
    errors = csp_errors_of(page)
    log_in(page, "guest")
    polls = polls_of(page)
    page.goto(f"/my/?event={event.slug}")
    page.locator(f"#photo-{first}").wait_for()
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded

    # The page's ETag agrees with the API's: the first poll of an unchanged gallery is a 304.
    with page.expect_response(lambda r: r.url.endswith(f"{API}?event={event.slug}")) as poll:
        pass
    assert poll.value.status == 304

    # Someone else's photo changes nothing here.
    theirs, _ = photo_processed(event, 2, face_seed=2)
    mine, processed = photo_processed(event, 3, face_seed=1)

    page.locator(f"#photo-{mine}").wait_for(timeout=30_000)
    seconds = time.monotonic() - processed
    print(f"\nlive gallery: the new photo appeared {seconds:.1f} s after it was processed")

    notice = page.locator("#live-notice")
    assert notice.inner_text().startswith("1 new photo of you")
    assert page.evaluate("window.sameDocument") is True
    assert page.locator(f"#photo-{theirs}").count() == 0
    assert page.locator(".tile[data-photo-id]").count() == 2
    # In the gallery's order (newest first here), before the photo that was already there.
    order = page.locator(".tile[data-photo-id]").evaluate_all(
        "tiles => tiles.map(t => Number(t.dataset.photoId))"
    )
    assert order == [mine, first]
    assert page.locator("#photo-count").inner_text().startswith("2 photos")
    assert 304 in polls and 200 in polls
    screenshot(page, "live-notice-phone.png")
    assert_accessible(axe, page, "the gallery with the live notice shown")

    # "Show it" leads to the new photo, which works like any other: it opens in the lightbox.
    notice.get_by_role("button", name="Show it").click()
    assert page.evaluate("document.activeElement.closest('.tile').dataset.photoId") == str(mine)
    assert notice.inner_text() == ""
    # The guest's gallery at phone size, with generated photos: docs/screenshots/ holds no face.
    screenshot(page, "guest-gallery-phone.png")
    page.locator(f"#photo-{mine} .tile-open").click()
    page.locator("dialog#lightbox").wait_for(state="visible")
    page.keyboard.press("Escape")
    assert errors == []
    page.context.close()


def test_an_empty_gallery_fills_in_without_a_reload(browser, axe, live_server, event, guest):
    page = new_page(browser, live_server.url, PHONE)
    errors = csp_errors_of(page)
    log_in(page, "guest")
    page.goto("/my/")
    page.get_by_role("heading", name="No photos of you yet").wait_for()
    page.evaluate("window.sameDocument = true")

    mine, processed = photo_processed(event, 1, face_seed=1)
    page.locator(f"#photo-{mine}").wait_for(timeout=30_000)
    print(f"\nlive gallery: the first photo appeared {time.monotonic() - processed:.1f} s after")

    assert page.evaluate("window.sameDocument") is True
    assert page.locator("#live-notice").inner_text().startswith("1 new photo of you")
    assert page.get_by_role("heading", name="No photos of you yet").count() == 0
    assert_accessible(axe, page, "a gallery that was empty, with its first photo and the notice")
    # The gallery's own script came with it: the photo opens in the lightbox.
    page.locator(f"#photo-{mine} .tile-open").click()
    page.locator("dialog#lightbox").wait_for(state="visible")
    assert errors == []
    page.context.close()
