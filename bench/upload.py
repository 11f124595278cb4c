"""Upload benchmark: the watcher against curl at the same concurrency, on 12 MP photos.

    .venv/bin/python bench/upload.py [--count 100] [--rounds 5] [--concurrency 4]

Generates (once; cached in bench/out/) 100 noisy 4000x3000 JPEGs of 3-4 MB, starts FindMe under
gunicorn on loopback with its own SQLite database and media folder, and measures in one run:

  (a) ``python -m watcher DIR --once --concurrency 4`` uploading all of them into a fresh event
      (wall time, including the watcher's start-up, hashing, the check request and its manifest);
  (b) the baseline: one ``curl --parallel --parallel-max 4`` process sending the same files
      into another fresh event: the same concurrency, kept-alive connections, no hashing, no
      check, no manifest;
  (a) and (b) alternate over several rounds (A B, then B A, ...), so that both share the
      machine's noise and neither always runs on a warmer server;
  (c) once, curl one file after another (a process per file): the naive script the watcher
      replaces, a secondary figure;
  (d) the server's own time per upload, from the ``Server-Timing: app;dur=`` response header,
      and gunicorn's request time (which includes receiving the body); p50 and p95 of each.

No worker cluster runs: photos stay queued, which is what an upload costs the web process.
The last line prints the medians of (a) and (b) and their ratio, the headline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PHOTOS = OUT / "photos-12mp"
PYTHON = sys.executable
WIDTH, HEIGHT = 4000, 3000
ACCESS_FORMAT = '%(m)s %(U)s %(s)s %(M)s "%({server-timing}o)s"'

SETUP = """
import json
import sys
import django
django.setup()
from rest_framework.authtoken.models import Token
from accounts.models import User
from events.models import Event
user = User.objects.create_user(username="bench", password="bench-pass-123", is_staff=True)
token = Token.objects.create(user=user).key
for slug in sys.argv[1:]:
    Event.objects.create(name=slug, slug=slug, created_by=user)
print(json.dumps({"token": token}))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- photos -------------------------------------------------------------------------------------
def photos_make(count: int) -> list[Path]:
    """``count`` distinct 12 MP JPEGs: a smooth picture plus noise, so they don't compress away."""
    PHOTOS.mkdir(parents=True, exist_ok=True)
    y = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, WIDTH, dtype=np.float32)[None, :]
    paths = []
    for i in range(count):
        path = PHOTOS / f"BENCH_{i:04d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        if i == 0 or i % 10 == 9:
            log(f"generating photos ({i + 1}/{count}) in {PHOTOS}")
        rng = np.random.default_rng(i)
        phase = float(i)
        base = np.stack(
            [
                120 + 80 * np.sin(6 * x + 2 * y + phase),
                100 + 90 * np.cos(4 * y + 3 * x + phase),
                140 + 60 * np.sin(5 * (x + y) + phase),
            ],
            axis=-1,
        )
        noise = rng.normal(0, 10, size=(HEIGHT, WIDTH, 3)).astype(np.float32)
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        partial = path.with_suffix(".part")
        Image.fromarray(pixels).save(partial, format="JPEG", quality=90)
        partial.replace(path)  # a half-written photo never sits in the cache under its name
    return paths


def photos_link(paths: list[Path], folder: Path) -> None:
    """A fresh folder (and so a fresh manifest) with the same files, without copying bytes."""
    folder.mkdir(parents=True)
    for path in paths:
        try:
            os.link(path, folder / path.name)
        except OSError:
            shutil.copy2(path, folder / path.name)


# --- the server ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(run_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "DJANGO_", "AWS_", "PHOTO_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="1",
        SQLITE_PATH=str(run_dir / "db.sqlite3"),
        MEDIA_ROOT=str(run_dir / "media"),
        # Spooled uploads on the media's file system: storing one is then a rename.
        TMPDIR=str(run_dir / "tmp"),
        LOG_LEVEL="WARNING",
        # Several rounds queue several hundred photos and no worker drains them: the queue's
        # back-pressure (503 beyond PHOTO_QUEUE_MAX_SIZE) must not answer instead.
        PHOTO_QUEUE_MAX_SIZE="100000",
    )
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def server_prepare(env: dict[str, str], slugs: list[str]) -> str:
    for command in (["migrate", "--noinput", "-v0"], ["createcachetable"]):
        subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=300)
    setup = subprocess.run(
        [PYTHON, "-c", SETUP, *slugs],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(setup.stdout.strip().splitlines()[-1])["token"]


def server_start(
    env: dict[str, str], port: int, access_log: Path, workers: int, threads: int
) -> subprocess.Popen:
    gunicorn = Path(PYTHON).with_name("gunicorn")
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "120",
            "--access-logfile",
            str(access_log),
            "--access-logformat",
            ACCESS_FORMAT,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(access_log.with_name("gunicorn.err"), "w"),  # noqa: SIM115
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited ({proc.returncode}); see {access_log.parent}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health/", timeout=5):
                return proc
        except urllib.error.HTTPError:
            return proc  # it answers: up (health may say 503 without workers)
        except OSError:
            time.sleep(0.2)
    server_stop(proc)
    raise SystemExit("gunicorn did not answer within 60 s")


def server_stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def queued_count(base: str, token: str, slug: str) -> int:
    request = urllib.request.Request(
        f"{base}/api/events/{slug}/", headers={"Authorization": f"Token {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return sum(json.load(answer)["photos"].values())


# --- the clients --------------------------------------------------------------------------------
def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu(proc: subprocess.Popen) -> float:
    """CPU seconds used so far by gunicorn's master and workers: a figure the load of other
    processes on the machine inflates far less than wall time."""
    total = 0.0
    parent = psutil.Process(proc.pid)
    for process in [parent, *parent.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def run_watcher(folder: Path, base: str, token: str, slug: str, concurrency: int) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "watcher", str(folder), "--server", base, "--event", slug]
        + ["--token", token, "--once", "--no-progress", "--concurrency", str(concurrency)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"the watcher failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


def _quoted(text: str) -> str:
    """A value for a curl config file (double-quoted: backslash and quote escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_curl_parallel(
    paths: list[Path],
    base: str,
    token: str,
    slug: str,
    concurrency: int,
    config: Path,
    *,
    expect: str = "201",
) -> None:
    """One curl process, ``concurrency`` transfers at a time on kept-alive connections: the
    same concurrency as the watcher, without its hashing, check request or manifest.
    ``expect``: every answer's status (200 when the event already holds the photos)."""
    url = f"{base}/api/events/{slug}/photos/"
    transfers = [
        "\n".join(
            (
                f"url = {_quoted(url)}",
                f"header = {_quoted(f'Authorization: Token {token}')}",
                f"form = {_quoted(f'file=@{path}')}",
                'output = "/dev/null"',
                'write-out = "%{http_code}\\n"',
            )
        )
        for path in paths
    ]
    # A config file keeps 100 transfers (and the token) off the command line.
    config.write_text("\nnext\n".join(transfers) + "\n")
    # (-s before -K leaves curl 7.88's parallel progress meter on; this turns it off.)
    result = subprocess.run(
        ["curl", "--no-progress-meter", "--parallel", "--parallel-max", str(concurrency)]
        + ["-K", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    codes = result.stdout.split()
    if result.returncode != 0 or len(codes) != len(paths) or set(codes) != {expect}:
        raise SystemExit(
            f"curl --parallel failed ({result.returncode}): codes {sorted(set(codes))},"
            f" {len(codes)} of {len(paths)} answers; {result.stderr[-2000:]}"
        )


def run_curl_sequential(paths: list[Path], base: str, token: str, slug: str) -> None:
    url = f"{base}/api/events/{slug}/photos/"
    for path in paths:
        result = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}"]
            + ["-H", f"Authorization: Token {token}", "-F", f"file=@{path}", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.stdout.strip() != "201":
            raise SystemExit(f"curl got {result.stdout.strip()} for {path}: {result.stderr}")


def measured(label: str, server: subprocess.Popen, run) -> float:
    """Wall seconds of ``run()``; logs them with the client's and the server's CPU seconds."""
    cpu, web = children_cpu(), server_cpu(server)
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    log(
        f"  {label:<16} {elapsed:6.2f} s; CPU: client {children_cpu() - cpu:.2f} s,"
        f" server {server_cpu(server) - web:.2f} s; load {os.getloadavg()[0]:.1f}"
    )
    return elapsed


# --- the server's side --------------------------------------------------------------------------
LINE = re.compile(
    r'^POST /api/events/(?P<slug>[^/]+)/photos/ (?P<status>\d+) (?P<ms>\d+) "(?P<st>[^"]*)"'
)


def server_times(access_log: Path, lines: int) -> dict[str, dict[str, list[float]]]:
    """slug -> {"request": gunicorn ms, "app": Server-Timing ms} for each upload of the log's
    first ``lines`` lines."""
    times: dict[str, dict[str, list[float]]] = {}
    for line in access_log.read_text().splitlines()[:lines]:
        match = LINE.match(line)
        if not match or not match["status"].startswith("2"):
            continue
        slot = times.setdefault(match["slug"], {"request": [], "app": []})
        slot["request"].append(float(match["ms"]))
        app = re.search(r"app;dur=([0-9.]+)", match["st"])
        if app:
            slot["app"].append(float(app[1]))
    return times


def percentile(values: list[float], pct: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def describe(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {percentile(values, 50):.0f} ms, p95 {percentile(values, 95):.0f} ms (n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="photos (default 100)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of watcher + parallel curl (default 5)"
    )
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--web-threads", type=int, default=4, help="threads each (default 4)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="the watcher's --concurrency and curl's --parallel-max (default 4)",
    )
    parser.add_argument(
        "--no-sequential", action="store_true", help="skip the one-file-at-a-time curl run"
    )
    parser.add_argument(
        "--no-rerun",
        action="store_true",
        help="skip the second run into an event that already holds every photo",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's database and media")
    args = parser.parse_args()
    if not shutil.which("curl"):
        raise SystemExit("curl is needed for the baseline")

    paths = photos_make(args.count)
    total_mb = sum(p.stat().st_size for p in paths) / 1e6
    for path in paths:  # every client reads from the page cache, not one of them from disk
        path.read_bytes()
    run_dir = Path(tempfile.mkdtemp(prefix="upload-run-", dir=OUT))
    rounds = range(1, args.rounds + 1)
    slugs = ["bench-warmup", "bench-sequential"]
    slugs += [f"bench-{kind}-{r}" for r in rounds for kind in ("watcher", "curl")]
    env = server_env(run_dir)
    log(f"{args.count} photos, {total_mb:.0f} MB; server state in {run_dir}")
    token = server_prepare(env, slugs)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    access_log = run_dir / "access.log"
    server = server_start(env, port, access_log, args.web_workers, args.web_threads)
    watcher_s: list[float] = []
    curl_s: list[float] = []
    sequential_s: float | None = None
    rerun_s: dict[str, float] = {}
    try:
        # Every gunicorn thread has served an upload before anything is timed.
        warm = paths[: args.web_workers * args.web_threads]
        run_curl_parallel(warm, base, token, "bench-warmup", len(warm), run_dir / "curl-warmup.cfg")

        def watcher(r: int) -> None:
            folder = run_dir / f"photos-{r}"  # a fresh folder, so an empty manifest
            photos_link(paths, folder)
            watcher_s.append(
                measured(
                    f"watcher #{r}",
                    server,
                    lambda: run_watcher(
                        folder, base, token, f"bench-watcher-{r}", args.concurrency
                    ),
                )
            )

        def curl(r: int) -> None:
            config = run_dir / f"curl-{r}.cfg"
            curl_s.append(
                measured(
                    f"curl --parallel #{r}",
                    server,
                    lambda: run_curl_parallel(
                        paths, base, token, f"bench-curl-{r}", args.concurrency, config
                    ),
                )
            )

        log(
            f"watcher and curl --parallel-max {args.concurrency}, alternating, {args.rounds} rounds"
        )
        for r in rounds:
            # A B, then B A: neither always goes first on a server the other has just warmed.
            first, second = (watcher, curl) if r % 2 else (curl, watcher)
            first(r)
            second(r)
        if not args.no_sequential:
            log("curl, one file after another (a process per file) ...")
            sequential_s = measured(
                "curl sequential",
                server,
                lambda: run_curl_sequential(paths, base, token, "bench-sequential"),
            )
        # Only first uploads count in the server's figures: the re-runs below answer 200 at once.
        first_uploads = len(access_log.read_text().splitlines())
        if not args.no_rerun:
            # What hashing, the check and the manifest buy: the photographer runs again from a
            # fresh folder copy (or another laptop: no manifest) into an event that has them all.
            log("again, into an event that already holds every photo ...")
            folder = run_dir / "photos-again"
            photos_link(paths, folder)
            rerun_s["watcher"] = measured(
                "watcher again",
                server,
                lambda: run_watcher(folder, base, token, "bench-watcher-1", args.concurrency),
            )
            rerun_s["curl"] = measured(
                "curl again",
                server,
                lambda: run_curl_parallel(
                    paths,
                    base,
                    token,
                    "bench-curl-1",
                    args.concurrency,
                    run_dir / "curl-again.cfg",
                    expect="200",
                ),
            )
        counts = {
            slug: queued_count(base, token, slug)
            for slug in slugs
            if slug != "bench-warmup" and not (slug == "bench-sequential" and args.no_sequential)
        }
    finally:
        server_stop(server)
    if any(count != args.count for count in counts.values()):
        raise SystemExit(f"expected {args.count} photos in each event, found {counts}")

    times = server_times(access_log, first_uploads)
    kinds = {"watcher": "bench-watcher-", "curl --parallel": "bench-curl-"}
    if sequential_s is not None:
        kinds["curl sequential"] = "bench-sequential"
    app_all: list[float] = []
    for label, prefix in kinds.items():
        app: list[float] = []
        request: list[float] = []
        for slug, slot in times.items():
            if slug.startswith(prefix):
                app += slot["app"]
                request += slot["request"]
        app_all += app
        log(f"server, {label}: Server-Timing app {describe(app)};")
        log(f"    gunicorn request time (with body receive) {describe(request)}")
    server_p95 = (
        f"server p95 {percentile(app_all, 95):.0f} ms (Server-Timing app, all runs)"
        if app_all
        else "server p95 n/a (no Server-Timing header)"
    )
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    log(f"{args.count} photos, {total_mb:.0f} MB, {os.cpu_count()} cores, load average {load}")
    ratios = [w / c for w, c in zip(watcher_s, curl_s, strict=True)]
    log("ratio per round (watcher / curl --parallel): " + ", ".join(f"{x:.2f}" for x in ratios))
    watcher_med, curl_med = statistics.median(watcher_s), statistics.median(curl_s)
    if sequential_s is not None:
        log(
            f"secondary: watcher {watcher_med:.1f} s vs curl one file at a time"
            f" {sequential_s:.1f} s: ratio {watcher_med / sequential_s:.2f}"
        )
    if rerun_s:
        log(
            f"secondary, again into an event that holds them all: watcher {rerun_s['watcher']:.1f} s"
            f" (nothing sent) vs curl --parallel {rerun_s['curl']:.1f} s (every byte sent again):"
            f" ratio {rerun_s['watcher'] / rerun_s['curl']:.2f}"
        )
    print(
        f"watcher {watcher_med:.1f} s vs curl --parallel-max {args.concurrency}"
        f" {curl_med:.1f} s (medians of {args.rounds}): ratio {watcher_med / curl_med:.2f}"
        f" (watcher/parallel curl; goal <= 1.0); {server_p95}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
