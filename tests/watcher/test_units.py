"""The watcher's parts without a server: which files count, settling, the retry policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from watcher.client import RetryPolicy, retry_after_of
from watcher.folder import Settler, is_photo, scan
from watcher.manifest import Manifest


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("IMG_1.jpg", True),
        ("IMG_1.JPEG", True),
        ("a/b/IMG_1.heic", True),
        ("x.png", True),
        ("x.webp", True),
        ("x.HEIF", True),
        ("notes.txt", False),
        ("raw.cr2", False),
        (".hidden.jpg", False),
        (".cache/IMG_1.jpg", False),
        ("IMG_1.jpg.part", False),
        ("IMG_1.jpg.crdownload", False),
        ("IMG_1.jpg.tmp", False),
        ("IMG_1.jpg~", False),
        ("~$IMG_1.jpg", False),
        ("._IMG_1.jpg", False),
        (".findme-manifest.sqlite3", False),
    ],
)
def test_only_visible_finished_image_files_are_photos(tmp_path: Path, name: str, taken: bool):
    assert is_photo(tmp_path / name, tmp_path) is taken


def test_scan_does_not_enter_hidden_directories(tmp_path: Path):
    (tmp_path / ".trash").mkdir()
    (tmp_path / ".trash" / "a.jpg").write_bytes(b"x")
    (tmp_path / "day1").mkdir()
    (tmp_path / "day1" / "b.jpg").write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in scan(tmp_path)] == ["day1/b.jpg"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_growing_file_is_held_until_it_stops_changing(tmp_path: Path):
    clock = Clock()
    path = tmp_path / "a.jpg"
    path.write_bytes(b"12")
    os.utime(path, ns=(0, 5_000_000_000_000_000_000))  # written "just now" (in the future)
    settler = Settler(1.0, monotonic=clock, wallclock=lambda: 5_000_000_000.0)
    settler.add(path)
    assert settler.poll() == []
    clock.now += 0.6
    with path.open("ab") as fh:
        fh.write(b"34")
    os.utime(path, ns=(0, 5_000_000_000_000_000_001))
    assert settler.poll() == []  # it changed: the interval starts again
    clock.now += 0.9
    assert settler.poll() == []
    clock.now += 0.2
    ((ready, st),) = settler.poll()
    assert ready == path and st.st_size == 4
    assert len(settler) == 0


def test_a_file_untouched_for_the_interval_is_ready_at_once(tmp_path: Path):
    path = tmp_path / "old.jpg"
    path.write_bytes(b"1234")
    os.utime(path, (1, 1))
    settler = Settler(1.0)
    settler.add(path)
    assert [p for p, _ in settler.poll()] == [path]


def test_a_vanished_file_is_dropped(tmp_path: Path):
    path = tmp_path / "gone.jpg"
    path.write_bytes(b"1")
    settler = Settler(10.0)
    settler.add(path)
    path.unlink()
    assert settler.poll() == []
    assert len(settler) == 0


def test_backoff_grows_with_jitter_up_to_the_cap():
    policy = RetryPolicy(base=0.5, cap=30.0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (60, 30.0)]:
        delays = [policy.backoff(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_retry_after_overrides_a_shorter_backoff_and_is_capped():
    policy = RetryPolicy(base=0.1, cap=0.2, max_retry_after=60.0)
    assert 5.0 <= policy.delay(0, 5.0) <= 5.5
    assert 60.0 <= policy.delay(0, 3600.0) <= 61.0
    assert policy.delay(0, None) <= 0.2


@pytest.mark.parametrize(
    ("header", "expected"),
    [("30", 30.0), ("", None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_header_forms(header: str, expected: float | None):
    response = httpx.Response(503, headers={"Retry-After": header} if header else {})
    assert retry_after_of(response) == expected


def test_the_manifest_keeps_one_row_per_event_and_path(tmp_path: Path):
    wedding = Manifest(tmp_path, "wedding")
    wedding.record(["a.jpg"], size=1, mtime_ns=2, sha256="a" * 64, state="pending")
    wedding.set_state(["a.jpg"], "uploaded", sha256="a" * 64, photo_id=9)
    wedding.set_state(["a.jpg"], "rejected", sha256="b" * 64)  # other bytes: ignored
    other = Manifest(tmp_path, "party")
    assert other.get("a.jpg") is None
    entry = wedding.get("a.jpg")
    assert (entry.state, entry.photo_id) == ("uploaded", 9)
    assert wedding.by_hash("a" * 64) == entry
    assert wedding.counts()["uploaded"] == 1
    wedding.close()
    other.close()


def test_the_watcher_imports_no_django():
    probe = (
        "import sys, watcher.cli, watcher.pipeline;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'rest_framework'});"
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_help_documents_every_option():
    result = subprocess.run(
        [sys.executable, "-m", "watcher", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for option in (
        "--server", "--event", "--token", "--once", "--concurrency", "--settle", "--timeout",
        "--max-backoff", "--give-up-after", "--rescan", "--no-progress", "exit status",
    ):  # fmt: skip
        assert option in result.stdout
