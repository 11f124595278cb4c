"""One Debian chromium per browser-test module, through Playwright (see tests/browser.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS


@pytest.fixture(scope="module")
def playwright_and_browser() -> Iterator[tuple]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (make browser)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls these tests make
    # between browser steps are synchronous and safe, so Django need not refuse them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
            )
            try:
                yield playwright, browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser(playwright_and_browser):
    return playwright_and_browser[1]
