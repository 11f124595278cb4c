"""How the browser tests and bench/gallery_browser.py start Debian's chromium (see DESIGN.md).

Playwright cannot download its own browsers here; without the background-networking flags
chromium keeps trying hosts this machine cannot reach.
"""

from pathlib import Path

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
