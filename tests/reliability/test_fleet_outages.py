"""A fleet that loses Redis, then PostgreSQL, while the photographer's watcher uploads (issue 9).

Real processes, as an operator runs them: gunicorn (2 workers x 4 threads) and one
``manage.py qcluster`` (2 workers) with the production settings module, on a PostgreSQL and a
Redis of their own (tests/reliability/servers.py) that are stopped and started under them. The
photos are sent by the real watcher (``python -m watcher DIR --once``), a subprocess.

- Redis stopped for 30 s during the watcher's burst of 60 photos: every upload answers 201 or
  503 (gunicorn's access log), every photo ends ``done`` within two minutes of Redis coming
  back (plus the time it takes to process them), and the watcher's summary is true: what it
  says it uploaded is what the event holds, and it exits 0.
- PostgreSQL stopped while photos are uploaded and processed: requests answer 503
  'unavailable' (never 500) while it is down. Started again: every photo ends ``done`` within
  the same bound, and the watcher's summary is true. Then it is restarted once more while the
  cluster is idle, so that every process holds pooled connections that died. Every photo
  created after the first restart is done on its first attempt with no error, and the
  cluster's log shows no traceback from the moment the waits begun during the outage are over
  (DB_POOL_TIMEOUT after the restart).

Nothing here sets the job settings (lease, sweep, redispatch): the bounds are those of the
defaults an operator gets.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import httpx
import numpy as np
import psycopg
import pytest
from PIL import Image, ImageDraw

from tests.conftest import ROOT

from .servers import (
    PostgresServer,
    RedisServer,
    client_env,
    free_port,
    postgres_missing,
    production_env,
    redis_missing,
)

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(
        bool(postgres_missing() or redis_missing()),
        reason=f"needs a throwaway PostgreSQL and Redis: {postgres_missing() or redis_missing()}",
    ),
]

WEB_WORKERS = 2
QUEUE_WORKERS = 2
RECOVERY_S = 120  # issue 9: lost work is done again within two minutes
# On top of the recovery bound: the time two workers need for the photos themselves (0.2-0.5 s
# each on 2 cores here), with room for a machine that other test runs share.
PROCESSING_ALLOWANCE_S = 60
REDIS_DOWN_S = 30
# Longer than DB_POOL_TIMEOUT (10 s): every request and task that started while PostgreSQL was
# down has given up before it is back, so what fails later failed because of the restart.
POSTGRES_DOWN_S = 15
DB_POOL_TIMEOUT_S = 10  # the default, which the fleet runs with


SEED = """
import json
from rest_framework.authtoken.models import Token
from accounts.models import User
from events.models import Event, Membership

staff = User.objects.create_user("photographer", password="fleet-pass-123", is_staff=True)
guest = User.objects.create_user("guest", password="fleet-pass-123")
slugs = ["redis-burst", "postgres-restart"]
for slug in slugs:
    event = Event.objects.create(name=slug, slug=slug, created_by=staff)
    Membership.objects.create(user=guest, event=event)
print(json.dumps({
    "staff": Token.objects.create(user=staff).key,
    "guest": Token.objects.create(user=guest).key,
}))
"""

SUMMARY = {
    "uploaded": re.compile(r"^\s*uploaded:\s+(\d+) \(this run\)", re.M),
    "duplicates": re.compile(r"^\s*duplicates:\s+(\d+)", re.M),
    "rejected": re.compile(r"^\s*rejected:\s+(\d+)", re.M),
    "failed": re.compile(r"^\s*failed:\s+(\d+)", re.M),
    "pending": re.compile(r"^\s*pending:\s+(\d+)", re.M),
    "on_server": re.compile(r"^\s*on the server in all:\s+(\d+)", re.M),
}


class PhotoRow(NamedTuple):
    id: int
    status: str
    attempts: int
    error: str
    created_at: datetime


STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.M)


def photo_jpeg(seed: int, n: int) -> bytes:
    """An 800x600 JPEG, noise under a few drawn shapes, different for each (seed, n)."""
    rng = np.random.default_rng(seed * 10_000 + n)
    image = Image.fromarray(rng.integers(60, 200, size=(600, 800, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = int(rng.integers(0, 700)), int(rng.integers(0, 500))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.ellipse((x, y, x + int(rng.integers(20, 100)), y + 80), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def photos_write(folder: Path, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"IMG_{seed:02d}_{n:03d}.jpg"
        path.write_bytes(photo_jpeg(seed, n))  # before the watcher starts: no half-written file
        paths.append(path)
    return paths


@dataclass
class WatcherRun:
    returncode: int
    stdout: str
    stderr: str

    def summary(self) -> dict[str, int]:
        found = {}
        for key, pattern in SUMMARY.items():
            match = pattern.search(self.stdout)
            assert match, f"the watcher printed no '{key}' line:\n{self}"
            found[key] = int(match[1])
        return found

    def retries(self) -> list[str]:
        """The watcher's own account of the answers it retried (logged as warnings)."""
        return [line for line in self.stderr.splitlines() if " WARNING " in line]

    def __str__(self) -> str:
        return (
            f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-3000:]}"
        )


class Fleet:
    """gunicorn and a qcluster on throwaway servers, and what a test reads from them."""

    def __init__(
        self,
        *,
        folder: Path,
        env: dict[str, str],
        database_url: str,
        pg: PostgresServer,
        redis: RedisServer,
        tokens: dict[str, str],
    ) -> None:
        self.folder = folder
        self.env = env
        self.database_url = database_url
        self.pg = pg
        self.redis = redis
        self.tokens = tokens
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.access_log = folder / "access.log"
        self.web_log = folder / "gunicorn.log"
        self.cluster_log = folder / "qcluster.log"
        self.web: subprocess.Popen | None = None
        self.cluster: subprocess.Popen | None = None
        self.http = httpx.Client(base_url=self.base, timeout=60)

    # --- processes ------------------------------------------------------------------------------
    def _spawn(self, command: list[str], log: Path) -> subprocess.Popen:
        with log.open("ab") as out:
            return subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> None:
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self.web = self._spawn(
            [
                gunicorn,
                "config.wsgi",
                "--workers",
                str(WEB_WORKERS),
                "--threads",
                "4",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
                "--access-logfile",
                str(self.access_log),
                "--access-logformat",
                "%(m)s %(U)s %(s)s",
            ],
            self.web_log,
        )
        self.cluster = self._spawn([sys.executable, "manage.py", "qcluster"], self.cluster_log)

        def web_answers() -> bool:
            try:
                return self.http.get("/api/health/").status_code in (200, 503)
            except httpx.TransportError:
                return False

        self.until(web_answers, timeout=60, what="gunicorn to answer")
        self.until(
            lambda: self.health() == {"database": "ok", "broker": "ok", "workers": "ok"},
            timeout=90,
            what="health to report the database, the broker and the workers ok",
        )

    def stop(self) -> None:
        for proc in (self.cluster, self.web):
            if proc is None:
                continue
            # The main process stops its own children; what is left after that is killed.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.http.close()

    def assert_running(self) -> None:
        for name, proc in (("gunicorn", self.web), ("qcluster", self.cluster)):
            assert proc is not None and proc.poll() is None, (
                f"{name} exited ({proc and proc.returncode})\n{self.logs()}"
            )

    def logs(self) -> str:
        parts = []
        for path in (self.web_log, self.cluster_log):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {path.name} (last 4000 characters)\n{text[-4000:]}")
        return "\n".join(parts)

    def until(
        self, condition: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.25
    ) -> float:
        """Wait at most ``timeout`` seconds for ``condition``; returns the seconds it took."""
        started = time.monotonic()
        while not condition():
            self.assert_running()
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what}: not true after {timeout:.0f} s\n{self.logs()}")
            time.sleep(poll)
        return time.monotonic() - started

    # --- reading ----------------------------------------------------------------------------------
    def health(self) -> dict[str, str]:
        try:
            answer = self.http.get("/api/health/")
            return {k: answer.json().get(k) for k in ("database", "broker", "workers")}
        except (httpx.TransportError, ValueError):
            return {}

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Token {self.tokens[user]}"}

    def photos(self, slug: str) -> list[PhotoRow]:
        """Every photo of the event, read from the database directly."""
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as db:
            rows = db.execute(
                "SELECT p.id, p.status, p.attempts, p.error, p.created_at FROM photos_photo p"
                " JOIN photos_event e ON e.id = p.event_id WHERE e.slug = %s ORDER BY p.id",
                [slug],
            ).fetchall()
        return [PhotoRow(*row) for row in rows]

    def statuses(self, slug: str) -> Counter[str]:
        return Counter(row.status for row in self.photos(slug))

    def answers(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request gunicorn answered so far."""
        found = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            method, path, status = line.split()
            found.append((method, path, int(status)))
        return found

    def cluster_tracebacks(self, *, since: float) -> list[str]:
        """The cluster's log records stamped at or after ``since`` (epoch seconds) that carry a
        traceback. A record is a stamped line and the unstamped lines under it."""
        text = self.cluster_log.read_text(errors="replace")
        found = []
        for record in re.split(r"(?m)^(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} )", text):
            stamp = STAMP.match(record)
            if stamp is None or "Traceback" not in record:
                continue
            # The cluster stamps local time, as time.time() reads it here.
            at = datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: DTZ007
            if at >= since:
                found.append(record)
        return found

    # --- the watcher ----------------------------------------------------------------------------
    def watcher_command(self, folder: Path, slug: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "watcher",
            str(folder),
            "--server",
            self.base,
            "--event",
            slug,
            "--token",
            self.tokens["staff"],
            "--once",
            "--no-progress",
            "--verbose",
        ]

    def watcher_start(self, folder: Path, slug: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.watcher_command(folder, slug),
            cwd=ROOT,
            env=watcher_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def watcher_finish(self, proc: subprocess.Popen, *, timeout: float) -> WatcherRun:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate(timeout=10)
            raise AssertionError(
                f"the watcher did not finish within {timeout:.0f} s\n{stdout}\n{stderr[-3000:]}"
                f"\n{self.logs()}"
            ) from None
        return WatcherRun(proc.returncode, stdout, stderr)

    def watcher_run(self, folder: Path, slug: str, *, timeout: float) -> WatcherRun:
        return self.watcher_finish(self.watcher_start(folder, slug), timeout=timeout)


def watcher_env() -> dict[str, str]:
    # The watcher is a client: nothing of the server's configuration reaches it.
    return client_env()


def fleet_env(database_url: str, redis_url: str, media: Path, name: str) -> dict[str, str]:
    env = production_env()
    env.update(
        DJANGO_SECRET_KEY="fleet-outages-" + "k" * 40,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        MEDIA_ROOT=str(media),
        Q_CLUSTER_NAME=name,
        CACHE_KEY_PREFIX=name,
        PHOTO_QUEUE_WORKERS=str(QUEUE_WORKERS),
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
        timeout=300,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def fleet(
    throwaway_postgres: PostgresServer, throwaway_redis: RedisServer, tmp_path_factory
) -> Iterator[Fleet]:
    # Logs and media stay in pytest's temporary folder (it keeps the last runs) for a post-mortem.
    folder = tmp_path_factory.mktemp("fleet")
    name = f"findme-fleet-{os.getpid()}-{throwaway_redis.port}"
    database_url = throwaway_postgres.create_database("findme")
    env = fleet_env(database_url, throwaway_redis.url, folder / "media", name)
    running = None
    try:
        manage(env, "migrate", "--noinput", "-v0")
        # The last line: shell may first say how many objects it imported.
        tokens = json.loads(manage(env, "shell", "-c", SEED).strip().splitlines()[-1])
        running = Fleet(
            folder=folder,
            env=env,
            database_url=database_url,
            pg=throwaway_postgres,
            redis=throwaway_redis,
            tokens=tokens,
        )
        running.start()
        yield running
    finally:
        if running is not None:
            running.stop()


def upload_answers(fleet: Fleet, slug: str) -> Counter[int]:
    path = f"/api/events/{slug}/photos/"
    return Counter(
        status for method, p, status in fleet.answers() if method == "POST" and p == path
    )


def assert_no_500(fleet: Fleet) -> None:
    errors = [a for a in fleet.answers() if a[2] >= 500 and a[2] != 503]
    assert not errors, f"answers in 5xx other than 503: {errors[:20]}\n{fleet.logs()}"


def assert_unavailable(fleet: Fleet, answer: httpx.Response) -> None:
    described = f"{answer.request.method} {answer.request.url.path} -> {answer.status_code} "
    described += answer.text[:300]
    assert answer.status_code == 503, described
    assert int(answer.headers.get("Retry-After", "0")) > 0, described
    assert answer.json()["error"]["code"] == "unavailable", described


def test_redis_stopped_for_30_s_during_the_watchers_burst_loses_no_photo(fleet, tmp_path):
    slug, count = "redis-burst", 60
    photos_write(tmp_path / "burst", count, seed=1)
    watcher = fleet.watcher_start(tmp_path / "burst", slug)
    try:
        # Redis goes while the burst is under way: a few photos in, most still to come.
        fleet.until(
            lambda: len(fleet.photos(slug)) >= 8 or watcher.poll() is not None,
            timeout=60,
            what="the watcher's first uploads",
            poll=0.05,
        )
        fleet.redis.stop()
        stopped_at = time.monotonic()
        in_before = len(fleet.photos(slug))
        try:
            time.sleep(max(0.0, REDIS_DOWN_S - (time.monotonic() - stopped_at)))
            fleet.assert_running()
        finally:
            fleet.redis.start()
        back_at = time.monotonic()
        run = fleet.watcher_finish(watcher, timeout=180)
    finally:
        if watcher.poll() is None:
            os.killpg(watcher.pid, signal.SIGKILL)
            watcher.wait(timeout=10)

    rows = fleet.photos(slug)
    summary = run.summary()
    print("the watcher's retries:", *run.retries()[:30], sep="\n  ")
    assert run.returncode == 0, run
    assert (summary["failed"], summary["pending"], summary["rejected"]) == (0, 0, 0), run
    assert summary["uploaded"] == len(rows) == count, (summary, len(rows))
    assert summary["on_server"] == count, run
    assert in_before < count, "the burst was over before Redis stopped: nothing was proved"

    # Every photo, those whose message died with Redis's memory and those never handed over.
    fleet.until(
        lambda: fleet.statuses(slug) == {"done": count},
        timeout=RECOVERY_S + PROCESSING_ALLOWANCE_S - (time.monotonic() - back_at),
        what=f"every photo done after Redis came back (statuses {fleet.statuses(slug)})",
        poll=1.0,
    )
    print(
        f"Redis down {REDIS_DOWN_S} s with {in_before} of {count} photos in; every photo done"
        f" {time.monotonic() - back_at:.1f} s after it came back;"
        f" uploads answered {dict(upload_answers(fleet, slug))}"
    )

    answered = upload_answers(fleet, slug)
    assert set(answered) <= {201, 503}, answered
    assert answered[201] == count, answered  # each photo stored once, on its first success
    assert_no_500(fleet)
    assert fleet.health() == {"database": "ok", "broker": "ok", "workers": "ok"}


def test_postgres_restarted_during_uploads_and_processing_loses_nothing(fleet, tmp_path):
    slug, during, after = "postgres-restart", 40, 16
    photos_write(tmp_path / "during", during, seed=2)
    watcher = fleet.watcher_start(tmp_path / "during", slug)
    try:
        fleet.until(
            lambda: (
                (fleet.statuses(slug)["processing"] >= 1 and len(fleet.photos(slug)) >= 8)
                or watcher.poll() is not None
            ),
            timeout=90,
            what="photos both uploading and processing",
            poll=0.05,
        )
        fleet.pg.stop()
        stopped_at = time.monotonic()
        try:
            probes = (
                lambda: fleet.http.get("/api/health/"),
                lambda: fleet.http.get("/api/events/", headers=fleet.auth("staff")),
                lambda: fleet.http.get("/api/my-photos/", headers=fleet.auth("guest")),
                lambda: fleet.http.post(
                    f"/api/events/{slug}/photos/",
                    files={"file": ("probe.jpg", photo_jpeg(99, 0), "image/jpeg")},
                    headers=fleet.auth("staff"),
                ),
            )
            with ThreadPoolExecutor(max_workers=len(probes)) as pool:
                health, *answers = pool.map(lambda probe: probe(), probes)
            assert health.status_code == 503, health.text
            assert health.json()["database"] == "down", health.text
            for answer in answers:
                assert_unavailable(fleet, answer)
            time.sleep(max(0.0, POSTGRES_DOWN_S - (time.monotonic() - stopped_at)))
        finally:
            fleet.pg.start()
        back_at, restarted_at = time.monotonic(), time.time()
        first = fleet.watcher_finish(watcher, timeout=180)
    finally:
        if watcher.poll() is None:
            os.killpg(watcher.pid, signal.SIGKILL)
            watcher.wait(timeout=10)
    summary = first.summary()
    print("the watcher's retries:", *first.retries()[:30], sep="\n  ")
    assert first.returncode == 0, first
    assert (summary["failed"], summary["pending"], summary["rejected"]) == (0, 0, 0), first
    assert summary["uploaded"] + summary["duplicates"] == during, first
    assert summary["on_server"] == len(fleet.photos(slug)) == during, first

    # Nothing lost: the photos whose task died with a connection, or waited in vain for one.
    fleet.until(
        lambda: fleet.statuses(slug) == {"done": during},
        timeout=RECOVERY_S + PROCESSING_ALLOWANCE_S - (time.monotonic() - back_at),
        what=f"every photo done after the restart (statuses {fleet.statuses(slug)})",
        poll=1.0,
    )
    recovered = time.monotonic() - back_at
    rows = fleet.photos(slug)
    print(
        f"PostgreSQL down {POSTGRES_DOWN_S} s with {during} photos uploading and processing;"
        f" all done {recovered:.1f} s after it came back; attempts per photo:"
        f" {dict(Counter(row.attempts for row in rows))}"
    )

    # Again, while the cluster is idle: every process now holds pooled connections, which the
    # restart kills under them. Nothing waits for a connection at this instant.
    fleet.pg.stop()
    fleet.pg.start()
    photos_write(tmp_path / "after", after, seed=3)
    second = fleet.watcher_run(tmp_path / "after", slug, timeout=120)
    assert second.returncode == 0, second
    assert second.summary()["uploaded"] == after, second
    total = during + after
    fleet.until(
        lambda: fleet.statuses(slug) == {"done": total},
        timeout=RECOVERY_S + PROCESSING_ALLOWANCE_S,
        what=f"the photos sent after the restart done (statuses {fleet.statuses(slug)})",
        poll=0.5,
    )

    # No task failed because of a restart: each photo created after one was done on its first
    # attempt, and the cluster logged no traceback once the waits begun during the outage were
    # over (a wait for a connection lasts DB_POOL_TIMEOUT at most).
    since = datetime.fromtimestamp(restarted_at, tz=UTC)
    rows = fleet.photos(slug)
    later = [row for row in rows if row.created_at > since]
    assert len(later) >= after
    assert [row for row in later if row.attempts != 1 or row.error] == []
    failures = fleet.cluster_tracebacks(since=restarted_at + DB_POOL_TIMEOUT_S + 1)
    assert not failures, "the cluster failed after the restart:\n" + "\n".join(failures)[:8000]
    assert_no_500(fleet)
    # The summaries are true: what the watcher counted as uploaded is what the server created.
    # (An upload whose COMMIT reached the server as it was stopped can be answered 503 and
    # found on the retry: the watcher then counts it as a duplicate, which it is.)
    answered = upload_answers(fleet, slug)
    uploaded = first.summary()["uploaded"] + second.summary()["uploaded"]
    assert (answered[201], answered[200]) == (uploaded, summary["duplicates"]), answered
