"""The gallery's own actions in Debian's chromium on a phone: "Not me" with its Undo and every
count following it, in the grid and in the lightbox; selecting photos and downloading them as a
zip; sharing a photo's file where the browser can; and axe-core on each of these states.
The page runs under the enforced CSP: any script it needed inline would be refused, and the
refusal is looked for in the console.
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.browser import PASSWORD, new_page, screenshot
from tests.e2e.test_accessibility import assert_accessible, gallery_of, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Two days of a wedding: the gallery is headed by day, newest first.
TAKEN = [
    datetime(2026, 12, 13, 11, 0, tzinfo=UTC),
    datetime(2026, 12, 12, 19, 30, tzinfo=UTC),
    datetime(2026, 12, 12, 17, 0, tzinfo=UTC),
    datetime(2026, 12, 12, 15, 15, tzinfo=UTC),
]


@pytest.fixture(scope="module")
def axe():
    from axe_playwright_python.sync_playwright import Axe

    return Axe()


@pytest.fixture
def wedding(django_user_model, event) -> tuple:
    """A guest with four photos of the wedding, over two days; their ids, newest first."""
    from events.models import Membership
    from faces.models import Face, Match
    from photos.models import Photo

    user = django_user_model.objects.create_user(username="ann", password=PASSWORD)
    Membership.objects.create(user=user, event=event)
    gallery_of(user, event, len(TAKEN))
    photos = list(Photo.objects.filter(event=event).order_by("pk"))
    for photo, taken in zip(photos, TAKEN, strict=True):
        Photo.objects.filter(pk=photo.pk).update(taken_at=taken)
        # Each match on the face it was found on, as matching makes them: the undo gives it back.
        face = Face.objects.create(
            photo=photo, event=event, index=0, left=0.4, top=0.2, width=0.2, height=0.3,
            engine="local",
        )  # fmt: skip
        Match.objects.filter(photo=photo, user=user).update(face=face)
    return user, [p.pk for p in photos]


def gallery_page(browser, live_server, *, init_script: str | None = None):
    page = new_page(browser, live_server.url)
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    if init_script:
        page.add_init_script(init_script)
    log_in(page, "ann")
    page.goto("/my/")
    page.locator("li.tile").first.wait_for()
    # gallery.js is running once it has shown the Select button (hidden without JavaScript).
    page.get_by_role("button", name="Select", exact=True).wait_for()
    return page, refused


def counts(page) -> tuple[str, str]:
    return (
        page.locator("#photo-count").inner_text(),
        page.locator("[data-zip-label]").inner_text(),
    )


def visible_tiles(page) -> list[int]:
    return [
        int(pk)
        for pk in page.locator("li.tile:visible").evaluate_all(
            "els => els.map(e => e.dataset.photoId)"
        )
    ]


def is_rejected(user, photo_id: int) -> bool:
    from faces.models import Match

    return Match.objects.get(user=user, photo_id=photo_id).rejected


def test_not_me_can_be_undone_and_every_count_follows(browser, live_server, wedding):
    user, ids = wedding
    page, refused = gallery_page(browser, live_server)
    assert counts(page) == ("4 photos", "Download all 4 (zip)")
    assert page.get_by_role("heading", name="Sunday 13 December 2026").is_visible()
    assert visible_tiles(page) == ids  # newest first: the order they were taken in

    # "Not me" is no twin of Download: another colour, its own icon, not the same width.
    tile = page.locator(f"#photo-{ids[1]}")
    download = tile.get_by_role("link", name="Download this photo")
    not_me = tile.get_by_role("button", name="Not me")
    style = "e => [getComputedStyle(e).color, e.getBoundingClientRect().width]"
    assert download.evaluate(style)[0] != not_me.evaluate(style)[0]
    assert download.evaluate(style)[1] > not_me.evaluate(style)[1]

    not_me.click()
    notice = page.locator(".undo-notice")
    notice.hover()  # the notice stays while it is pointed at
    assert notice.get_by_text("Removed from your gallery.").is_visible()
    tile.wait_for(state="hidden")
    assert counts(page) == ("3 photos", "Download all 3 (zip)")
    assert is_rejected(user, ids[1])

    notice.get_by_role("button", name="Undo").click()
    tile.wait_for(state="visible")
    page.get_by_text("The photo is back in your gallery.").wait_for()
    assert counts(page) == ("4 photos", "Download all 4 (zip)")
    assert not is_rejected(user, ids[1])
    assert visible_tiles(page) == ids

    # The only photo of Sunday: its heading goes with it. Dismissed, the removal is final.
    page.locator(f"#photo-{ids[0]}").get_by_role("button", name="Not me").click()
    page.locator(".undo-notice").hover()
    page.get_by_role("heading", name="Sunday 13 December 2026").wait_for(state="hidden")
    screenshot(page, "gallery-undo-phone.png")
    page.get_by_role("button", name="Dismiss").click()
    page.locator(f"#photo-{ids[0]}").wait_for(state="detached")
    assert counts(page) == ("3 photos", "Download all 3 (zip)")
    page.reload()
    assert visible_tiles(page) == ids[1:]
    assert counts(page) == ("3 photos", "Download all 3 (zip)")
    assert is_rejected(user, ids[0])
    assert not refused, refused
    page.context.close()


def test_not_me_in_the_lightbox_with_its_undo(browser, live_server, wedding):
    user, ids = wedding
    page, refused = gallery_page(browser, live_server)
    page.locator(f"#photo-{ids[1]} .tile-open").click()
    dialog = page.locator("dialog#lightbox")
    dialog.wait_for(state="visible")
    counter = dialog.locator("[data-lightbox-counter]")
    assert counter.inner_text() == "2 of 4"

    dialog.get_by_role("button", name="Not me").click()
    # The next photo is shown, and the Undo is inside the dialog, where it can be used.
    notice = dialog.locator(".undo-notice")
    notice.wait_for()
    assert counter.inner_text() == "2 of 3"
    assert (
        dialog.locator("[data-lightbox-download]")
        .get_attribute("href")
        .endswith(f"/api/photos/{ids[2]}/original/")
    )
    assert is_rejected(user, ids[1])
    assert page.locator("#photo-count").inner_text() == "3 photos"
    notice.get_by_role("button", name="Undo").click()
    dialog.get_by_text("The photo is back in your gallery.").wait_for()
    assert counter.inner_text() == "2 of 4"
    assert not is_rejected(user, ids[1])
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert counts(page) == ("4 photos", "Download all 4 (zip)")
    assert not refused, refused
    page.context.close()


def test_selected_photos_download_as_one_zip(browser, live_server, wedding):
    _, ids = wedding
    page, refused = gallery_page(browser, live_server)
    bar = page.locator("#selection-form")
    assert bar.is_hidden()
    page.get_by_role("button", name="Select", exact=True).click()
    bar.wait_for()
    download = bar.get_by_role("button", name="Download the selected photos (zip)")
    assert bar.locator("[data-selected-count]").inner_text() == "0"
    assert download.is_disabled()

    # A tap on a photo ticks it instead of opening it.
    page.locator(f"#photo-{ids[0]} .tile-open").click()
    page.locator(f"#photo-{ids[2]} .tile-select input").check()
    assert page.locator("dialog#lightbox").is_hidden()
    assert bar.locator("[data-selected-count]").inner_text() == "2"
    names = {page.locator(f"#photo-{pk}").get_attribute("data-name") for pk in (ids[0], ids[2])}

    with page.expect_download() as fetched:
        download.click()
    assert fetched.value.suggested_filename == "wedding.zip"
    with zipfile.ZipFile(io.BytesIO(Path(fetched.value.path()).read_bytes())) as archive:
        assert archive.testzip() is None
        assert set(archive.namelist()) == names

    bar.get_by_role("button", name="Cancel selecting").click()
    bar.wait_for(state="hidden")
    assert page.locator(".tile-select input:checked").count() == 0
    page.locator(f"#photo-{ids[0]} .tile-open").click()  # opens again
    page.locator("dialog#lightbox").wait_for(state="visible")
    assert not refused, refused
    page.context.close()


# A browser that can share files, as a phone's is: the files handed over are recorded.
FAKE_WEB_SHARE = """
Object.defineProperty(navigator, "canShare", {
  value: (data) => Boolean(data && data.files && data.files.every((f) => f instanceof File)),
});
Object.defineProperty(navigator, "share", {
  value: async (data) => {
    window.sharedFiles = data.files.map((f) => ({ name: f.name, type: f.type, size: f.size }));
  },
});
"""


def test_share_is_hidden_where_files_cannot_be_shared(browser, live_server, wedding):
    page, _ = gallery_page(browser, live_server)
    assert page.evaluate("typeof navigator.share") == "undefined"  # chromium on Linux
    page.locator(".tile-open").first.click()
    page.locator("dialog#lightbox").wait_for(state="visible")
    assert page.locator("[data-lightbox-share]").is_hidden()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Select", exact=True).click()
    assert page.locator("[data-selection-share]").is_hidden()
    page.context.close()


def test_share_hands_over_the_photo_file_under_its_download_name(browser, live_server, wedding):
    from photos.models import Photo

    _, ids = wedding
    page, refused = gallery_page(browser, live_server, init_script=FAKE_WEB_SHARE)
    page.locator(f"#photo-{ids[1]} .tile-open").click()
    dialog = page.locator("dialog#lightbox")
    dialog.wait_for(state="visible")
    dialog.get_by_role("button", name="Share").click()
    page.wait_for_function("() => window.sharedFiles !== undefined")
    photo = Photo.objects.get(pk=ids[1])
    assert page.evaluate("window.sharedFiles") == [
        {"name": f"wedding-20261212-1930-{photo.pk}.jpg", "type": "image/jpeg", "size": photo.size}
    ]
    page.keyboard.press("Escape")

    # Several at once, from the selection.
    page.evaluate("delete window.sharedFiles")
    page.get_by_role("button", name="Select", exact=True).click()
    for pk in ids[:3]:
        page.locator(f"#photo-{pk} .tile-select input").check()
    page.get_by_role("button", name="Share the selected photos").click()
    page.wait_for_function("() => window.sharedFiles !== undefined")
    shared = page.evaluate("window.sharedFiles")
    assert [f["name"] for f in shared] == [
        page.locator(f"#photo-{pk}").get_attribute("data-name") for pk in ids[:3]
    ]
    assert not refused, refused
    page.context.close()


def test_the_gallerys_new_states_are_accessible(browser, axe, live_server, wedding):
    _, ids = wedding
    page, refused = gallery_page(browser, live_server, init_script=FAKE_WEB_SHARE)
    assert_accessible(axe, page, "the gallery headed by day")

    page.get_by_role("button", name="Select", exact=True).click()
    page.locator(f"#photo-{ids[0]} .tile-select input").check()
    assert_accessible(axe, page, "the gallery selecting, one photo selected")
    screenshot(page, "gallery-selecting-phone.png")
    page.get_by_role("button", name="Cancel selecting").click()

    page.locator(f"#photo-{ids[1]}").get_by_role("button", name="Not me").click()
    page.locator(".undo-notice").hover()
    assert_accessible(axe, page, "the gallery with the undo notice")
    page.get_by_role("button", name="Undo").click()
    page.get_by_text("The photo is back in your gallery.").wait_for()

    page.locator(".tile-open").first.click()
    dialog = page.locator("dialog#lightbox")
    dialog.wait_for(state="visible")
    assert dialog.get_by_role("button", name="Share").is_visible()
    assert_accessible(axe, page, "the lightbox with Share and Not me")
    dialog.get_by_role("button", name="Not me").click()
    dialog.locator(".undo-notice").hover()
    assert_accessible(axe, page, "the lightbox with the undo notice")
    screenshot(page, "lightbox-undo-phone.png")
    assert not refused, refused
    page.context.close()
