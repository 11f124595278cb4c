"""Soak: the whole stack through a photographer's upload and a live audience, with and without
faults (issue 9).

    .venv/bin/python bench/soak.py            # two passes of 300 s each: about 30 min on 2 cores
    .venv/bin/python bench/soak.py --seconds 60 --photos 150 --attendees 10   # a short look

One invocation runs the same load twice, each pass in a process of its own, on a fresh stack:
a throwaway PostgreSQL and Redis (tests/reliability/servers.py: initdb in a temporary folder and
redis-server, each on a free port on 127.0.0.1), gunicorn (2 workers x 4 threads) and one
``manage.py qcluster`` (3 workers), with the production settings module and its defaults.

- **Photographer**: the real watcher (``python -m watcher DIR``, watching) uploads ``--photos``
  distinct 2000x1500 JPEGs (0.8 MB each; generated once, cached in bench/out/photos-soak/).
  They appear in its folder at a steady pace over the first 80% of ``--seconds``, as a tethered
  camera delivers them.
- **Audience**: ``--attendees`` threads, each a guest with a token and a member of the event,
  read ``GET /api/my-photos/`` every 2-4 s with ``If-None-Match``, as an open gallery polls.
  Each starts with 20 matches in an earlier event. The generated photos show no faces, so a
  stand-in for the face engine (in this process) gives about 40% of the photos that become
  ``done`` one to three of the attendees, stores the matches and makes their galleries stale as
  faces.services does: galleries change while they are read.
- **Faults** (second pass only): at 40% of the window one worker that holds a photo
  (``Photo.claimed_by``, checked to be a process of this cluster) is SIGKILLed; at 50% Redis is
  stopped for 30 s (without persistence: the queued messages die with it).

After the window the watcher is let finish and stopped (SIGTERM: it prints its summary), and
the cluster drains; the drain is bounded (it ends when every photo is done, when nothing has
been done for 180 s, or after ``--drain-max``). Printed for each pass:

- photos lost: answered 201/200 to the watcher but not ``done`` after the drain (must be 0);
- answers in 5xx other than 503, from gunicorn's access log (must be 0);
- gallery latency (client side, whole request) over the window: p50 and p95;
- RSS of the web (gunicorn arbiter + workers) and worker (every qcluster process) trees at the
  start (stack up, before the load) and at the end (after the drain): sum and max per kind.

The last line is the gallery p95 with faults over the p95 without. Exit status 1 when a photo
was lost or a 5xx other than 503 was answered.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reliability.servers import (  # noqa: E402 - after the path is set
    RedisServer,
    client_env,
    free_port,
    postgres_missing,
    postgres_server,
    production_env,
    redis_missing,
    redis_server,
)

OUT = ROOT / "bench" / "out"
PHOTOS = OUT / "photos-soak"
WIDTH, HEIGHT = 2000, 1500
PYTHON = sys.executable
FEED_SHARE = 0.8  # photos arrive over this share of the window
KILL_AT, REDIS_AT, REDIS_DOWN_S = 0.4, 0.5, 30.0
POLL_S = (2.0, 4.0)  # an attendee's pause between two gallery reads
HISTORY_PHOTOS, HISTORY_MATCHES = 200, 20
STALL_S = 180.0  # a drain that has done nothing for this long is over
MANIFEST = ".findme-manifest.sqlite3"
ON_SERVER = ("uploaded", "duplicate")
ACCESS = re.compile(r"^(?P<method>\S+) (?P<path>\S+) (?P<status>\d{3}) (?P<ms>\d+)$")


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --- photos -------------------------------------------------------------------------------------
def photos_make(count: int) -> list[Path]:
    """``count`` distinct 2000x1500 JPEGs of 0.8 MB: a smooth scene with a few bright
    shapes, plus sensor-like noise, so that they neither compress away nor look alike."""
    PHOTOS.mkdir(parents=True, exist_ok=True)
    y = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, WIDTH, dtype=np.float32)[None, :]
    paths = []
    for i in range(count):
        path = PHOTOS / f"SOAK_{i:04d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        if i % 100 == 0:
            log(f"generating photos {i + 1}-{min(count, i + 100)} of {count} in {PHOTOS}")
        rng = np.random.default_rng(10_000 + i)
        phase = rng.uniform(0, 6.3, size=3).astype(np.float32)
        scene = np.stack(
            [
                110 + 70 * np.sin(5 * x + 3 * y + phase[0]),
                120 + 60 * np.cos(4 * y - 2 * x + phase[1]),
                130 + 50 * np.sin(6 * (x + y) + phase[2]),
            ],
            axis=-1,
        )
        for _ in range(3):  # a few blobs: subjects in the frame
            cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.04, 0.12)
            inside = ((x - cx) * WIDTH / HEIGHT) ** 2 + (y - cy) ** 2 < r * r
            scene[inside] = rng.uniform(30, 230, size=3)
        noise = rng.normal(0, 8, size=(HEIGHT, WIDTH, 3)).astype(np.float32)
        pixels = np.clip(scene + noise, 0, 255).astype(np.uint8)
        partial = path.with_suffix(".part")
        Image.fromarray(pixels).save(partial, format="JPEG", quality=90)
        partial.replace(path)  # a half-written photo never sits in the cache under its name
    return paths


# --- statistics ---------------------------------------------------------------------------------
def percentile(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def rss_of(pid: int) -> list[int]:
    """RSS in bytes of a process and its descendants (those that still exist)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    sizes = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            sizes.append(process.memory_info().rss)
    return sizes


def rss_summary(sizes: list[int]) -> dict[str, float]:
    mb = [s / 2**20 for s in sizes]
    return {"n": len(mb), "sum_mb": round(sum(mb), 1), "max_mb": round(max(mb, default=0), 1)}


# --- one pass -----------------------------------------------------------------------------------
def server_env(database_url: str, redis_url: str, run_dir: Path, name: str, workers: int) -> dict:
    env = production_env()
    env.update(
        DJANGO_SECRET_KEY="soak-only-" + "s" * 40,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        MEDIA_ROOT=str(run_dir / "media"),
        # Spooled uploads on the media's file system: storing one is then a rename.
        TMPDIR=str(run_dir / "tmp"),
        Q_CLUSTER_NAME=name,
        CACHE_KEY_PREFIX=name,
        PHOTO_QUEUE_WORKERS=str(workers),
        PYTHONUNBUFFERED="1",
    )
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")


def django_setup(env: dict[str, str]) -> None:
    """This process reads and writes the pass's database as the app does (seed, the stand-in
    for the face engine, the final count), with the same settings as the servers."""
    os.environ.update(env)
    os.environ["LOG_LEVEL"] = "ERROR"  # the app's warnings during the outage are the servers'
    os.environ["DB_MAX_OVERFLOW"] = "4"  # this process's own threads
    import django

    django.setup()


@dataclass
class Seeded:
    staff_token: str
    event_id: int
    slug: str
    attendees: list[tuple[int, str]]  # (user id, token)


def seed(attendees: int, rng: random.Random) -> Seeded:
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from rest_framework.authtoken.models import Token

    from accounts.models import User
    from bench.rows import done_photo
    from events.models import Event, Membership
    from faces.models import Match
    from photos.models import Photo

    with transaction.atomic():
        staff = User.objects.create_user("photographer", password="soak-pass-123", is_staff=True)
        event = Event.objects.create(name="Soak", slug="soak", created_by=staff)
        earlier = Event.objects.create(name="Soak, the day before", slug="soak-earlier")
        unusable = make_password(None)
        users = User.objects.bulk_create(
            [User(username=f"guest{i:03d}", password=unusable) for i in range(attendees)]
        )
        Membership.objects.bulk_create(
            [Membership(user=u, event=e) for u in users for e in (event, earlier)]
        )
        tokens = Token.objects.bulk_create([Token(user=u, key=Token.generate_key()) for u in users])
        history = Photo.objects.bulk_create(
            [done_photo(i, earlier, face_count=3) for i in range(HISTORY_PHOTOS)]
        )
        Match.objects.bulk_create(
            [
                Match(photo=p, event=earlier, user=u, distance=rng.uniform(0.3, 0.5))
                for u in users
                for p in rng.sample(history, HISTORY_MATCHES)
            ]
        )
        staff_token = Token.objects.create(user=staff).key
    return Seeded(
        staff_token=staff_token,
        event_id=event.pk,
        slug=event.slug,
        attendees=[(t.user_id, t.key) for t in tokens],
    )


class Processes:
    """gunicorn and the qcluster, each in a session of its own, logging to files."""

    def __init__(self, env: dict, run_dir: Path, args: argparse.Namespace) -> None:
        self.env, self.run_dir, self.args = env, run_dir, args
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.access_log = run_dir / "access.log"
        self.web: subprocess.Popen | None = None
        self.cluster: subprocess.Popen | None = None

    def _spawn(self, command: list[str], log_name: str) -> subprocess.Popen:
        with (self.run_dir / log_name).open("ab") as out:
            return subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> None:
        self.web = self._spawn(
            [
                str(Path(PYTHON).with_name("gunicorn")),
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.args.web_workers),
                "--threads",
                str(self.args.web_threads),
                "--timeout",
                "60",
                "--access-logfile",
                str(self.access_log),
                "--access-logformat",
                "%(m)s %(U)s %(s)s %(M)s",
            ],
            "gunicorn.log",
        )
        self.cluster = self._spawn([PYTHON, "manage.py", "qcluster"], "qcluster.log")
        import httpx

        deadline = time.monotonic() + 180
        body: object = None
        while True:
            self.check_running()
            try:
                body = httpx.get(f"{self.base}/api/health/", timeout=5).json()
            except (httpx.HTTPError, ValueError) as exc:
                body = f"{type(exc).__name__}: {exc}"
            if isinstance(body, dict) and all(
                body.get(part) == "ok" for part in ("database", "broker", "workers")
            ):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"the stack was not healthy within 180 s: {body}\n{self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        tails = []
        for name in ("gunicorn.log", "qcluster.log"):
            path = self.run_dir / name
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            tails.append(f"--- {name}, last 3000 characters\n{text[-3000:]}")
        return "\n".join(tails)

    def check_running(self) -> None:
        for name, proc in (("gunicorn", self.web), ("qcluster", self.cluster)):
            if proc is None or proc.poll() is not None:
                raise SystemExit(f"{name} exited\n{self.logs()}")

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

    def rss(self) -> dict[str, dict[str, float]]:
        assert self.web is not None and self.cluster is not None
        return {
            "web": rss_summary(rss_of(self.web.pid)),
            "worker": rss_summary(rss_of(self.cluster.pid)),
        }

    def answers(self) -> list[tuple[str, str, int, int]]:
        found = []
        if self.access_log.exists():
            for line in self.access_log.read_text(errors="replace").splitlines():
                match = ACCESS.match(line)
                if match:
                    found.append(
                        (match["method"], match["path"], int(match["status"]), int(match["ms"]))
                    )
        return found


@dataclass
class Sample:
    at: float  # monotonic, when the request was sent
    seconds: float
    status: int  # 0: no answer (connection error or timeout)
    error: str = ""  # what the client raised when there was no answer


class Attendee(threading.Thread):
    """A guest with the gallery open: reads it every few seconds, asking "anything new?"."""

    def __init__(self, base: str, token: str, stop: threading.Event, seed: int) -> None:
        super().__init__(daemon=True, name=f"attendee-{seed}")
        self.base, self.token, self.stop = base, token, stop
        self.rng = random.Random(seed)  # noqa: S311 - load pacing, not security
        self.samples: list[Sample] = []

    def run(self) -> None:
        import httpx

        headers = {"Authorization": f"Token {self.token}"}
        etag = None
        with httpx.Client(base_url=self.base, timeout=30, headers=headers) as http:
            self.stop.wait(self.rng.uniform(0, POLL_S[1]))  # not all at once
            while not self.stop.is_set():
                conditional = {"If-None-Match": etag} if etag else {}
                sent = time.monotonic()
                try:
                    answer = http.get("/api/my-photos/", headers=conditional)
                    status = answer.status_code
                    if status == 200:
                        etag = answer.headers.get("ETag")
                    error = ""
                except httpx.HTTPError as exc:
                    status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
                self.samples.append(Sample(sent, time.monotonic() - sent, status, error))
                self.stop.wait(self.rng.uniform(*POLL_S))


class Recognizer(threading.Thread):
    """Stands in for the face engine, which finds no one in generated photos: as photos of the
    event become done, about 40% are found to show one to three attendees. The matches are
    stored and the attendees' galleries made stale after commit, as faces.services does."""

    def __init__(self, seeded: Seeded, stop: threading.Event, rng: random.Random) -> None:
        super().__init__(daemon=True, name="recognizer")
        self.seeded, self.stop, self.rng = seeded, stop, rng
        self.seen: set[int] = set()
        self.matches = 0
        self.errors: Counter[str] = Counter()

    def run(self) -> None:
        from django.db import close_old_connections

        try:
            while not self.stop.wait(3.0):
                try:
                    self.round()
                except Exception as exc:  # noqa: BLE001 - counted and reported, never fatal
                    self.errors[type(exc).__name__] += 1
                finally:
                    close_old_connections()
        finally:
            from django.db import connection

            connection.close()

    def round(self) -> None:
        from django.db import transaction

        from core.generations import users_generation_bump
        from faces.models import Match
        from photos.models import Photo

        done = Photo.objects.filter(event_id=self.seeded.event_id, status=Photo.Status.DONE)
        new = [pk for pk in done.values_list("pk", flat=True) if pk not in self.seen]
        users = [user_id for user_id, _ in self.seeded.attendees]
        matches = []
        for pk in new:
            self.seen.add(pk)
            if self.rng.random() < 0.4:
                for user_id in self.rng.sample(users, self.rng.randint(1, min(3, len(users)))):
                    matches.append(
                        Match(
                            photo_id=pk,
                            event_id=self.seeded.event_id,
                            user_id=user_id,
                            distance=self.rng.uniform(0.3, 0.5),
                        )
                    )
        if not matches:
            return
        with transaction.atomic():
            Match.objects.bulk_create(matches, ignore_conflicts=True)
            touched = {m.user_id for m in matches}
            transaction.on_commit(lambda: users_generation_bump(touched))
        self.matches += len(matches)


class Feeder(threading.Thread):
    """Puts the photos into the watched folder at a steady pace, as a tethered camera would.
    Hard links: a file appears whole, at once, and costs no copy."""

    def __init__(self, paths: list[Path], folder: Path, seconds: float, stop: threading.Event):
        super().__init__(daemon=True, name="feeder")
        self.paths, self.folder, self.seconds, self.stop = paths, folder, seconds, stop
        self.placed = 0

    def run(self) -> None:
        started = time.monotonic()
        interval = self.seconds / max(1, len(self.paths))
        for i, path in enumerate(self.paths):
            if self.stop.wait(max(0.0, started + i * interval - time.monotonic())):
                return
            target = self.folder / path.name
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
            self.placed += 1


def manifest_states(folder: Path) -> dict[str, tuple[str, int | None]]:
    """path -> (state, photo id) from the watcher's manifest, read as another process would."""
    path = folder / MANIFEST
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT path, state, photo_id FROM files").fetchall()
    except sqlite3.OperationalError:  # the watcher is still creating its table
        return {}
    finally:
        db.close()
    return {name: (state, photo_id) for name, state, photo_id in rows}


def kill_busy_worker(cluster_pid: int, event_id: int) -> tuple[int, int] | None:
    """SIGKILL a worker of this cluster that holds a photo now. Returns (photo id, pid)."""
    from photos.models import Photo

    try:
        ours = {p.pid for p in psutil.Process(cluster_pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return None
    host = socket.gethostname()
    busy = Photo.objects.filter(event_id=event_id, status=Photo.Status.PROCESSING).exclude(
        claimed_by=""
    )
    for photo_id, claimed_by in busy.values_list("pk", "claimed_by"):
        name, _, pid = claimed_by.rpartition(":")
        if name != host[:100] or not pid.isdigit() or int(pid) not in ours:
            continue
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            continue
        return photo_id, int(pid)
    return None


def event_statuses(event_id: int) -> Counter[str]:
    from photos.models import Photo

    return Counter(Photo.objects.filter(event_id=event_id).values_list("status", flat=True))


@dataclass
class Timeline:
    started: float = 0.0
    kill: float | None = None
    killed_photo: int | None = None
    killed_pid: int | None = None
    redis_down: float | None = None
    redis_up: float | None = None
    notes: list[str] = field(default_factory=list)


def load_window(
    args: argparse.Namespace,
    *,
    faults: bool,
    procs: Processes,
    redis: RedisServer,
    seeded: Seeded,
    folder: Path,
    stop: threading.Event,
    timeline: Timeline,
) -> None:
    """The window: photos arrive, attendees read, faults happen on time. Returns at its end
    (and once Redis is back, should the outage outlast it)."""
    assert procs.cluster is not None
    start = timeline.started
    end = start + args.seconds
    next_report = start + 30
    while True:
        now = time.monotonic()
        procs.check_running()
        if faults and timeline.kill is None and now >= start + KILL_AT * args.seconds:
            killed = kill_busy_worker(procs.cluster.pid, seeded.event_id)
            if killed is not None:
                timeline.kill, (timeline.killed_photo, timeline.killed_pid) = time.time(), killed
                log(f"SIGKILLed worker {killed[1]}, which held photo {killed[0]}")
            elif now >= start + KILL_AT * args.seconds + 60:
                timeline.kill = 0.0  # given up: reported, not silently skipped
                timeline.notes.append("no worker held a photo for 60 s: none was killed")
        if faults and timeline.redis_down is None and now >= start + REDIS_AT * args.seconds:
            redis.stop()
            timeline.redis_down = time.time()
            log(f"Redis stopped for {REDIS_DOWN_S:.0f} s")
        if (
            timeline.redis_down is not None
            and timeline.redis_up is None
            and time.time() >= timeline.redis_down + REDIS_DOWN_S
        ):
            redis.start()
            timeline.redis_up = time.time()
            log("Redis started again")
        redis_out = timeline.redis_down is not None and timeline.redis_up is None
        if now >= end and not redis_out:
            return
        if now >= next_report:
            next_report += 30
            states = Counter(state for state, _ in manifest_states(folder).values())
            log(
                f"{now - start:4.0f} s: photos placed {len(list(folder.glob('*.jpg')))},"
                f" on the server {states['uploaded'] + states['duplicate']},"
                f" {dict(event_statuses(seeded.event_id))}"
            )
        stop.wait(0.25)


def run_pass(args: argparse.Namespace) -> dict:
    name, faults = args.run_pass, args.run_pass == "faults"
    rng = random.Random(7)  # noqa: S311 - the same load in both passes
    paths = sorted(PHOTOS.glob("SOAK_*.jpg"))[: args.photos]
    if len(paths) < args.photos:
        raise SystemExit(f"{PHOTOS} holds {len(paths)} photos, {args.photos} wanted")
    OUT.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"soak-{name}-", dir=OUT))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    watcher: subprocess.Popen | None = None
    with contextlib.ExitStack() as stack:
        if not args.keep:
            # A pass that fails keeps its files (logs, manifest) for the post-mortem.
            stack.push(lambda kind, *_: kind is None and shutil.rmtree(run_dir, ignore_errors=True))
        log(f"[{name}] starting a throwaway PostgreSQL and Redis; files in {run_dir}")
        pg = stack.enter_context(postgres_server())
        redis = stack.enter_context(redis_server())
        env = server_env(
            pg.create_database("findme"),
            redis.url,
            run_dir,
            f"soak-{name}-{os.getpid()}",
            args.queue_workers,
        )
        manage(env, "migrate", "--noinput", "-v0")
        django_setup(env)
        seeded = seed(args.attendees, rng)
        procs = Processes(env, run_dir, args)
        stack.callback(procs.stop)
        procs.start()
        # Let the fresh processes settle (imports, first requests) before the first reading.
        time.sleep(5)
        rss_start = procs.rss()
        log(f"[{name}] stack up on {procs.base}; RSS {rss_start}")

        folder = run_dir / "camera"
        folder.mkdir()
        watcher_out = (run_dir / "watcher.out").open("w")
        watcher_err = (run_dir / "watcher.err").open("w")
        stack.callback(watcher_out.close)
        stack.callback(watcher_err.close)
        watcher_env = client_env()
        watcher = subprocess.Popen(
            [PYTHON, "-m", "watcher", str(folder), "--server", procs.base, "--event"]
            + [seeded.slug, "--token", seeded.staff_token, "--no-progress"],
            cwd=ROOT,
            env=watcher_env,
            stdout=watcher_out,
            stderr=watcher_err,
            start_new_session=True,
        )

        def watcher_kill() -> None:
            if watcher.poll() is None:
                os.killpg(watcher.pid, signal.SIGKILL)
                watcher.wait(timeout=10)

        stack.callback(watcher_kill)
        stack.callback(stop.set)  # first of the callbacks to run: every thread stops

        timeline = Timeline(started=time.monotonic())
        attendees = [
            Attendee(procs.base, token, stop, seed=i)
            for i, (_, token) in enumerate(seeded.attendees)
        ]
        recognizer = Recognizer(seeded, stop, rng)
        feeder = Feeder(paths, folder, FEED_SHARE * args.seconds, stop)
        threads = [*attendees, recognizer, feeder]
        for thread in threads:
            thread.start()
        log(
            f"[{name}] load: {args.photos} photos over {FEED_SHARE * args.seconds:.0f} s,"
            f" {args.attendees} attendees; window {args.seconds} s"
            + ("; faults: a worker SIGKILLed at 40%, Redis down 30 s at 50%" if faults else "")
        )
        load_window(
            args,
            faults=faults,
            procs=procs,
            redis=redis,
            seeded=seeded,
            folder=folder,
            stop=stop,
            timeline=timeline,
        )
        window_end = time.monotonic()
        stop.set()
        for thread in threads:
            thread.join(timeout=40)
        done_in_window = event_statuses(seeded.event_id)["done"]

        # The watcher finishes what it was given, then stops and prints its summary.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            states = manifest_states(folder)
            settled = [s for s, _ in states.values() if s in (*ON_SERVER, "rejected", "failed")]
            if len(states) >= len(paths) and len(settled) == len(states):
                break
            time.sleep(1)
        watcher.send_signal(signal.SIGTERM)
        try:
            watcher_status = watcher.wait(timeout=120)
        except subprocess.TimeoutExpired:
            watcher_kill()
            watcher_status = None
        watcher_out.flush()
        summary = (run_dir / "watcher.out").read_text(errors="replace")

        # The drain: bounded by progress and by --drain-max.
        drain_started = time.monotonic()
        last_done, last_progress = -1, time.monotonic()
        next_report = drain_started + 30
        while True:
            statuses = event_statuses(seeded.event_id)
            unfinished = statuses["queued"] + statuses["processing"]
            if statuses["done"] != last_done:
                last_done, last_progress = statuses["done"], time.monotonic()
            if unfinished == 0:
                break
            if time.monotonic() - last_progress > STALL_S:
                timeline.notes.append(f"the drain stalled for {STALL_S:.0f} s: {dict(statuses)}")
                break
            if time.monotonic() - drain_started > args.drain_max:
                timeline.notes.append(f"the drain hit --drain-max: {dict(statuses)}")
                break
            if time.monotonic() >= next_report:
                next_report += 30
                log(f"[{name}] draining: {dict(statuses)}")
            time.sleep(1)
        drain_s = time.monotonic() - drain_started
        rss_end = procs.rss()

        result = pass_result(
            name=name,
            seeded=seeded,
            folder=folder,
            procs=procs,
            attendees=attendees,
            recognizer=recognizer,
            timeline=timeline,
            window_end=window_end,
        )
        result.update(
            seconds=args.seconds,
            done_in_window=done_in_window,
            drain_s=round(drain_s, 1),
            rss_start=rss_start,
            rss_end=rss_end,
            watcher_status=watcher_status,
            watcher_summary=summary.strip(),
            notes=timeline.notes,
            run_dir=str(run_dir) if args.keep else None,
        )
        return result


def pass_result(
    *,
    name: str,
    seeded: Seeded,
    folder: Path,
    procs: Processes,
    attendees: list[Attendee],
    recognizer: Recognizer,
    timeline: Timeline,
    window_end: float,
) -> dict:
    from photos.models import Photo

    rows = {
        pk: (status, attempts, processed_at)
        for pk, status, attempts, processed_at in Photo.objects.filter(
            event_id=seeded.event_id
        ).values_list("pk", "status", "attempts", "processed_at")
    }
    states = manifest_states(folder)
    answered_ids = [pid for state, pid in states.values() if state in ON_SERVER and pid]
    lost = sorted(pid for pid in answered_ids if rows.get(pid, ("missing",))[0] != "done")
    not_sent = sorted(p for p, (state, _) in states.items() if state not in ON_SERVER)

    answers = procs.answers()
    over = [a for a in answers if a[2] >= 500 and a[2] != 503]
    uploads = Counter(
        a[2] for a in answers if a[0] == "POST" and re.fullmatch(r"/api/events/[^/]+/photos/", a[1])
    )
    samples = [s for a in attendees for s in a.samples if timeline.started <= s.at < window_end]
    latency_ms = [s.seconds * 1000 for s in samples if s.status in (200, 304)]
    result = {
        "name": name,
        "photos": len(states),
        "rows": len(rows),
        "statuses": dict(Counter(v[0] for v in rows.values())),
        "attempts": dict(Counter(v[1] for v in rows.values())),
        "lost": len(lost),
        "lost_ids": lost[:50],
        "not_sent": len(not_sent),
        "uploads": {str(k): v for k, v in sorted(uploads.items())},
        "answers": len(answers),
        "answers_503": sum(1 for a in answers if a[2] == 503),
        "answers_5xx_not_503": len(over),
        "answers_5xx_not_503_examples": [" ".join(map(str, a)) for a in over[:10]],
        "gallery": {
            "requests": len(samples),
            "statuses": {str(k): v for k, v in sorted(Counter(s.status for s in samples).items())},
            "p50_ms": percentile(latency_ms, 50),
            "p95_ms": percentile(latency_ms, 95),
            # Requests with no answer are counted here, not in the percentiles.
            "no_answer": [
                f"{s.error} (sent at {s.at - timeline.started:.0f} s, after {s.seconds:.1f} s)"
                for s in samples
                if s.status == 0
            ],
        },
        "matches_made": recognizer.matches,
        "recognizer_errors": dict(recognizer.errors),
    }
    if timeline.redis_down is not None and timeline.redis_up is not None:
        offset = time.time() - time.monotonic()  # Samples are monotonic; the timeline is wall
        during = [
            s.seconds * 1000
            for s in samples
            if timeline.redis_down <= s.at + offset < timeline.redis_up and s.status in (200, 304)
        ]
        result["gallery"]["p95_ms_redis_down"] = percentile(during, 95)
        result["gallery"]["requests_redis_down"] = len(during)
        result["redis_down_s"] = round(timeline.redis_up - timeline.redis_down, 1)
    if timeline.killed_photo is not None:
        status, attempts, processed_at = rows.get(timeline.killed_photo, ("missing", 0, None))
        result["killed"] = {
            "photo": timeline.killed_photo,
            "pid": timeline.killed_pid,
            "status": status,
            "attempts": attempts,
            "done_again_after_s": (
                round(processed_at.timestamp() - timeline.kill, 1) if processed_at else None
            ),
        }
    return result


# --- the report ---------------------------------------------------------------------------------
def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def fmt_rss(rss: dict) -> str:
    return (
        f"web {rss['web']['sum_mb']:.0f} MB (max {rss['web']['max_mb']:.0f}, {rss['web']['n']} proc),"
        f" worker {rss['worker']['sum_mb']:.0f} MB (max {rss['worker']['max_mb']:.0f},"
        f" {rss['worker']['n']} proc)"
    )


def commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=7"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def report(results: dict[str, dict], args: argparse.Namespace, started: str) -> int:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"soak at {args.commit}, started {started}: {args.photos} photos of {WIDTH}x{HEIGHT} over {args.seconds} s per pass,"
        f" {args.attendees} attendees every {POLL_S[0]:.0f}-{POLL_S[1]:.0f} s;"
        f" gunicorn {args.web_workers}x{args.web_threads}, qcluster {args.queue_workers} workers;"
        f" {os.cpu_count()} cores, load average now {load}"
    )
    failed = False
    for name in ("baseline", "faults"):
        r = results[name]
        title = "no faults" if name == "baseline" else "faults"
        g = r["gallery"]
        print(f"[{title}]")
        print(
            f"  photos lost: {r['lost']} (must be 0) of {r['photos']} sent;"
            f" not sent: {r['not_sent']}; rows {r['statuses']}; attempts {r['attempts']}"
        )
        print(
            f"  answers 5xx other than 503: {r['answers_5xx_not_503']} (must be 0)"
            f" of {r['answers']}; 503: {r['answers_503']}; uploads answered {r['uploads']}"
        )
        print(
            f"  gallery: {g['requests']} requests {g['statuses']}; p50 {fmt_ms(g['p50_ms'])},"
            f" p95 {fmt_ms(g['p95_ms'])}"
            + (
                f"; p95 while Redis was down {fmt_ms(g['p95_ms_redis_down'])}"
                f" ({g['requests_redis_down']} requests)"
                if "p95_ms_redis_down" in g
                else ""
            )
        )
        for failure in g["no_answer"][:10]:
            print(f"  gallery request without an answer: {failure}")
        print(f"  RSS at the start: {fmt_rss(r['rss_start'])}")
        print(f"  RSS at the end:   {fmt_rss(r['rss_end'])}")
        print(
            f"  photos done within the window: {r['done_in_window']}; drain after it:"
            f" {r['drain_s']:.0f} s; matches made {r['matches_made']}"
            + (f"; stand-in errors {r['recognizer_errors']}" if r["recognizer_errors"] else "")
        )
        if "killed" in r:
            k = r["killed"]
            print(
                f"  SIGKILLed worker {k['pid']} held photo {k['photo']}: {k['status']} after"
                f" {k['attempts']} attempts, done again {k['done_again_after_s']} s after the kill"
            )
        if "redis_down_s" in r:
            print(f"  Redis was down {r['redis_down_s']} s")
        summary = r["watcher_summary"].splitlines()
        watcher_line = "; ".join(line.strip() for line in summary[1:] if line.strip())
        print(f"  watcher: exit {r['watcher_status']}; {watcher_line}")
        for note in r["notes"]:
            print(f"  note: {note}")
        if r["run_dir"]:
            print(f"  files kept in {r['run_dir']}")
        failed |= r["lost"] > 0 or r["answers_5xx_not_503"] > 0
    base, fault = results["baseline"]["gallery"]["p95_ms"], results["faults"]["gallery"]["p95_ms"]
    ratio = f"{fault / base:.2f}" if base and fault else "n/a"
    print(f"gallery p95 with faults {fmt_ms(fault)} / without {fmt_ms(base)}: ratio {ratio}")
    return 1 if failed else 0


# --- the command --------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=300, help="the load window of each pass")
    parser.add_argument("--photos", type=int, default=1000, help="photos the watcher uploads")
    parser.add_argument("--attendees", type=int, default=50, help="galleries read at once")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--web-threads", type=int, default=4, help="threads each (4)")
    parser.add_argument("--queue-workers", type=int, default=3, help="qcluster workers (3)")
    parser.add_argument(
        "--drain-max", type=int, default=1800, help="longest drain after the window, s (1800)"
    )
    parser.add_argument("--keep", action="store_true", help="keep each pass's logs and media")
    parser.add_argument(
        "--commit",
        default=None,
        help="what the report names as the code measured (default: git describe of this"
        " checkout, read at the start); give it when running from an export",
    )
    parser.add_argument("--run-pass", choices=("baseline", "faults"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    args = parse_args()
    if args.run_pass:
        # A SIGTERM unwinds like Ctrl-C: every server and process of the pass is stopped.
        signal.signal(signal.SIGTERM, interrupted)
        result = run_pass(args)
        args.result.write_text(json.dumps(result, default=str))
        return 0
    if reason := postgres_missing() or redis_missing():
        raise SystemExit(f"the soak needs a throwaway PostgreSQL and Redis: {reason}")
    args.commit = args.commit or commit()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    photos_make(args.photos)
    results = {}
    forwarded = [
        f"--seconds={args.seconds}",
        f"--photos={args.photos}",
        f"--attendees={args.attendees}",
        f"--web-workers={args.web_workers}",
        f"--web-threads={args.web_threads}",
        f"--queue-workers={args.queue_workers}",
        f"--drain-max={args.drain_max}",
        *(["--keep"] if args.keep else []),
    ]
    for name in ("baseline", "faults"):
        result_file = Path(tempfile.mkstemp(prefix=f"soak-{name}-", suffix=".json")[1])
        try:
            done = subprocess.run(
                [PYTHON, __file__, "--run-pass", name, "--result", str(result_file), *forwarded],
                cwd=ROOT,
                check=False,
            )
            text = result_file.read_text()
            if done.returncode != 0 or not text:
                raise SystemExit(f"the {name} pass failed (exit {done.returncode})")
            results[name] = json.loads(text)
        finally:
            result_file.unlink(missing_ok=True)
    return report(results, args, started)


if __name__ == "__main__":
    raise SystemExit(main())
