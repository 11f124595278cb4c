"""A 503 with Retry-After is honoured: measured against a stub that answers like FindMe.

The real server asks for 30 s when its queue is full (see test_watcher_live for that path);
a stub asking for 2 s keeps this test short while measuring the wait exactly.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .helpers import jpeg_noise, manifest_rows, run_watcher, sha256_of, watcher_command

RETRY_AFTER_S = 2


class FindMeStub(BaseHTTPRequestHandler):
    uploads: list[float]
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/photos/check/"):
            return self._answer(200, {"existing": []})
        with self.lock:
            self.uploads.append(time.monotonic())
            first = len(self.uploads) == 1
        if first:
            return self._answer(
                503,
                {"error": {"code": "queue_full", "message": "Wait.", "detail": {}}},
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        return self._answer(201, {"id": 7, "duplicate": False})

    def _answer(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_a_503_with_retry_after_is_honoured(tmp_path: Path):
    data = jpeg_noise(3)
    (tmp_path / "a.jpg").write_bytes(data)
    FindMeStub.uploads = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FindMeStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # Backoff alone would come back within 0.2 s: only Retry-After explains a longer wait.
        result = run_watcher(
            *watcher_command(
                tmp_path,
                f"http://127.0.0.1:{server.server_port}",
                "wedding",
                "token",
                "--once",
                "--settle",
                "0",
                "--max-backoff",
                "0.2",
            )
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(FindMeStub.uploads) == 2
    assert FindMeStub.uploads[1] - FindMeStub.uploads[0] >= RETRY_AFTER_S
    assert "queue_full" in result.stderr
    assert manifest_rows(tmp_path) == {"a.jpg": ("uploaded", sha256_of(data), 7, "")}
