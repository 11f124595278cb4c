"""Upload benchmark: the watcher against curl, on 100 photos of 12 MP, on one gunicorn.

    .venv/bin/python bench/upload.py [--count 100] [--web-workers 2] [--web-threads 4]

Generates (once; cached in bench/out/) 100 noisy 4000x3000 JPEGs of 3-4 MB, starts FindMe under
gunicorn on loopback with its own SQLite database and media folder, and measures in one run:

  (a) ``python -m watcher DIR --once`` uploading all of them into event A (wall time, including
      the watcher's start-up);
  (b) the baseline: ``curl -F file=@...`` of the same files one after another into event B;
  (c) the server's own time per upload, from the ``Server-Timing: app;dur=`` response header
      when the server sends it, and gunicorn's request time (which includes receiving the body)
      for comparison; p50 and p95 of each.

No worker cluster runs: photos stay queued, which is what an upload costs the web process.
The last line prints both times and their ratio.
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
import django
django.setup()
from rest_framework.authtoken.models import Token
from accounts.models import User
from photos.models import Event
user = User.objects.create_user(username="bench", password="bench-pass-123", is_staff=True)
token = Token.objects.create(user=user).key
for slug in ("bench-watcher", "bench-curl"):
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
    )
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def server_prepare(env: dict[str, str]) -> str:
    for command in (["migrate", "--noinput", "-v0"], ["createcachetable"]):
        subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=300)
    setup = subprocess.run(
        [PYTHON, "-c", SETUP],
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


# --- the two clients ----------------------------------------------------------------------------
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


def run_watcher(folder: Path, base: str, token: str, slug: str, concurrency: int) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [PYTHON, "-m", "watcher", str(folder), "--server", base, "--event", slug]
        + ["--token", token, "--once", "--no-progress", "--concurrency", str(concurrency)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"the watcher failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return elapsed


def run_curl(paths: list[Path], base: str, token: str, slug: str) -> float:
    url = f"{base}/api/events/{slug}/photos/"
    started = time.perf_counter()
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
    return time.perf_counter() - started


# --- the server's side --------------------------------------------------------------------------
LINE = re.compile(
    r'^POST /api/events/(?P<slug>[^/]+)/photos/ (?P<status>\d+) (?P<ms>\d+) "(?P<st>[^"]*)"'
)


def server_times(access_log: Path) -> dict[str, dict[str, list[float]]]:
    """slug -> {"request": gunicorn ms, "app": Server-Timing ms} for each upload."""
    times: dict[str, dict[str, list[float]]] = {}
    for line in access_log.read_text().splitlines():
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
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--web-threads", type=int, default=4, help="threads each (default 4)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="the watcher's --concurrency (default 4)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's database and media")
    args = parser.parse_args()
    if not shutil.which("curl"):
        raise SystemExit("curl is needed for the baseline")

    paths = photos_make(args.count)
    total_mb = sum(p.stat().st_size for p in paths) / 1e6
    for path in paths:  # both clients read from the page cache, not one of them from disk
        path.read_bytes()
    run_dir = Path(tempfile.mkdtemp(prefix="upload-run-", dir=OUT))
    photos_link(paths, run_dir / "photos")
    env = server_env(run_dir)
    log(f"{args.count} photos, {total_mb:.0f} MB; server state in {run_dir}")
    token = server_prepare(env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    access_log = run_dir / "access.log"
    server = server_start(env, port, access_log, args.web_workers, args.web_threads)
    try:
        log("watcher --once ...")
        cpu, web = children_cpu(), server_cpu(server)
        watcher_s = run_watcher(run_dir / "photos", base, token, "bench-watcher", args.concurrency)
        log(
            f"  {watcher_s:.2f} s; CPU: the watcher {children_cpu() - cpu:.2f} s,"
            f" the server {server_cpu(server) - web:.2f} s"
        )
        log("curl, one file after another ...")
        cpu, web = children_cpu(), server_cpu(server)
        curl_s = run_curl(paths, base, token, "bench-curl")
        log(
            f"  {curl_s:.2f} s; CPU: curl {children_cpu() - cpu:.2f} s,"
            f" the server {server_cpu(server) - web:.2f} s"
        )
        counts = {slug: queued_count(base, token, slug) for slug in ("bench-watcher", "bench-curl")}
    finally:
        server_stop(server)
    if any(count != args.count for count in counts.values()):
        raise SystemExit(f"expected {args.count} photos in each event, found {counts}")

    times = server_times(access_log)
    app_all: list[float] = []
    for slug, label in (("bench-watcher", "watcher"), ("bench-curl", "curl")):
        slot = times.get(slug, {"request": [], "app": []})
        app_all += slot["app"]
        log(f"server, {label} run: Server-Timing app {describe(slot['app'])};")
        log(f"    gunicorn request time (with body receive) {describe(slot['request'])}")
    if app_all:
        server_p95 = f"server p95 {percentile(app_all, 95):.0f} ms (Server-Timing app, both runs)"
    else:
        requests = times.get("bench-curl", {}).get("request", [])
        server_p95 = (
            f"server p95 {percentile(requests, 95):.0f} ms (gunicorn request time incl. body"
            " receive; no Server-Timing header)"
            if requests
            else "server p95 n/a"
        )
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    log(f"{args.count} photos, {total_mb:.0f} MB, {os.cpu_count()} cores, load average {load}")
    print(
        f"watcher {watcher_s:.1f} s, curl {curl_s:.1f} s, ratio {watcher_s / curl_s:.2f}"
        f" (watcher/curl); {server_p95}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
