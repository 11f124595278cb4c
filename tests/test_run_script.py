"""scripts/run, the quick start's first command: it prints where to click, serves, works the
queue, and stops with everything it started, however it is told to stop."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import threading
import time

import httpx
import psutil
import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.watcher.helpers import Collected, start_watcher, wait_until

pytestmark = pytest.mark.cluster

# What selects another database, broker, storage or settings module: the quick start runs on
# the embedded defaults, whatever the test run itself was given.
NOT_INHERITED = {
    "DATABASE_URL",
    "REDIS_URL",
    "AWS_STORAGE_BUCKET_NAME",
    "FACE_ENGINE",
    "DJANGO_SETTINGS_MODULE",
    "FINDME_TEST_RUN_ID",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Running:
    def __init__(self, tmp_path) -> None:
        self.port = free_port()
        # Where the quick start puts its sample photos and the staff token (by default
        # ./example-photos and ./.findme-token in the checkout).
        self.photos = tmp_path / "example-photos"
        self.token_file = tmp_path / "findme-token"
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        env.update(
            SQLITE_PATH=str(tmp_path / "db.sqlite3"),
            MEDIA_ROOT=str(tmp_path / "media"),
            PORT=str(self.port),
            PHOTO_QUEUE_WORKERS="1",
            WEB_WORKERS="1",
            Q_CLUSTER_NAME="findme",
            DEMO_PHOTOS_DIR=str(self.photos),
            DEMO_TOKEN_FILE=str(self.token_file),
        )
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            ["scripts/run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
        self.pgid = self.proc.pid
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None, f"scripts/run exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout} s:\n{self.output}"
            time.sleep(0.2)

    def tree(self) -> list[psutil.Process]:
        """The script and every process it started, whatever session they run in."""
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def stop_group(self, sig: int, timeout: float) -> float:
        """Signal the script's process group, as a terminal's Ctrl-C or a supervisor does;
        return how long until every process it had started was gone."""
        started_with = self.tree()
        assert any("qcluster" in " ".join(p.cmdline()) for p in started_with), (
            [p.cmdline() for p in started_with],
            self.output,
        )
        started = time.monotonic()
        os.killpg(self.pgid, sig)
        _, alive = psutil.wait_procs(started_with, timeout=timeout)
        if alive:
            names = [" ".join(p.cmdline()) for p in alive]
            for proc in alive:
                proc.kill()
            pytest.fail(f"still running {timeout} s after the signal: {names}\n{self.output}")
        self.proc.wait(timeout=5)
        return time.monotonic() - started


@pytest.fixture
def running(tmp_path):
    run = Running(tmp_path)
    try:
        run.wait_for("Stop with Ctrl-C.", timeout=120)
        yield run
    finally:
        if run.proc.poll() is None:
            for proc in run.tree():
                proc.kill()


def test_prints_where_to_click_serves_and_stops_on_ctrl_c(running):
    base = f"http://127.0.0.1:{running.port}"
    assert f"Open:        {base}/" in running.output
    assert f"Join link:   {base}/e/demo/?code=" in running.output
    assert "python -m watcher" in running.output

    def health() -> dict:
        try:
            return httpx.get(f"{base}/api/health/", timeout=5).json()
        except httpx.HTTPError:
            return {}

    deadline = time.monotonic() + 60
    everything_up = {
        "database": "ok",
        "broker": "ok",
        "cache": "ok",
        "storage": "ok",
        "workers": "ok",
    }
    while health() != everything_up:
        assert time.monotonic() < deadline, f"not healthy: {health()}\n{running.output}"
        time.sleep(0.5)

    # Shorter than the script's own 30 s deadline: a clean stop, not the watchdog's kill.
    assert running.stop_group(signal.SIGINT, timeout=25) < 25
    assert "killing it" not in running.output


def test_the_printed_watcher_command_uploads_the_example_photos_with_the_token_from_a_file(
    running,
):
    """What `make run` prints for the watcher is a command to paste: a folder of real photos,
    outside the source packages, and the token in a file only its owner reads, never in argv."""
    printed = re.search(r"Watcher:\s+(.+)", running.output)[1]
    argv = shlex.split(printed)
    assert argv[:4] == [".venv/bin/python", "-m", "watcher", str(running.photos)]
    assert argv[argv.index("--token-file") + 1] == str(running.token_file)
    assert "--token" not in argv
    assert stat.S_IMODE(running.token_file.stat().st_mode) == 0o600
    token = running.token_file.read_text().strip()
    assert len(token) == 40
    assert token not in running.output

    samples = sorted(running.photos.glob("*.jpg"))
    assert len(samples) >= 3
    for sample in samples:
        with Image.open(sample) as image:
            assert image.format == "JPEG"
            darkest, brightest = image.convert("L").getextrema()
            assert brightest - darkest > 100  # something drawn, not a blank
    assert f"Photos:      {running.photos}/ holds {len(samples)} photos" in running.output

    watcher = start_watcher(*argv)  # from the checkout's root, as printed
    seen = Collected(watcher)
    try:
        wait_until(
            lambda: (
                len(re.findall(r"^\S+ sample-\d+\.jpg: new, photo \d+", seen.out, re.M))
                == len(samples)
            ),
            timeout=60,
            what="a line per sample photo",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the watcher printed:\n{seen.out}\n{seen.err}") from None
    finally:
        watcher.send_signal(signal.SIGINT)
        seen.finish()
    assert watcher.returncode == 0, seen.out + seen.err
    assert f"uploaded:   {len(samples)} (this run)" in seen.out
    assert "Warning" not in seen.err

    # Ctrl-C on make run afterwards, with the photos just handed to the workers.
    assert running.stop_group(signal.SIGINT, timeout=25) < 25
    assert "killing it" not in running.output


def test_stops_everything_when_the_whole_group_gets_sigterm(running):
    """``timeout``, systemd's default KillMode and some IDEs signal every process at once.
    django-q2's cluster can then hang in its own shutdown (its sentinel dies holding a lock the
    main process waits for); the script must not wait for it forever."""
    running.wait_for("[findme] running.", timeout=60)  # django-q2: "Q Cluster <name> [findme] …"
    assert running.stop_group(signal.SIGTERM, timeout=25) < 25
    assert "killing it" not in running.output
