"""The attendee's journey in a real browser (Debian's chromium through Playwright), against a
live server and a real worker cluster: sign up, join, selfie, gallery, preview, download,
"not me", and deleting the face data. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from tests.browser import DESKTOP, PASSWORD, PHONE, new_page, screenshot
from tests.cluster import running_cluster, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.faces,
    pytest.mark.django_db(transaction=True),
]


# In the event: three photos with Obama, two without.
WITH_OBAMA = ["people/obama/obama_2.jpg", "people/obama/obama_3.jpg", "groups/two_people.jpg"]
WITHOUT_OBAMA = ["people/kit_harington/kit_2.jpg", "groups/bald_guys.jpg"]


def staff_api(playwright, base_url: str, django_user_model):
    from accounts.services import user_token

    staff = django_user_model.objects.create_user(
        username="photographer", password=PASSWORD, is_staff=True
    )
    return playwright.request.new_context(
        base_url=base_url, extra_http_headers={"Authorization": f"Token {user_token(user=staff)}"}
    )


def upload(api, slug: str, path: Path) -> int:
    answer = api.post(
        f"/api/events/{slug}/photos/",
        multipart={
            "file": {"name": path.name, "mimeType": "image/jpeg", "buffer": path.read_bytes()}
        },
    )
    assert answer.status == 201, answer.text()
    return answer.json()["id"]


def tile_ids(page) -> set[int]:
    return {
        int(pk)
        for pk in page.locator("li.tile").evaluate_all("els => els.map(e => e.dataset.photoId)")
    }


def test_attendee_journey_from_join_link_to_deleting_face_data(
    playwright_and_browser, live_server, faces_dir, django_user_model
):
    from accounts.models import Selfie
    from photos.models import Photo

    playwright, browser = playwright_and_browser
    api = staff_api(playwright, live_server.url, django_user_model)
    created = api.post("/api/events/", data={"name": "Inauguration"})
    assert created.status == 201, created.text()
    event = created.json()
    join_path = f"/e/{event['slug']}/join/?code={event['join_code']}"

    with running_cluster(workers=2) as cluster:
        page = new_page(browser, live_server.url)

        # 1-2. The join link sends a newcomer to sign up, then back to the event.
        page.goto(join_path)
        assert "/accounts/login/" in page.url
        page.get_by_role("link", name="Create an account").first.click()
        page.get_by_label("Username").fill("barack")
        page.get_by_label("Email address").fill("barack@example.com")
        page.locator("#id_password1").fill(PASSWORD)
        page.locator("#id_password2").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        page.get_by_role("heading", name="Join Inauguration").wait_for()
        page.get_by_role("button", name="Join Inauguration").click()
        page.wait_for_url("**/me/selfie/")
        assert page.get_by_text("You joined Inauguration.").is_visible()

        # 3. The selfie, through the page, with consent.
        screenshot(page, "selfie-phone.png")
        screenshot(page, "selfie-desktop.png", DESKTOP)
        page.set_viewport_size(PHONE)
        page.locator("#selfie-file").set_input_files(str(faces_dir / "people/obama/obama_1.jpg"))
        page.get_by_label("I agree that FindMe uses my face").check()
        page.get_by_role("button", name="Save my selfie").click()
        page.get_by_text("Thank you. Your selfie is being read").wait_for()
        assert page.get_by_text("You gave your consent on").is_visible()

        # 4. The photographer uploads the event's photos.
        expected = {upload(api, event["slug"], faces_dir / name): name for name in WITH_OBAMA}
        others = [upload(api, event["slug"], faces_dir / name) for name in WITHOUT_OBAMA]

        # 5. The gallery shows exactly the photos with Obama in them.
        def gallery_settled() -> bool:
            done = Photo.objects.filter(status=Photo.Status.DONE).count() == len(expected) + len(
                others
            )
            indexed = Selfie.objects.filter(status=Selfie.Status.INDEXED).exists()
            if not (done and indexed):
                return False
            page.goto("/my/")
            return tile_ids(page) == set(expected)

        wait_until(
            gallery_settled, timeout=180, proc=cluster, what="the gallery to show Obama's photos"
        )
        assert not tile_ids(page) & set(others)
        assert page.locator("#photo-count").inner_text() == "3 photos"
        page.wait_for_function(
            "() => [...document.querySelectorAll('li.tile img')]"
            ".every((i) => i.complete && i.naturalWidth > 0)"
        )
        screenshot(page, "gallery-phone.png")
        screenshot(page, "gallery-desktop.png", DESKTOP)
        page.set_viewport_size(PHONE)

        # 6a. A preview in the lightbox, with next and previous (buttons and arrow keys).
        page.locator(".tile-open").first.click()
        dialog = page.locator("dialog#lightbox")
        dialog.wait_for(state="visible")
        preview = dialog.locator("img[data-lightbox-image]")
        page.wait_for_function(
            "() => { const i = document.querySelector('[data-lightbox-image]');"
            " return i.src.includes('/preview/') && i.complete && i.naturalWidth > 0; }"
        )
        assert dialog.locator("[data-lightbox-counter]").inner_text() == "1 of 3"
        page.keyboard.press("ArrowRight")
        assert dialog.locator("[data-lightbox-counter]").inner_text() == "2 of 3"
        dialog.get_by_role("button", name="Next photo").click()
        assert dialog.locator("[data-lightbox-counter]").inner_text() == "3 of 3"
        dialog.get_by_role("button", name="Previous photo").click()
        page.keyboard.press("ArrowLeft")
        assert dialog.locator("[data-lightbox-counter]").inner_text() == "1 of 3"
        assert re.search(r"/api/photos/\d+/preview/$", preview.get_attribute("src"))
        screenshot(page, "lightbox-phone.png")
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")

        # 6b. The original, byte for byte.
        first = page.locator("li.tile").first
        first_id = int(first.get_attribute("data-photo-id"))
        with page.expect_download() as download:
            first.get_by_role("link", name="Download this photo").click()
        assert (
            Path(download.value.path()).read_bytes()
            == (faces_dir / expected[first_id]).read_bytes()
        )

        # 6c. "Not me" on the group photo: it leaves at once (an Undo is offered for a few
        # seconds: tests/e2e/test_gallery_actions.py), and for good once the notice is gone.
        group_id = next(pk for pk, name in expected.items() if name == "groups/two_people.jpg")
        page.locator(f"#photo-{group_id}").get_by_role("button", name="Not me").click()
        page.locator(f"#photo-{group_id}").wait_for(state="hidden")
        assert page.get_by_text("Removed from your gallery.").is_visible()
        assert page.locator("#photo-count").inner_text() == "2 photos"
        page.get_by_role("button", name="Dismiss").click()
        page.locator(f"#photo-{group_id}").wait_for(state="detached")
        page.reload()
        assert tile_ids(page) == set(expected) - {group_id}

        # "Download all": a zip of the originals left in the gallery.
        with page.expect_download() as download:
            page.get_by_role("link", name=re.compile("Download all")).click()
        with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
            assert archive.testzip() is None
            assert len(archive.namelist()) == 2

        # 6d. Deleting the face data, after a confirmation, empties the gallery.
        page.get_by_role("link", name="My selfie").click()
        page.get_by_role("link", name="Delete all my face data").click()
        page.get_by_role("heading", name="Delete all my face data?").wait_for()
        page.get_by_role("button", name="Yes, delete my face data").click()
        page.get_by_text("Your selfie, your face data and your matches are deleted.").wait_for()
        page.get_by_role("link", name="My photos").click()
        assert tile_ids(page) == set()
        assert page.get_by_role("heading", name="You have not added a selfie yet").is_visible()
        screenshot(page, "gallery-empty-phone.png")
        assert not Selfie.objects.exists()
        page.context.close()
    api.dispose()


def test_bad_selfies_get_a_visible_message(browser, live_server, faces_dir, django_user_model):
    from accounts.models import Selfie

    django_user_model.objects.create_user(username="joe", password=PASSWORD)
    page = new_page(browser, live_server.url)
    page.goto("/me/selfie/")
    page.get_by_label("Username").fill("joe")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/me/selfie/")

    def send(file, *, consent: bool = True) -> str:
        page.locator("#selfie-file").set_input_files(file)
        page.get_by_label("I agree that FindMe uses my face").set_checked(consent)
        page.get_by_role("button", name="Save my selfie").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        return alert.inner_text()

    assert "No face was found" in send(str(faces_dir / "no_faces/dogs.jpg"))
    assert "2 faces were found" in send(str(faces_dir / "groups/two_people.jpg"))
    screenshot(page, "selfie-error-phone.png")
    text_file = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo\n"}
    assert "Only JPEG, PNG, WebP and HEIC photos are accepted" in send(text_file)
    no_consent = send(str(faces_dir / "people/obama/obama_1.jpg"), consent=False)
    assert "Tick the consent box" in no_consent
    assert page.get_by_text("Your selfie was not saved.").is_visible()
    assert not Selfie.objects.exists()
    page.context.close()
