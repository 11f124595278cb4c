"""How the browser tests and bench/gallery_browser.py start Debian's chromium (see DESIGN.md),
and the pages and screenshots the browser tests share.

Playwright cannot download its own browsers here; without the background-networking flags
chromium keeps trying hosts this machine cannot reach.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
PASSWORD = "a-long-passphrase-42"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def new_page(browser, base_url: str, viewport: dict = PHONE):
    context = browser.new_context(base_url=base_url, viewport=viewport, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def screenshot(page, name: str, viewport: dict | None = None) -> None:
    if viewport:
        page.set_viewport_size(viewport)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
