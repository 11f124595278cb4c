"""Gallery in a real browser: first and second load of /my/ with 100 photos, in Chromium.

    .venv/bin/python bench/gallery_browser.py
    .venv/bin/python bench/gallery_browser.py --runs 5 --viewport 390x844   # a phone

1. A temporary SQLite database and media folder; one member matched in 100 done photos whose
   thumbnails are real 400x300 WebP images (about 20-40 KB each, all different).
2. A live server in this process: Django's threaded WSGI server around the real WSGI handler,
   with a counter of the image requests that reach it.
3. Debian's chromium through Playwright (flags from ../shared/DESIGN.md), logged in by the
   member's session cookie.
   - first load: a fresh browser context (empty cache); the time from navigation start until
     every thumbnail above the fold has loaded (``img.complete`` and a natural width);
   - second load: the same context navigates to /my/ again; same measure. Image requests that
     reached the server are counted, and the browser's own view (memory or disk cache, or the
     network) is read through the DevTools protocol.
4. Prints each run and, on the last line, the medians against the goals (first <= 2 s, second
   <= 0.5 s with no image fetched again).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402

IMAGE_PATH = re.compile(r"^/api/photos/\d+/(thumb|preview|original)/$")
ABOVE_THE_FOLD_LOADED = """() => {
    const images = [...document.querySelectorAll('#gallery img')];
    const visible = images.filter(img => img.getBoundingClientRect().top < window.innerHeight);
    if (!visible.length) return false;
    return visible.every(img => img.complete && img.naturalWidth > 0) ? visible.length : false;
}"""


def log(msg: str) -> None:
    print(msg, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5, help="first+second load pairs")
    parser.add_argument("--viewport", default="1280x800", help="WIDTHxHEIGHT")
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args()


def configure(tmp: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ["DJANGO_SECRET_KEY"] = "bench-only-" + "x" * 40
    os.environ["SQLITE_PATH"] = str(tmp / "bench.sqlite3")
    os.environ["MEDIA_ROOT"] = str(tmp / "media")
    os.environ["LOG_LEVEL"] = "WARNING"
    for name in ("DATABASE_URL", "REDIS_URL", "AWS_STORAGE_BUCKET_NAME"):
        os.environ.pop(name, None)
    import django

    django.setup()


def thumbnail(seed: int) -> bytes:
    from PIL import Image, ImageFilter

    noise = Image.effect_noise((400, 300), 40 + seed % 30).filter(ImageFilter.GaussianBlur(1))
    colour = Image.new("RGB", (400, 300), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image = Image.blend(colour, noise.convert("RGB"), 0.35)
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=80)
    return buffer.getvalue()


def populate(n: int) -> int:
    from django.contrib.auth.hashers import make_password

    from accounts.models import User
    from bench.rows import done_photo
    from events.models import Event, Membership
    from faces.models import Match
    from photos.models import Photo, Rendition

    event = Event.objects.create(name="Garden party", slug="garden-party")
    me = User.objects.create(username="guest", password=make_password(None))
    Membership.objects.create(user=me, event=event)
    photos = Photo.objects.bulk_create(
        [done_photo(i, event, placeholder="#8899aa", face_count=2) for i in range(n)]
    )
    Rendition.objects.bulk_create(
        [Rendition(photo=p, thumb=thumbnail(i), preview=b"") for i, p in enumerate(photos)]
    )
    Match.objects.bulk_create([Match(photo=p, event=event, user=me, distance=0.4) for p in photos])
    return me.pk


class CountingApp:
    """The WSGI app, counting the image requests that reach the server."""

    def __init__(self, app) -> None:
        self.app = app
        self.images = 0
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if IMAGE_PATH.match(environ.get("PATH_INFO", "")):
            with self.lock:
                self.images += 1
        return self.app(environ, start_response)


def serve(app):
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args) -> None:  # noqa: D401 - the bench prints its own lines
            return None

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=True)
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def load(page, url: str) -> tuple[float, int, float]:
    """Navigate; return (ms from navigation start until every visible thumbnail has loaded,
    how many are visible, ms until the page's HTML had fully arrived)."""
    page.goto(url, wait_until="commit")
    handle = page.wait_for_function(ABOVE_THE_FOLD_LOADED, timeout=30_000, polling="raf")
    visible = handle.json_value()
    elapsed, html = page.evaluate(
        "() => [performance.now(), performance.getEntriesByType('navigation')[0].responseEnd]"
    )
    return elapsed, visible, html


def main() -> None:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="findme-bench-browser-"))
    try:
        configure(tmp)
        run(args)
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.test import Client
    from playwright.sync_api import sync_playwright

    from accounts.models import User

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    me_id = populate(args.photos)
    client = Client()
    client.force_login(User.objects.get(pk=me_id))
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    app = CountingApp(WSGIHandler())
    server = serve(app)
    base = f"http://127.0.0.1:{server.server_port}"
    url = f"{base}/my/"
    width, height = (int(x) for x in args.viewport.split("x"))
    log(f"gallery browser bench: {args.photos} photos, viewport {width}x{height}, {url}")

    firsts, seconds, refetched, from_cache = [], [], [], []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            for run_no in range(1, args.runs + 1):
                context = browser.new_context(viewport={"width": width, "height": height})
                context.add_cookies(
                    [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": base}]
                )
                page = context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.send("Network.enable")
                # Per request id: a memory-cache hit is announced by requestServedFromCache, a
                # disk-cache hit by fromDiskCache on its response; anything else came by network.
                image_ids: set[str] = set()
                cached_ids: set[str] = set()

                def on_response(params, image_ids=image_ids, cached_ids=cached_ids) -> None:
                    path = re.sub(r"^https?://[^/]+", "", params["response"]["url"])
                    if IMAGE_PATH.match(path):
                        image_ids.add(params["requestId"])
                        if params["response"].get("fromDiskCache"):
                            cached_ids.add(params["requestId"])

                def on_served_from_cache(params, cached_ids=cached_ids) -> None:
                    cached_ids.add(params["requestId"])

                cdp.on("Network.responseReceived", on_response)
                cdp.on("Network.requestServedFromCache", on_served_from_cache)

                before = app.images
                first_ms, visible, first_html = load(page, url)
                first_server = app.images - before
                page.wait_for_load_state("networkidle")
                image_ids.clear()
                cached_ids.clear()

                before = app.images
                second_ms, _, second_html = load(page, url)
                page.wait_for_load_state("networkidle")
                second_server = app.images - before
                firsts.append(first_ms)
                seconds.append(second_ms)
                refetched.append(second_server)
                from_cache.append(len(image_ids & cached_ids))
                log(
                    f"  run {run_no}: first {first_ms:5.0f} ms (HTML in {first_html:4.0f}; {visible} "
                    f"thumbnails above the fold, {first_server} image requests served)   "
                    f"second {second_ms:4.0f} ms (HTML in {second_html:4.0f}; "
                    f"{second_server} image requests reached the server; browser: "
                    f"{len(image_ids & cached_ids)} from its cache, "
                    f"{len(image_ids - cached_ids)} from the network)"
                )
                context.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()

    first, second = statistics.median(firsts), statistics.median(seconds)
    ok_first = "ok" if first <= 2000 else "MISSED"
    ok_second = "ok" if second <= 500 and max(refetched) == 0 else "MISSED"
    log(
        f"median first load {first:.0f} ms (goal <= 2000: {ok_first}); second load {second:.0f} ms, "
        f"{max(refetched)} images fetched again (goal <= 500 ms and 0: {ok_second})"
    )


if __name__ == "__main__":
    main()
