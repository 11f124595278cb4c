"""Gallery bench: server-side latency of /api/my-photos/ (warm, cold, 304) and /my/, beside the floor.

    .venv/bin/python bench/gallery.py                  # 50,000 photos, 1,000 members, 300 requests
    .venv/bin/python bench/gallery.py --requests 1000  # tighter percentiles
    .venv/bin/python bench/gallery.py --redis redis://127.0.0.1:6379/13   # Redis cache (FLUSHES that db)

1. A temporary SQLite database (SQLITE_PATH) and media folder; migrate and createcachetable.
2. Data by bulk_create: 50,000 done photos in 20 events (tiny placeholder thumbnails and
   previews; ``--real-binaries`` gives the measured member's photos real sizes), 1,000
   members, each in one or two events with 15 matches per event; one member in five events
   with 500 matches.
3. Each request goes through Django's WSGI handler in this process, as gunicorn would call it:
   every middleware, session authentication from a cookie, URL resolution, the view, and the
   body consumed. The clock covers exactly that call; the process's CPU time for the same call
   is reported beside it (it does not count waiting for a busy machine's CPUs).
   One extra SQLite connection stays open for the whole run, as the worker cluster holds one in
   any real deployment: without it every request, being the file's last connection, would pay
   SQLite's WAL checkpoint on close.
   - baseline: a view (bench-local URLconf, never part of the app) answering ``{}`` through the
     same middleware and the same DRF authentication and permission: the framework's floor;
   - /api/my-photos/ warm: the answer is in the per-user cache;
   - /api/my-photos/ cold: the cache is cleared before each request (outside the clock);
   - /my/: the server-rendered gallery page;
   - /api/my-photos/ 304: what an open gallery's poll costs while nothing changed: the same
     request with If-None-Match holding the current ETag. Measured alternating with the
     baseline, request by request, so that both see the same machine; a second 304 case has
     the cached page deleted before each request (outside the clock), as its timeout would,
     which leaves the ETag record (photos.gallery.my_photos_not_modified) to answer.
4. Prints p50 and p95 of each, and, on the last line, the ratios to the baseline (the 304's
   first: its p95 against the baseline's measured alternating with it).

DEBUG is off (DEBUG=True records every SQL query in memory, which is not what production runs);
the script sets a throw-away DJANGO_SECRET_KEY for that.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOALS_MS = {"warm": 5.0, "cold": 40.0, "html": 60.0, "not_modified": 5.0}


def log(msg: str) -> None:
    print(msg, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=50_000)
    parser.add_argument("--members", type=int, default=1_000)
    parser.add_argument("--matches", type=int, default=500, help="matches of the measured member")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per case")
    parser.add_argument("--redis", default="", help="REDIS_URL for the cache; that db is flushed")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="override CONN_MAX_AGE (the app keeps SQLite connections 60 s)",
    )
    parser.add_argument(
        "--real-binaries",
        action="store_true",
        help="give the measured member's photos thumbnails and previews of real size "
        "(30 KB and 300 KB) instead of tiny placeholders",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args()


def configure(tmp: Path, redis_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ["DJANGO_SECRET_KEY"] = "bench-only-" + "x" * 40
    os.environ["SQLITE_PATH"] = str(tmp / "bench.sqlite3")
    os.environ["MEDIA_ROOT"] = str(tmp / "media")
    os.environ["LOG_LEVEL"] = "WARNING"
    # Production settings reached over plain HTTP on loopback, as tests.reliability.servers.
    # production_env gives a server: no HTTPS redirect (every request would be a 301), no
    # secure-only cookies or HSTS, and static files without a manifest (no collectstatic).
    for name in ("SECURE_SSL_REDIRECT", "SECURE_COOKIES", "SECURE_HSTS_SECONDS", "STATIC_MANIFEST"):
        os.environ[f"DJANGO_{name}"] = "0"
    for name in ("DATABASE_URL", "AWS_STORAGE_BUCKET_NAME"):
        os.environ.pop(name, None)
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    import django

    django.setup()


def bench_urlconf() -> str:
    """config.urls plus the baseline view, in a module that exists only in this process."""
    from django.urls import include, path
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.response import Response
    from rest_framework.views import APIView

    import config.urls

    class BaselineApi(APIView):
        permission_classes = [IsAuthenticated]

        def get(self, request):
            return Response({})

    module = types.ModuleType("bench_gallery_urls")
    module.urlpatterns = [
        path("bench/baseline/", BaselineApi.as_view()),
        path("", include("config.urls")),
    ]
    module.handler404 = config.urls.handler404
    module.handler500 = config.urls.handler500
    sys.modules[module.__name__] = module
    return module.__name__


# --- data -----------------------------------------------------------------------------------------
def tiny_image(fmt: str, colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, format=fmt, quality=60)
    return buffer.getvalue()


def populate(n_photos: int, n_members: int, my_matches: int) -> int:
    """Bulk-create the data set; return the measured member's id."""
    import random

    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from accounts.models import User
    from bench.rows import done_photo
    from events.models import Event, Membership
    from faces.models import Match
    from photos.models import Photo, Rendition

    rng = random.Random(5)  # noqa: S311 - reproducible data, not security
    n_events = 20
    thumb, preview = tiny_image("WEBP", (120, 140, 160)), tiny_image("JPEG", (120, 140, 160))
    unusable = make_password(None)
    with transaction.atomic():
        events = Event.objects.bulk_create(
            [Event(name=f"Event {i}", slug=f"event-{i}") for i in range(n_events)]
        )
        users = User.objects.bulk_create(
            [User(username=f"member{i:04d}", password=unusable) for i in range(n_members)],
            batch_size=1000,
        )
        me = users[0]
        per_event = n_photos // n_events
        Photo.objects.bulk_create(
            (
                done_photo(
                    i,
                    events[i // per_event % n_events],
                    original_name=f"IMG_{i:05d}.JPG",
                    placeholder="#788ca0",
                    face_count=3,
                )
                for i in range(n_photos)
            ),
            batch_size=2000,
        )
        Rendition.objects.bulk_create(
            (
                Rendition(photo_id=pk, thumb=thumb, preview=preview)
                for pk in Photo.objects.values_list("pk", flat=True)
            ),
            batch_size=2000,
        )
        by_event: dict[int, list[int]] = {}
        for pk, event_id in Photo.objects.values_list("pk", "event_id"):
            by_event.setdefault(event_id, []).append(pk)

        memberships, matches = [], []
        my_events = [e.pk for e in events[:5]]
        for event_id in my_events:
            memberships.append(Membership(user=me, event_id=event_id))
        my_photos = rng.sample([pk for e in my_events for pk in by_event[e]], my_matches)
        photo_event = {pk: e for e in my_events for pk in by_event[e]}
        matches += [
            Match(photo_id=pk, event_id=photo_event[pk], user=me, distance=0.4) for pk in my_photos
        ]
        for user in users[1:]:
            for event in rng.sample(events, rng.choice([1, 2])):
                memberships.append(Membership(user=user, event=event))
                matches += [
                    Match(photo_id=pk, event=event, user=user, distance=0.45)
                    for pk in rng.sample(by_event[event.pk], 15)
                ]
        Membership.objects.bulk_create(memberships, batch_size=2000)
        # One member per photo at most here keeps the data simple; the unique constraint is
        # (photo, user), so collisions between members would be legal anyway.
        Match.objects.bulk_create(matches, batch_size=2000, ignore_conflicts=True)
    return me.pk


# --- requests -------------------------------------------------------------------------------------
def environ(path: str, query: str, cookie: str, accept: str, extra: dict | None = None) -> dict:
    return {
        **(extra or {}),
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_COOKIE": cookie,
        "HTTP_ACCEPT": accept,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


class Caller:
    def __init__(self, app, cookie: str) -> None:
        self.app = app
        self.cookie = cookie
        self.headers: dict[str, str] = {}  # of the last answer

    def __call__(
        self,
        path: str,
        query: str = "",
        accept: str = "application/json",
        extra: dict | None = None,
    ) -> tuple[float, float, int, bytes]:
        """(wall ms, CPU ms, status, body) of one request through the WSGI handler; ``extra``
        adds to its environ (``HTTP_IF_NONE_MATCH``)."""
        status: list[str] = []

        def start_response(line, headers, exc_info=None):
            status.append(line)
            self.headers = dict(headers)

        env = environ(path, query, self.cookie, accept, extra)
        cpu = time.process_time()
        start = time.perf_counter()
        result = self.app(env, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        elapsed = (time.perf_counter() - start) * 1000
        cpu = (time.process_time() - cpu) * 1000
        return elapsed, cpu, int(status[0].split()[0]), body


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def measure(label: str, call, n: int, before=None, expect: int = 200) -> dict:
    for _ in range(5):  # warm the code paths, not the data
        if before:
            before()
        call()
    times, cpus = [], []
    for _ in range(n):
        if before:
            before()
        elapsed, cpu, status, _ = call()
        if status != expect:
            raise SystemExit(f"{label}: status {status}")
        times.append(elapsed)
        cpus.append(cpu)
    return summary(label, times, cpus)


def measure_alternating(cases: list[tuple], n: int) -> list[dict]:
    """Each case is (label, call, before, expected status); one request of each in turn, n
    rounds, the order swapped every round, so that every case sees the same machine."""
    for _ in range(5):
        for _, call, before, _ in cases:
            if before:
                before()
            call()
    samples = [([], []) for _ in cases]
    for round_no in range(n):
        order = list(range(len(cases)))
        if round_no % 2:
            order.reverse()
        for i in order:
            label, call, before, expect = cases[i]
            if before:
                before()
            elapsed, cpu, status, _ = call()
            if status != expect:
                raise SystemExit(f"{label}: status {status}")
            samples[i][0].append(elapsed)
            samples[i][1].append(cpu)
    return [summary(case[0], *sample) for case, sample in zip(cases, samples, strict=True)]


def summary(label: str, times: list[float], cpus: list[float]) -> dict:
    result = {
        "label": label,
        "p50": statistics.median(times),
        "p95": p95(times),
        "cpu_p50": statistics.median(cpus),
        "cpu_p95": p95(cpus),
    }
    log(
        f"  {label:<38} p50 {result['p50']:6.2f} ms  p95 {result['p95']:6.2f} ms"
        f"   (CPU p50 {result['cpu_p50']:5.2f}  p95 {result['cpu_p95']:5.2f})"
    )
    return result


def machine_note() -> str:
    """How busy and how fast this machine is right now, to read the figures against."""
    cpu, wall = time.process_time(), time.perf_counter()
    sum(range(10**7))
    cpu, wall = (time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"load average {load:.1f}; sum(range(10**7)) took {wall:.0f} ms ({cpu:.0f} ms CPU)"


def main() -> None:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="findme-bench-gallery-"))
    try:
        configure(tmp, args.redis)
        run(args)
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    import django
    from django.conf import settings
    from django.core.cache import cache
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings

    from accounts.models import User
    from faces.models import Match
    from photos.gallery import _page_key

    log(f"gallery bench: temporary SQLite at {settings.DATABASES['default']['NAME']}")
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    started = time.perf_counter()
    me_id = populate(args.photos, args.members, args.matches)
    if args.real_binaries:
        from photos.models import Photo, Rendition

        mine = Photo.objects.filter(matches__user_id=me_id).values_list("pk", flat=True)
        Rendition.objects.filter(photo_id__in=list(mine)).update(
            thumb=os.urandom(30_000), preview=os.urandom(300_000)
        )
        log("the measured member's 500 photos carry a 30 KB thumbnail and a 300 KB preview")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    log(
        f"data: {args.photos:,} photos, {args.members:,} members, "
        f"{Match.objects.count():,} matches ({Match.objects.filter(user_id=me_id).count()} of the "
        f"measured member) in {time.perf_counter() - started:.1f} s"
    )
    if args.redis:
        cache.clear()
    if args.conn_max_age is not None:
        connection.settings_dict["CONN_MAX_AGE"] = args.conn_max_age
    held = sqlite3.connect(settings.DATABASES["default"]["NAME"])
    held.execute("SELECT COUNT(*) FROM django_session").fetchall()

    with override_settings(ROOT_URLCONF=bench_urlconf()):
        client = Client()
        client.force_login(User.objects.get(pk=me_id))
        cookie = (
            f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        )
        call = Caller(WSGIHandler(), cookie)

        _, _, status, body = call("/api/my-photos/")
        assert status == 200, body[:300]
        import json

        page = json.loads(body)
        assert page["count"] == args.matches and len(page["results"]) == 50, page.get("count")

        backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
        log(
            f"python {platform.python_version()}, Django {django.get_version()}, "
            f"{os.cpu_count()} CPUs, cache {backend}, CONN_MAX_AGE "
            f"{connection.settings_dict['CONN_MAX_AGE']}, {args.requests} requests per case"
        )
        log(f"machine: {machine_note()}")
        n = args.requests
        call("/api/my-photos/")
        etag = call.headers["ETag"]
        conditional = {"HTTP_IF_NONE_MATCH": etag}
        page_key = _page_key(me_id, "http://127.0.0.1:8000/api/my-photos/")
        assert cache.get(page_key) is not None, "the bench's page key is not the app's"

        def not_modified() -> tuple[float, float, int, bytes]:
            return call("/api/my-photos/", extra=conditional)

        baseline, not_modified_result = measure_alternating(
            [
                (
                    "baseline: {} via DRF, same middleware",
                    lambda: call("/bench/baseline/"),
                    None,
                    200,
                ),
                ("/api/my-photos/ 304 (If-None-Match)", not_modified, None, 304),
            ],
            n,
        )
        results = {
            "baseline": baseline,
            "not_modified": not_modified_result,
            "not_modified_expired": measure(
                "/api/my-photos/ 304, page expired",
                not_modified,
                n,
                before=lambda: cache.delete(page_key),
                expect=304,
            ),
            "warm": measure("/api/my-photos/ warm (cache hit)", lambda: call("/api/my-photos/"), n),
            "cold": measure(
                "/api/my-photos/ cold (cache cleared)",
                lambda: call("/api/my-photos/"),
                n,
                before=cache.clear,
            ),  # fmt: skip
            "html": measure("/my/ HTML", lambda: call("/my/", accept="text/html"), n),
        }

    held.close()
    log(f"machine: {machine_note()}")
    floor = results["baseline"]["p95"]
    log("")
    for key, goal in GOALS_MS.items():
        verdict = "ok" if results[key]["p95"] <= goal else "MISSED"
        log(f"  goal {key:<4} p95 <= {goal:4.0f} ms: {results[key]['p95']:6.2f} ms  {verdict}")
    ratios = ", ".join(
        f"{key} {results[key]['p50'] / results['baseline']['p50']:.2f}x p50 / "
        f"{results[key]['p95'] / floor:.2f}x p95"
        for key in ("not_modified_expired", "warm", "cold", "html")
    )
    nm = results["not_modified"]
    log(
        f"304 p95 {nm['p95']:.2f} ms (CPU {nm['cpu_p95']:.2f}) vs baseline p95 {floor:.2f} ms, "
        f"alternating: ratio {nm['p95'] / floor:.2f} (p50 {nm['p50'] / results['baseline']['p50']:.2f}); "
        f"ratios to the baseline: {ratios}"
    )


if __name__ == "__main__":
    main()
