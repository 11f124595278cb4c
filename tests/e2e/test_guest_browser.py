"""A wedding guest's first minutes on a phone, in Debian's chromium, against a live server and a
real worker cluster: the QR code's link, the landing page, "Find my photos", a selfie and no
password, their gallery; the private link on a second device; deleting their face data. Every
new page and state is checked by axe-core. Screenshots land in test-artifacts/; those with real
faces never go into the repository (docs/screenshots/ has the landing page and the poster).
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from tests.browser import PASSWORD, new_page, screenshot
from tests.cluster import running_cluster, wait_until
from tests.e2e.test_accessibility import assert_accessible, log_in
from tests.e2e.test_browser import staff_api, tile_ids, upload

pytestmark = [
    pytest.mark.browser,
    pytest.mark.faces,
    pytest.mark.django_db(transaction=True),
]

WITH_OBAMA = ["people/obama/obama_2.jpg", "groups/two_people.jpg"]
WITHOUT_OBAMA = ["people/kit_harington/kit_2.jpg"]


@pytest.fixture(scope="module")
def axe():
    from axe_playwright_python.sync_playwright import Axe

    return Axe()


def test_qr_to_gallery_without_a_password_then_a_second_device_then_deletion(
    playwright_and_browser, axe, live_server, faces_dir, django_user_model
):
    from accounts.models import Selfie, User
    from events.models import Event
    from photos.models import Photo

    playwright, browser = playwright_and_browser
    api = staff_api(playwright, live_server.url, django_user_model)
    created = api.post("/api/events/", data={"name": "Ana & Rui"})
    assert created.status == 201, created.text()
    event = created.json()
    Event.objects.filter(slug=event["slug"]).update(
        date=date(2026, 6, 13), organiser="Photos by Marta Lopes"
    )
    join_url = event["join_url"]

    with running_cluster(workers=2) as cluster:
        # The photographer's photos are there before the guest arrives.
        expected = {upload(api, event["slug"], faces_dir / name) for name in WITH_OBAMA}
        others = {upload(api, event["slug"], faces_dir / name) for name in WITHOUT_OBAMA}
        wait_until(
            lambda: Photo.objects.filter(status=Photo.Status.DONE).count() == 3,
            timeout=120,
            proc=cluster,
            what="the event's photos to be processed",
        )

        # 1. The QR code's link opens the landing page: the event, and one action.
        page = new_page(browser, live_server.url)
        page.goto(join_url)
        page.get_by_role("heading", name="Ana & Rui").wait_for()
        assert page.get_by_text("Photos by Marta Lopes").is_visible()
        assert page.get_by_text("3 photos so far").is_visible()
        screenshot(page, "landing-phone.png")
        assert_accessible(axe, page, "landing page")

        # 2. "Find my photos": a guest, no password, straight to the selfie.
        page.get_by_role("button", name="Find my photos").click()
        page.wait_for_url("**/me/selfie/?event=*")
        assert page.get_by_text("Welcome to Ana & Rui").is_visible()
        assert_accessible(axe, page, "selfie page of a new guest")
        assert User.objects.filter(is_guest=True).count() == 1

        # 3. The selfie: the button says it is busy while the face is checked.
        page.locator("#selfie-file").set_input_files(str(faces_dir / "people/obama/obama_1.jpg"))
        page.get_by_label("I agree that FindMe uses my face").check()
        # The submission is held at the window (after the page's own handler ran) to look at
        # the busy state, then sent as it is.
        page.evaluate(
            "() => window.addEventListener('submit', (e) => { if (window.hold) e.preventDefault(); })"
        )
        page.evaluate("() => { window.hold = true; }")
        page.get_by_role("button", name="Save my selfie").click()
        submit = page.locator("#selfie-submit")
        assert submit.is_disabled()
        assert "Checking your selfie" in submit.inner_text()
        assert page.locator("#selfie-form").get_attribute("aria-busy") == "true"
        page.evaluate("() => document.getElementById('selfie-form').submit()")
        # The page shows the selfie on file, then moves on to the gallery by itself.
        page.wait_for_url("**/my/?event=*", timeout=120_000)
        assert Selfie.objects.filter(status=Selfie.Status.INDEXED).count() == 1

        def gallery_full() -> bool:
            if tile_ids(page) == expected:
                return True
            page.reload()
            return tile_ids(page) == expected

        wait_until(gallery_full, timeout=120, proc=cluster, what="the guest's photos")
        assert not tile_ids(page) & others
        page.wait_for_function(
            "() => [...document.querySelectorAll('li.tile img')]"
            ".every((i) => i.complete && i.naturalWidth > 0)"
        )
        screenshot(page, "guest-gallery-real-faces-phone.png")

        # 4. The private link, shown to copy, opens the same gallery on a second device.
        page.get_by_role("link", name="My link").click()
        page.get_by_role("heading", name="My private link").wait_for()
        assert_accessible(axe, page, "private link page")
        link = page.locator("#private-link").input_value()
        assert "/g/" in link
        phone_two = new_page(browser, live_server.url)
        phone_two.goto(link)
        phone_two.wait_for_url("**/my/")
        assert tile_ids(phone_two) == expected
        phone_two.context.close()

        # The page that keeps the account with a password.
        page.get_by_role("link", name="Save my account").click()
        page.get_by_role("heading", name="Save my account").wait_for()
        assert_accessible(axe, page, "save my account page")

        # 5. The guest deletes their face data: the gallery empties, everywhere.
        page.get_by_role("link", name="My selfie").click()
        page.wait_for_function(
            "() => { const i = document.querySelector('img.selfie-on-file');"
            " return i !== null && i.complete && i.naturalWidth > 0; }"
        )
        page.get_by_role("link", name="Delete all my face data").click()
        page.get_by_role("button", name="Yes, delete my face data").click()
        page.get_by_text("Your selfie, your face data and your matches are deleted.").wait_for()
        page.get_by_role("link", name="My photos").click()
        assert tile_ids(page) == set()
        assert not Selfie.objects.exists()
        page.context.close()
    api.dispose()


def test_a_wrong_code_and_the_poster_are_accessible(browser, axe, live_server, django_user_model):
    from events.models import Event

    django_user_model.objects.create_user(username="marta", password=PASSWORD, is_staff=True)
    event = Event.objects.create(name="Spring Gala", slug="gala", organiser="City Choir")
    page = new_page(browser, live_server.url)
    page.goto("/e/gala/?code=wrong")
    page.get_by_role("heading", name="This code does not work").wait_for()
    assert_accessible(axe, page, "landing page with a wrong code")
    page.goto("/e/gala/")
    assert_accessible(axe, page, "landing page asking for the code")

    log_in(page, "marta")
    for size in ("a4", "a5"):
        page.goto(f"/e/gala/qr/?size={size}")
        page.get_by_role("heading", name="Spring Gala").wait_for()
        assert page.get_by_text(event.join_code).first.is_visible()
        assert_accessible(axe, page, f"poster {size}")
    screenshot(page, "poster-phone.png")
    # The printed poster fits one sheet of the chosen paper (A5 here, the last one shown).
    pdf = page.pdf(prefer_css_page_size=True)
    assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == 1
