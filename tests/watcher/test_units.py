"""The watcher's parts without a server: which files count, settling, the retry policy, what
it prints, and the command line's checks of its token and folder."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from watcher import manifest as m
from watcher.client import RetryPolicy, retry_after_of
from watcher.folder import Settler, findme_checkout_of, is_photo, scan, source_tree_reason
from watcher.manifest import FILENAME, Manifest
from watcher.progress import Outcome, TerminalProgress


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
        "--server", "--event", "--token-file", "--token", "FINDME_TOKEN", "--once",
        "--concurrency", "--settle", "--timeout", "--max-backoff", "--give-up-after", "--rescan",
        "--no-progress", "exit status",
    ):  # fmt: skip
        assert option in result.stdout


# --- what the photographer sees -------------------------------------------------------------------
def files_frames(err: str) -> list[str]:
    """Every drawing of the files bar, in order (tqdm ends each with \\r or \\n)."""
    return [frame for frame in re.split(r"[\r\n]", err) if frame.startswith("files:")]


def test_the_files_bar_shows_n_of_n_as_soon_as_the_last_file_is_done():
    """Not only when the bar is closed: a watcher that keeps watching never closes it, and tqdm
    skipped the last redraw when it came within 0.1 s of the one before (issue 12: "15/16")."""
    err = io.StringIO()
    progress = TerminalProgress(bars=True, lines=False, out=io.StringIO(), err=err)
    progress.add(16, 16 * 1000)
    for i in range(16):
        progress.done(Outcome(f"IMG_{i:04d}.jpg", m.UPLOADED, 100 + i), 1000)
    last = files_frames(err.getvalue())[-1]
    assert "100%" in last and " 16/16 " in last, last
    assert "s/file" not in err.getvalue()
    progress.close()


def test_each_line_names_the_file_its_result_its_photo_and_the_bursts_rate():
    """The rate counts the files of the current burst over its own duration: the hour spent
    waiting for the next photo does not turn it into "3600 s/file"."""
    clock = Clock()
    out = io.StringIO()
    progress = TerminalProgress(
        bars=False, lines=True, out=out, err=io.StringIO(), clock=clock, timestamps=False
    )
    progress.add(4, 4000)
    for outcome in (
        Outcome("IMG_0001.jpg", m.UPLOADED, 17),
        Outcome("IMG_0002.jpg", m.UPLOADED, 18),
        Outcome("copy.jpg", m.DUPLICATE, 17, "same bytes as IMG_0001.jpg"),
        Outcome("notes.jpg", m.REJECTED, None, "unsupported_type: not an image"),
    ):
        clock.now += 0.5
        progress.done(outcome, 1000)
    clock.now += 3600  # the event goes quiet for an hour
    progress.add(2, 2000)
    clock.now += 0.25
    progress.done(
        Outcome("IMG_0003.jpg", m.DUPLICATE, None, "the server already had these bytes"), 0
    )
    clock.now += 0.75
    progress.done(Outcome("IMG_0004.jpg", m.FAILED, None, "HTTP 503 unavailable: down"), 0)
    assert out.getvalue().splitlines() == [
        "IMG_0001.jpg: new, photo 17  [1/4, 2 files/s]",
        "IMG_0002.jpg: new, photo 18  [2/4, 2 files/s]",
        "copy.jpg: duplicate, photo 17  [3/4, 2 files/s]",
        "notes.jpg: rejected, unsupported_type: not an image  [4/4, 2 files/s]",
        "IMG_0003.jpg: duplicate, the server already had these bytes  [5/6, 4 files/s]",
        "IMG_0004.jpg: failed, HTTP 503 unavailable: down (tried again at the next rescan)"
        "  [6/6, 2 files/s]",
    ]
    progress.close()


def test_a_file_given_back_does_not_count_in_the_rate_or_the_total():
    clock = Clock()
    out = io.StringIO()
    progress = TerminalProgress(
        bars=False, lines=True, out=out, err=io.StringIO(), clock=clock, timestamps=False
    )
    progress.add(2, 2000)
    progress.add(-1, -1000)  # it changed while it was hashed: it settles again, later
    clock.now += 4
    progress.done(Outcome("a.jpg", m.UPLOADED, 1), 1000)
    assert out.getvalue() == "a.jpg: new, photo 1  [1/1, 0.25 files/s]\n"


# --- the command line without a server ------------------------------------------------------------
def watcher(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FINDME_", "DJANGO_"))}
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


# Nothing listens on port 9 (discard): a run that reached the network would fail, not pass.
OFFLINE = ("--server", "http://127.0.0.1:9", "--event", "wedding", "--once", "--no-progress")


def test_without_a_token_the_run_stops_and_says_where_to_put_it(tmp_path: Path):
    result = watcher(str(tmp_path), *OFFLINE)
    assert result.returncode == 2
    assert "set FINDME_TOKEN, or give --token-file PATH" in result.stderr


def test_an_empty_folder_is_named_in_a_warning(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "IMG_1.jpg.part").write_bytes(b"still copying")
    result = watcher(str(tmp_path), *OFFLINE, env={"FINDME_TOKEN": "x" * 40})
    assert result.returncode == 0, result.stderr
    assert f"Warning: {tmp_path} holds no photos (.heic .heif .jpeg .jpg .png .webp" in (
        result.stderr
    )
    assert "nothing to upload" in result.stderr


def test_a_token_file_readable_by_others_is_used_with_a_warning(tmp_path: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    secret = tmp_path / "token"
    secret.write_text("x" * 40 + "\n")
    secret.chmod(0o644)
    result = watcher(str(folder), *OFFLINE, "--token-file", str(secret))
    assert result.returncode == 0, result.stderr
    assert f"{secret} can be read by other users of this machine: chmod 600 {secret}" in (
        result.stderr
    )
    secret.chmod(0o600)
    assert "chmod" not in watcher(str(folder), *OFFLINE, "--token-file", str(secret)).stderr


def test_an_empty_or_missing_token_file_stops_the_run(tmp_path: Path):
    empty = tmp_path / "token"
    empty.write_text("\n")
    result = watcher(str(tmp_path), *OFFLINE, "--token-file", str(empty))
    assert result.returncode == 2
    assert f"the token file {empty} is empty" in result.stderr
    result = watcher(str(tmp_path), *OFFLINE, "--token-file", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "cannot read the token file" in result.stderr


def test_the_token_on_the_command_line_still_works_but_warns_about_ps(tmp_path: Path):
    result = watcher(str(tmp_path), *OFFLINE, "--token", "x" * 40)
    assert result.returncode == 0, result.stderr
    assert "--token shows the token to every user of this machine (ps" in result.stderr


@pytest.mark.parametrize(
    ("layout", "target", "reason"),
    [
        (["pkg/__init__.py", "pkg/models.py"], "pkg", "it is a Python package"),
        (
            ["pkg/__init__.py", "pkg/static/logo.jpg"],
            "pkg/static",
            "it is inside the Python package",
        ),
        (["project/pyproject.toml", "project/a.jpg"], "project", "it holds pyproject.toml"),
        (["scripts/tool.py", "scripts/a.jpg"], "scripts", "it holds Python source (tool.py)"),
    ],
)
def test_a_source_tree_is_refused_and_gets_no_manifest(
    tmp_path: Path, layout: list[str], target: str, reason: str
):
    for name in layout:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    folder = tmp_path / target
    result = watcher(str(folder), *OFFLINE, env={"FINDME_TOKEN": "x" * 40})
    assert result.returncode == 2
    assert f"{folder} looks like source code, not a folder of photos ({reason}" in result.stderr
    assert not (folder / FILENAME).exists()


def test_findme_own_photos_package_is_refused(tmp_path: Path):
    """What `make run` used to print: the app's own source package as the folder of photos."""
    result = watcher(str(ROOT / "photos"), *OFFLINE, env={"FINDME_TOKEN": "x" * 40})
    assert result.returncode == 2
    assert "looks like source code" in result.stderr
    assert not (ROOT / "photos" / FILENAME).exists()


def test_a_folder_inside_a_findme_checkout_gets_a_warning_except_the_example_folder(
    tmp_path: Path,
):
    checkout = tmp_path / "findme"
    for name in ("manage.py", "watcher/cli.py", "media/x.txt", "example-photos/day1/x.txt"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("")
    token = {"FINDME_TOKEN": "x" * 40}
    media = watcher(str(checkout / "media"), *OFFLINE, env=token)
    assert media.returncode == 0, media.stderr
    assert f"{checkout / 'media'} is inside the FindMe checkout {checkout}" in media.stderr
    for example in (checkout / "example-photos", checkout / "example-photos" / "day1"):
        result = watcher(str(example), *OFFLINE, env=token)
        assert result.returncode == 0, result.stderr
        assert "FindMe checkout" not in result.stderr
    # And this checkout: its example folder is the one `make run` fills.
    assert findme_checkout_of(ROOT / "example-photos") is None
    assert findme_checkout_of(ROOT / "media") == ROOT
    assert source_tree_reason(ROOT / "example-photos") is None


def test_the_rate_of_a_finished_burst_holds_while_the_folder_is_quiet():
    clock = Clock()
    err = io.StringIO()
    progress = TerminalProgress(bars=True, lines=False, out=io.StringIO(), err=err, clock=clock)
    progress.add(2, 2000)
    for name in ("a.jpg", "b.jpg"):
        clock.now += 0.5
        progress.done(Outcome(name, m.UPLOADED, 1), 1000)
    clock.now += 600
    progress.add(1, 1000)
    progress.add(-1, -1000)  # it was still being written: back to settling, no new burst yet
    assert files_frames(err.getvalue())[-1].endswith(", 2 files/s]")
    progress.close()
