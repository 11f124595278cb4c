"""Outages answer 503, never 500, and cost nothing once they are over (issue 9, point 3).

A real gunicorn (2 workers, the production settings module) runs on a PostgreSQL and a Redis of
its own (tests/reliability/servers.py), which are stopped and started under it:

- PostgreSQL stopped: health names the database; the gallery, an upload and the event list
  answer 503 'unavailable' with Retry-After. Started again: the same requests succeed at once.
- PostgreSQL restarted between requests: every pooled connection is dead, and no request sees
  it (the pool checks each connection before handing it out).
- Redis stopped: the gallery answers 200 from the database, an upload is stored (201), and
  health names the broker and the cache. Started again: health is 200.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, jpeg_bytes

from .servers import (
    PostgresServer,
    RedisServer,
    free_port,
    postgres_missing,
    production_env,
    redis_missing,
    wait_for,
)

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(
        bool(postgres_missing() or redis_missing()),
        reason=f"needs a throwaway PostgreSQL and Redis: {postgres_missing() or redis_missing()}",
    ),
]

# What would change the stack the server runs on: the server gets only what is set below.

SEED = """
import json
from rest_framework.authtoken.models import Token
from accounts.models import User
from faces.models import Match
from events.models import Event, Membership
from photos.models import Photo

staff = User.objects.create_user("staff", password="staff-pass-123", is_staff=True)
ann = User.objects.create_user("ann", password="ann-pass-1234")
event = Event.objects.create(name="Outage", slug="outage", created_by=staff)
Membership.objects.create(user=ann, event=event)
photo = Photo.objects.create(
    event=event, sha256="0" * 64, original=f"photos/{event.pk}/seed.jpg",
    content_type="image/jpeg", size=100, width=640, height=480,
    status=Photo.Status.DONE, face_count=1,
)
Match.objects.create(photo=photo, event=event, user=ann, distance=0.3)
print(json.dumps({
    "staff": Token.objects.create(user=staff).key,
    "attendee": Token.objects.create(user=ann).key,
    "slug": event.slug,
    "photo": photo.pk,
}))
"""


@dataclass
class App:
    base: str
    staff: str
    attendee: str
    slug: str
    photo: int
    pg: PostgresServer
    redis: RedisServer
    log: Path
    http: httpx.Client = field(init=False)
    uploads: int = 0

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base, timeout=60)

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Token {token}"} if token else {}
        return self.http.get(path, headers=headers)

    def health(self) -> httpx.Response:
        return self.get("/api/health/")

    def gallery(self) -> httpx.Response:
        return self.get("/api/my-photos/", self.attendee)

    def events(self) -> httpx.Response:
        return self.get("/api/events/", self.staff)

    def upload(self) -> httpx.Response:
        self.uploads += 1  # new bytes each time: never a duplicate
        data = jpeg_bytes((64, 48), (self.uploads * 40 % 256, 90, 200 - self.uploads * 7 % 200))
        return self.http.post(
            f"/api/events/{self.slug}/photos/",
            files={"file": (f"outage-{self.uploads}.jpg", data, "image/jpeg")},
            headers={"Authorization": f"Token {self.staff}"},
        )

    def explain(self, answer: httpx.Response) -> str:
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        return (
            f"{answer.request.method} {answer.request.url.path} -> {answer.status_code} "
            f"{answer.text[:500]}\n--- server log ---\n{tail}"
        )


def app_env(database_url: str, redis_url: str, media: Path, port: int) -> dict[str, str]:
    env = production_env()
    env.update(
        DJANGO_SECRET_KEY="x",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        MEDIA_ROOT=str(media),
        # While PostgreSQL is down a request waits this long for a connection before its 503.
        DB_POOL_TIMEOUT="2",
        Q_CLUSTER_NAME=f"findme-outages-{port}",
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def app(throwaway_postgres: PostgresServer, throwaway_redis: RedisServer) -> Iterator[App]:
    folder = Path(tempfile.mkdtemp(prefix="findme-outages-"))
    port = free_port()
    env = app_env(
        throwaway_postgres.create_database("findme"),
        throwaway_redis.url,
        folder / "media",
        port,
    )
    manage(env, "migrate", "--noinput")
    seeded = json.loads(manage(env, "shell", "-c", SEED).strip().splitlines()[-1])
    log = folder / "gunicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
                "--error-logfile",
                "-",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = App(
        base=f"http://127.0.0.1:{port}",
        staff=seeded["staff"],
        attendee=seeded["attendee"],
        slug=seeded["slug"],
        photo=seeded["photo"],
        pg=throwaway_postgres,
        redis=throwaway_redis,
        log=log,
    )

    def answers() -> bool:
        assert server.poll() is None, f"gunicorn exited:\n{log.read_text(errors='replace')}"
        try:
            return running.health().status_code in (200, 503)
        except httpx.TransportError:
            return False

    try:
        wait_for(answers, timeout=60, what="gunicorn answering")
        yield running
    finally:
        running.http.close()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=15)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def assert_unavailable(app: App, answer: httpx.Response) -> None:
    assert answer.status_code == 503, app.explain(answer)
    assert int(answer.headers["Retry-After"]) > 0, app.explain(answer)
    error = answer.json()["error"]
    assert error["code"] == "unavailable" and error["message"], app.explain(answer)
    assert set(error) == {"code", "message", "detail"}


def assert_gallery_from_the_database(app: App, answer: httpx.Response) -> None:
    assert answer.status_code == 200, app.explain(answer)
    assert [p["id"] for p in answer.json()["results"]] == [app.photo], app.explain(answer)


def on_both_workers(app: App, request, rounds: int = 3) -> list[httpx.Response]:
    """Requests two at a time: with two sync workers, each round reaches both."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return [a for _ in range(rounds) for a in pool.map(lambda _: request(), range(2))]


def test_postgres_down_answers_503_and_up_again_answers_at_once(app):
    for answer in on_both_workers(app, app.events):  # each worker holds a pooled connection
        assert answer.status_code == 200, app.explain(answer)

    app.pg.stop()
    try:
        health = app.health()
        assert health.status_code == 503, app.explain(health)
        assert health.json()["database"] == "down", app.explain(health)
        assert health.json()["broker"] == "ok" and health.json()["cache"] == "ok"
        for answer in (app.gallery(), app.upload(), app.events()):
            assert_unavailable(app, answer)
    finally:
        app.pg.start()

    # No pause, no retry: the first requests after the restart succeed.
    health = app.health()
    assert health.status_code == 200, app.explain(health)
    assert_gallery_from_the_database(app, app.gallery())
    upload = app.upload()
    assert upload.status_code == 201, app.explain(upload)
    events = app.events()
    assert events.status_code == 200, app.explain(events)
    assert [e["slug"] for e in events.json()["results"]] == [app.slug]


def test_postgres_restart_between_requests_costs_no_request(app):
    for answer in on_both_workers(app, app.events):
        assert answer.status_code == 200, app.explain(answer)
    # Every connection the workers pooled dies with the server; none is used meanwhile.
    app.pg.stop()
    app.pg.start()
    for answer in on_both_workers(app, app.events) + on_both_workers(app, app.gallery):
        assert answer.status_code == 200, app.explain(answer)


def test_redis_down_keeps_galleries_and_uploads_and_health_names_it(app):
    assert_gallery_from_the_database(app, app.gallery())  # a page now in the cache
    app.redis.stop()
    try:
        for answer in on_both_workers(app, app.gallery):
            assert_gallery_from_the_database(app, answer)
        health = app.health()
        assert health.status_code == 503, app.explain(health)
        body = health.json()
        assert (body["broker"], body["cache"]) == ("down", "down"), app.explain(health)
        assert (body["database"], body["storage"]) == ("ok", "ok"), app.explain(health)
        # The row and the file are the record; the photo is handed to the broker once it is
        # back (photos.services.photo_ingest, core.jobs).
        upload = app.upload()
        assert upload.status_code == 201, app.explain(upload)
        assert upload.json()["status"] == "queued"
    finally:
        app.redis.start()

    health = app.health()
    assert health.status_code == 200, app.explain(health)
    assert_gallery_from_the_database(app, app.gallery())
