"""What the watcher tests share: photos made with Pillow, the watcher as a subprocess, the
manifest read from outside, a TCP forwarder, and a log of the requests the live server saw."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import ROOT
from watcher.manifest import FILENAME


def jpeg_noise(seed: int, size: tuple[int, int] = (320, 240), quality: int = 90) -> bytes:
    """A JPEG whose bytes differ for every seed (noise does not compress away)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def token_file(directory: Path, token: str) -> Path:
    """The token in a file only its owner reads, as `make run` writes it."""
    path = directory / f"token-{sha256_of(token.encode())[:12]}"
    path.write_text(f"{token}\n")
    path.chmod(0o600)
    return path


def watcher_command(
    folder: Path, server: str, event: str, token: str, *extra: str, progress: bool = False
) -> list[str]:
    """The watcher as a photographer runs it: the token in a file next to the folder, never on
    the command line."""
    command = [sys.executable, "-m", "watcher", str(folder), "--server", server]
    command += ["--event", event, "--token-file", str(token_file(folder.parent, token)), *extra]
    return command if progress else [*command, "--no-progress"]


def watcher_env(**extra: str) -> dict[str, str]:
    # The watcher is a client: nothing of the test's Django configuration may leak into it.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "FINDME_"))
    }
    return {**env, **extra}


def run_watcher(
    *command: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(command),
        cwd=ROOT,
        env=watcher_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_watcher(*command: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        list(command),
        cwd=ROOT,
        env=watcher_env(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Collected:
    """A running process's stdout and stderr, read as they come by two threads, so that a test
    can look at what was on the screen before the process ended."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self._chunks: dict[str, list[str]] = {"out": [], "err": []}
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read, args=(proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, "err"), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream: io.TextIOBase, key: str) -> None:
        # One character at a time: progress bars end their frames with \r, not \n.
        while char := stream.read(1):
            with self._lock:
                self._chunks[key].append(char)

    @property
    def out(self) -> str:
        with self._lock:
            return "".join(self._chunks["out"])

    @property
    def err(self) -> str:
        with self._lock:
            return "".join(self._chunks["err"])

    def finish(self, timeout: float = 30) -> None:
        """Wait for the process and for the readers to reach the end of both streams."""
        self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=timeout)


def manifest_rows(folder: Path) -> dict[str, tuple[str, str, int | None, str]]:
    """path -> (state, sha256, photo_id, message), read as another process would."""
    path = folder / FILENAME
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT path, state, sha256, photo_id, message FROM files").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the watcher is still creating it
            return {}
        raise
    finally:
        db.close()
    return {row[0]: tuple(row[1:]) for row in rows}


def manifest_ready(folder: Path) -> bool:
    path = folder / FILENAME
    if not path.exists():
        return False
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return bool(
            db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='files'").fetchone()
        )
    finally:
        db.close()


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpForwarder:
    """Listens on a port and pipes every connection to another: a server that 'comes up'."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", listen_port), reuse_port=False)
        self.server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TcpForwarder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class RequestLog:
    """The (method, path) of every request the in-process live server handles."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, sender: object, environ: dict, **kwargs: object) -> None:
        with self._lock:
            self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, method: str, suffix: str) -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and p.endswith(suffix))


@contextlib.contextmanager
def recorded_requests() -> Iterator[RequestLog]:
    from django.core.signals import request_started

    log = RequestLog()
    request_started.connect(log, weak=False)
    try:
        yield log
    finally:
        request_started.disconnect(log)
