"""The watcher against a live FindMe server (pytest-django's live_server, in this process).

The watcher runs as a real subprocess (``python -m watcher``), as a photographer runs it.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from rest_framework.authtoken.models import Token

from photos.models import Photo
from watcher.manifest import FILENAME

from .helpers import (
    Collected,
    TcpForwarder,
    free_port,
    jpeg_noise,
    manifest_ready,
    manifest_rows,
    recorded_requests,
    run_watcher,
    sha256_of,
    start_watcher,
    wait_until,
    watcher_command,
)

pytestmark = pytest.mark.django_db(transaction=True)

UPLOAD = "/photos/"
CHECK = "/photos/check/"


@pytest.fixture
def token(staff_user) -> str:
    return Token.objects.create(user=staff_user).key


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "photos"
    path.mkdir()
    return path


def write_photos(folder: Path, count: int, *, size: tuple[int, int] = (320, 240)) -> dict[str, str]:
    """name -> sha256 of ``count`` distinct JPEGs."""
    hashes = {}
    for i in range(count):
        data = jpeg_noise(i, size)
        (folder / f"IMG_{i:04d}.jpg").write_bytes(data)
        hashes[f"IMG_{i:04d}.jpg"] = sha256_of(data)
    return hashes


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def test_a_file_written_in_pieces_is_uploaded_once_and_whole(live_server, event, token, folder):
    data = jpeg_noise(1, (900, 700))
    pieces = [data[i : i + len(data) // 8 + 1] for i in range(0, len(data), len(data) // 8 + 1)]
    assert len(pieces) >= 8
    command = watcher_command(folder, live_server.url, event.slug, token, "--settle", "1.5")
    with recorded_requests() as log:
        proc = start_watcher(*command)
        try:
            wait_until(lambda: manifest_ready(folder), timeout=20, what="the watcher to start")
            target = folder / "IMG_0001.jpg"
            # A camera's import tool writing slowly: each pause (0.3 s) is well under --settle,
            # so that a busy machine oversleeping a pause does not end the file early.
            with target.open("wb") as fh:
                for piece in pieces:
                    fh.write(piece)
                    fh.flush()
                    time.sleep(0.3)
            wait_until(
                lambda: manifest_rows(folder).get("IMG_0001.jpg", ("",))[0] == "uploaded",
                timeout=20,
                what="the upload",
            )
            time.sleep(1.0)  # room for a second, wrong upload to show up if there were one
        finally:
            out, err = stop(proc)
    assert proc.returncode == 0, err
    photo = Photo.objects.get(event=event)
    assert photo.sha256 == sha256_of(data)
    with photo.original.open("rb") as stored:
        assert stored.read() == data
    assert log.count("POST", UPLOAD) == 1
    assert manifest_rows(folder) == {"IMG_0001.jpg": ("uploaded", sha256_of(data), photo.pk, "")}
    assert "rejected:   0" in out


def test_a_kill_midway_then_a_restart_leaves_no_duplicate_and_no_loss(
    live_server, event, token, folder
):
    hashes = write_photos(folder, 20, size=(1000, 750))
    command = watcher_command(
        folder, live_server.url, event.slug, token, "--once", "--concurrency", "1", "--settle", "0"
    )
    proc = start_watcher(*command)
    try:
        wait_until(
            lambda: Photo.objects.filter(event=event).count() >= 4,
            timeout=30,
            poll=0.005,
            what="a few uploads",
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.5)  # an upload whose body was all sent may still finish on the server
    on_server = Photo.objects.filter(event=event).count()
    assert on_server < 20, "the kill came too late to test anything"
    db = sqlite3.connect(folder / FILENAME)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()

    with recorded_requests() as log:
        result = run_watcher(*command)
    assert result.returncode == 0, result.stdout + result.stderr
    photos = Photo.objects.filter(event=event)
    assert photos.count() == 20
    assert set(photos.values_list("sha256", flat=True)) == set(hashes.values())
    # Only what the server did not have was sent again; the rest was settled by the check.
    assert log.count("POST", UPLOAD) == 20 - on_server
    rows = manifest_rows(folder)
    assert set(rows) == set(hashes)
    assert {name: row[1] for name, row in rows.items()} == hashes
    assert {row[0] for row in rows.values()} <= {"uploaded", "duplicate"}


def test_a_server_down_at_start_then_up_gets_everything(live_server, event, token, folder):
    hashes = write_photos(folder, 5)
    port = free_port()
    command = watcher_command(
        folder,
        f"http://127.0.0.1:{port}",
        event.slug,
        token,
        "--once",
        "--settle",
        "0",
        "--max-backoff",
        "1",
    )
    proc = start_watcher(*command)
    try:
        time.sleep(3)
        assert proc.poll() is None, "the watcher gave up while the server was down"
        assert Photo.objects.count() == 0
        with TcpForwarder(port, urlsplit(live_server.url).port):
            out, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 0, out + err
    assert "retrying" in err  # it did meet the closed port
    assert set(Photo.objects.filter(event=event).values_list("sha256", flat=True)) == set(
        hashes.values()
    )
    assert {row[0] for row in manifest_rows(folder).values()} == {"uploaded"}


def test_a_full_queue_is_retried_and_never_marked_rejected(
    live_server, event, token, folder, settings, staff_user
):
    settings.PHOTO_QUEUE_MAX_SIZE = 1
    waiting = Photo.objects.create(
        event=event, sha256="0" * 64, original="x.jpg", content_type="image/jpeg", size=1
    )
    hashes = write_photos(folder, 1)
    command = watcher_command(
        folder,
        live_server.url,
        event.slug,
        token,
        "--once",
        "--settle",
        "0",
        "--give-up-after",
        "2",
    )
    with recorded_requests() as log:
        first = run_watcher(*command)
    # The server asks for 30 s; with 2 s of patience the watcher stops and keeps the file.
    assert first.returncode == 1, first.stdout + first.stderr
    assert log.count("POST", UPLOAD) == 1
    ((state, _, _, message),) = manifest_rows(folder).values()
    assert state == "failed"
    assert "queue_full" in message
    assert "failed:     1" in first.stdout

    Photo.objects.filter(pk=waiting.pk).update(status=Photo.Status.DONE)
    second = run_watcher(*command)
    assert second.returncode == 0, second.stdout + second.stderr
    assert manifest_rows(folder)["IMG_0000.jpg"][0] == "uploaded"
    assert Photo.objects.filter(event=event, sha256=hashes["IMG_0000.jpg"]).exists()


def test_a_rejected_file_is_reported_with_the_reason_and_not_retried(
    live_server, event, token, folder
):
    hashes = write_photos(folder, 2)
    (folder / "notes.jpg").write_text("call the caterer at 5pm\n")
    # What the server says about this file, asked directly.
    with (folder / "notes.jpg").open("rb") as fh:
        direct = httpx.post(
            f"{live_server.url}/api/events/{event.slug}/photos/",
            files={"file": ("notes.jpg", fh)},
            headers={"Authorization": f"Token {token}"},
            timeout=30,
        )
    assert direct.status_code == 400
    reason = direct.json()["error"]
    command = watcher_command(folder, live_server.url, event.slug, token, "--once", "--settle", "0")

    # The first run shows its progress bars; rejected is an answer, not a failure (status 0).
    first = run_watcher(
        *watcher_command(
            folder, live_server.url, event.slug, token, "--once", "--settle", "0", progress=True
        )
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "files: 100%" in first.stderr and "3/3" in first.stderr
    rows = manifest_rows(folder)
    assert rows["notes.jpg"][0] == "rejected"
    assert rows["notes.jpg"][3] == f"{reason['code']}: {reason['message']}"
    assert "rejected:   1" in first.stdout
    assert f"notes.jpg: {reason['code']}: {reason['message']}" in first.stdout
    assert Photo.objects.filter(event=event).count() == len(hashes)

    with recorded_requests() as log:
        second = run_watcher(*command)
    assert second.returncode == 0, second.stdout + second.stderr
    assert log.requests == []  # nothing left to ask or send
    assert f"notes.jpg: {reason['code']}: {reason['message']}" in second.stdout
    assert manifest_rows(folder)["notes.jpg"][0] == "rejected"


def test_a_renamed_or_copied_photo_is_recognised_by_its_bytes(live_server, event, token, folder):
    hashes = write_photos(folder, 2)
    command = watcher_command(folder, live_server.url, event.slug, token, "--once", "--settle", "0")
    assert run_watcher(*command).returncode == 0
    (folder / "IMG_0000.jpg").rename(folder / "renamed.jpg")
    sub = folder / "backup"
    sub.mkdir()
    (sub / "copy.JPG").write_bytes((folder / "IMG_0001.jpg").read_bytes())
    # Skipped: hidden, temporary, not a photo.
    (folder / ".hidden.jpg").write_bytes(jpeg_noise(50))
    (folder / "IMG_9.jpg.part").write_bytes(jpeg_noise(51))
    (folder / "IMG_9.jpg~").write_bytes(jpeg_noise(52))
    (folder / "readme.txt").write_text("hello")

    with recorded_requests() as log:
        result = run_watcher(*command)
    assert result.returncode == 0, result.stdout + result.stderr
    assert log.requests == []  # known bytes need no question and no upload
    rows = manifest_rows(folder)
    assert set(rows) == {"IMG_0000.jpg", "IMG_0001.jpg", "renamed.jpg", "backup/copy.JPG"}
    assert rows["renamed.jpg"][:2] == ("duplicate", hashes["IMG_0000.jpg"])
    assert rows["backup/copy.JPG"][:2] == ("duplicate", hashes["IMG_0001.jpg"])
    assert Photo.objects.filter(event=event).count() == 2


def test_a_wrong_token_stops_the_run_and_rejects_nothing(live_server, event, token, folder):
    hashes = write_photos(folder, 2)
    wrong = watcher_command(folder, live_server.url, event.slug, "not-a-token", "--once")
    result = run_watcher(*wrong, "--settle", "0")
    # Not the photos' fault: nothing is marked rejected, and the run says why it stopped.
    assert result.returncode == 2, result.stdout + result.stderr
    assert "401" in result.stderr
    assert {row[0] for row in manifest_rows(folder).values()} == {"pending"}

    right = watcher_command(folder, live_server.url, event.slug, token, "--once", "--settle", "0")
    assert run_watcher(*right).returncode == 0
    assert {name: row[:2] for name, row in manifest_rows(folder).items()} == {
        name: ("uploaded", sha) for name, sha in hashes.items()
    }


def test_photos_in_a_folder_created_while_watching_are_uploaded(live_server, event, token, folder):
    proc = start_watcher(
        *watcher_command(folder, live_server.url, event.slug, token, "--settle", "0.3")
    )
    try:
        wait_until(lambda: manifest_ready(folder), timeout=20, what="the watcher to start")
        day2 = folder / "day2" / "ceremony"
        day2.mkdir(parents=True)
        data = jpeg_noise(9)
        (day2 / "IMG_0100.jpg").write_bytes(data)
        (day2 / "IMG_0100.jpg.tmp").write_bytes(jpeg_noise(10))  # a temporary file: skipped
        wait_until(
            lambda: manifest_rows(folder).get("day2/ceremony/IMG_0100.jpg", ("",))[0] == "uploaded",
            timeout=20,
            what="the upload",
        )
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0, out + err
    assert list(Photo.objects.filter(event=event).values_list("sha256", flat=True)) == [
        sha256_of(data)
    ]
    assert set(manifest_rows(folder)) == {"day2/ceremony/IMG_0100.jpg"}


# One line per file in watch mode: "12:03:04 IMG_0001.jpg: new, photo 17  [3/7, 2.4 files/s]".
LINE = re.compile(
    r"^\d\d:\d\d:\d\d (?P<name>\S+): (?P<result>new|duplicate|rejected|failed)"
    r"(?:, (?P<detail>.*?))?  \[(?P<done>\d+)/(?P<total>\d+), (?P<rate>[\d.]+) files/s\]$",
    re.MULTILINE,
)


def test_watch_mode_prints_a_line_per_file_and_a_bar_that_reaches_n_of_n(
    live_server, event, token, folder
):
    hashes = write_photos(folder, 5)
    (folder / "copies").mkdir()
    (folder / "copies" / "again.jpg").write_bytes((folder / "IMG_0002.jpg").read_bytes())
    (folder / "notes.jpg").write_text("call the caterer at 5pm\n")
    proc = start_watcher(
        *watcher_command(folder, live_server.url, event.slug, token, "--settle", "0", progress=True)
    )
    seen = Collected(proc)
    try:
        wait_until(
            lambda: len(LINE.findall(seen.out)) == 7, timeout=30, what="seven lines", poll=0.1
        )
        # The bar is read while the watcher still watches: closing it would draw it anyway.
        wait_until(
            lambda: re.search(r"files: 100%\|[^\r\n]*\| 7/7 ", seen.err),
            timeout=10,
            what="the files bar at 7/7",
        )
        assert proc.poll() is None
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the watcher printed:\n{seen.out}\n{seen.err}") from None
    finally:
        proc.send_signal(signal.SIGTERM)
        seen.finish()
    assert proc.returncode == 0, seen.err

    lines = {match["name"]: match for match in LINE.finditer(seen.out)}
    photo_ids = dict(Photo.objects.filter(event=event).values_list("sha256", "pk"))
    for name in ("IMG_0000.jpg", "IMG_0001.jpg", "IMG_0003.jpg", "IMG_0004.jpg"):
        assert (lines[name]["result"], lines[name]["detail"]) == (
            "new",
            f"photo {photo_ids[hashes[name]]}",
        )
    # Two files with the same bytes: whichever went first is new, the other its duplicate.
    twins = sorted(lines[name]["result"] for name in ("IMG_0002.jpg", "copies/again.jpg"))
    assert twins == ["duplicate", "new"]
    for name in ("IMG_0002.jpg", "copies/again.jpg"):
        assert lines[name]["detail"] == f"photo {photo_ids[hashes['IMG_0002.jpg']]}"
    rejection = manifest_rows(folder)["notes.jpg"][3]
    assert (lines["notes.jpg"]["result"], lines["notes.jpg"]["detail"]) == ("rejected", rejection)
    assert sorted(int(match["done"]) for match in lines.values()) == list(range(1, 8))
    assert {match["total"] for match in lines.values()} == {"7"}
    assert all(float(match["rate"]) > 0 for match in lines.values())
    assert "s/file" not in seen.out + seen.err
    assert len(photo_ids) == 5


def test_the_token_comes_from_the_environment_or_a_file_and_stays_out_of_the_process_list(
    live_server, event, token, tmp_path
):
    bare = [sys.executable, "-m", "watcher"]
    options = ["--server", live_server.url, "--event", event.slug, "--settle", "0"]
    for way, seed in (("env", 31), ("file", 32)):
        folder = tmp_path / way
        folder.mkdir()
        data = jpeg_noise(seed)
        (folder / "IMG_1.jpg").write_bytes(data)
        if way == "env":
            proc = start_watcher(*bare, str(folder), *options, env={"FINDME_TOKEN": token})
        else:
            proc = start_watcher(*watcher_command(folder, live_server.url, event.slug, token))
        seen = Collected(proc)
        try:
            wait_until(
                lambda folder=folder: (
                    manifest_rows(folder).get("IMG_1.jpg", ("",))[0] == "uploaded"
                ),
                timeout=30,
                what=f"the upload with the token from the {way}",
            )
            # What `ps` shows every user of the machine.
            argv = psutil.Process(proc.pid).cmdline()
        finally:
            proc.send_signal(signal.SIGTERM)
            seen.finish()
        assert proc.returncode == 0, seen.err
        assert not any(token in arg for arg in argv), argv
        assert "Warning" not in seen.err
        assert Photo.objects.filter(event=event, sha256=sha256_of(data)).exists()
