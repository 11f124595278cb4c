"""The FindMe upload API over HTTP: check, upload, and the retry policy around both.

Every request has a timeout. A request is retried on connection errors, timeouts, 408, 429
and 5xx, with exponential backoff and jitter, never sooner than the server's Retry-After, until
it gets a final answer or the retry budget runs out.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO

import httpx

from . import __version__

logger = logging.getLogger(__name__)

CHECK_BATCH = 1000  # the check endpoint's limit per request
RETRYABLE_STATUS = frozenset({408, 425, 429})
# Not about one file but about the whole run (wrong token, not staff, wrong event or URL):
# marking every photo rejected would be wrong, so the watcher stops and says why.
FATAL_STATUS = frozenset({401, 403, 404, 405})
# The bytes arrived damaged (or changed on disk): sending them again is the fix.
RETRYABLE_CODES = frozenset({"checksum_mismatch", "queue_full"})


class FatalError(Exception):
    """The server refuses the whole run; carries a message for the photographer."""


class Stopped(Exception):
    """The watcher was asked to stop while waiting to retry."""


class GaveUp(Exception):
    """The retry budget ran out; carries the last error."""


class FileChanged(Exception):
    """The file changed on disk after it was hashed: it must settle and be hashed again."""


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 0.5  # first backoff, seconds; doubles per attempt
    cap: float = 30.0  # no backoff is longer than this
    give_up_after: float = 900.0  # seconds of failures (per file, or of an unreachable server)
    max_retry_after: float = 300.0  # a Retry-After beyond this is treated as this

    def backoff(self, attempt: int) -> float:
        # "Equal jitter": half fixed, half random. Full jitter can retry at once, hammering a
        # server that just came back; none at all makes every client retry in lockstep.
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        delay = self.backoff(attempt)
        if retry_after is not None:
            wait = min(retry_after, self.max_retry_after)
            # At least what the server asked for, spread a little so clients do not return together.
            delay = max(delay, wait + random.uniform(0, min(1.0, wait * 0.1)))
        return delay


class ServerHealth:
    """Shared across threads: since when the server has been unreachable.

    While it is down every upload fails the same way; one clock for all of them means a
    hundred waiting photos give up together after ``give_up_after``, not one after another.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None

    def failed(self) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()

    def ok(self) -> None:
        with self._lock:
            self._down_since = None

    def down_for(self) -> float:
        with self._lock:
            return 0.0 if self._down_since is None else time.monotonic() - self._down_since


@dataclass(frozen=True)
class Answer:
    """The final answer about one file: ``uploaded``, ``duplicate`` or ``rejected``."""

    state: str
    photo_id: int | None = None
    message: str = ""


def error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from the API's error shape, or from whatever else came back."""
    try:
        error = response.json()["error"]
        return str(error.get("code") or "error"), str(error.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        text = " ".join(response.text.split())[:200]
        return f"http_{response.status_code}", text or response.reason_phrase


def retry_after_of(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:  # the other form the standard allows: an HTTP date
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _CountingReader:
    """A read-only file that reports the bytes read: the upload is streamed from disk in
    httpx's 64 KiB chunks, and the progress bar follows it."""

    def __init__(self, fh: BinaryIO, on_read: Callable[[int], None]) -> None:
        self._fh = fh
        self._on_read = on_read
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        self.sent += len(chunk)
        self._on_read(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def fileno(self) -> int:  # lets httpx size the body without reading it
        return self._fh.fileno()


class Client:
    """One event on one FindMe server, shared by the upload threads."""

    def __init__(
        self,
        server: str,
        event: str,
        token: str,
        *,
        timeout: float = 60.0,
        connections: int = 4,
        policy: RetryPolicy | None = None,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.event = event
        self.policy = policy or RetryPolicy()
        self.stop = stop or threading.Event()
        self.health = ServerHealth()
        self._http = httpx.Client(
            base_url=f"{server.rstrip('/')}/api/events/{event}/",
            headers={
                "Authorization": f"Token {token}",
                "User-Agent": f"findme-watcher/{__version__}",
            },
            # The write timeout is per chunk, not for the whole body: a slow uplink only has to
            # keep moving. Connecting to a live server takes milliseconds.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            # A redirect would turn the POST into a GET and lose the photo: the URL is wrong.
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    # --- the two calls ---------------------------------------------------------------------------
    def check(self, hashes: Sequence[str]) -> set[str]:
        """Which of ``hashes`` the event already holds (asked in batches of 1,000)."""
        existing: set[str] = set()
        for start in range(0, len(hashes), CHECK_BATCH):
            batch = list(hashes[start : start + CHECK_BATCH])
            response = self._call(
                "check",
                lambda batch=batch: self._http.post("photos/check/", json={"sha256": batch}),
            )
            if response.status_code >= 400:
                code, message = error_of(response)
                raise FatalError(f"The server refused the check ({code}): {message}")
            existing.update(h.lower() for h in self._json(response).get("existing", []))
        return existing

    def upload(
        self,
        path: Path,
        *,
        sha256: str,
        size: int,
        mtime_ns: int,
        on_bytes: Callable[[int], None] = lambda n: None,
    ) -> Answer:
        """Send one file; raises FileChanged, GaveUp, Stopped or FatalError.

        ``on_bytes`` follows the body as it streams; on a 2xx it has been given the file's
        size in total, otherwise zero.
        """

        def send() -> httpx.Response:
            try:
                fh = path.open("rb")
            except FileNotFoundError:
                raise FileChanged(f"{path} is gone") from None
            with fh:
                st = os.fstat(fh.fileno())
                if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                    raise FileChanged(f"{path} changed since it was hashed")
                reader = _CountingReader(fh, on_bytes)
                response = None
                try:
                    response = self._http.post(
                        "photos/",
                        files={"file": (path.name, reader, "application/octet-stream")},
                        data={"sha256": sha256},
                    )
                    return response
                finally:
                    # Bytes count once the server has them; a failed attempt gives them back.
                    if response is None or not response.is_success:
                        on_bytes(-reader.sent)

        response = self._call(f"upload of {path.name}", send)
        if response.status_code < 300:
            body = self._json(response)
            photo_id = body.get("id") if isinstance(body.get("id"), int) else None
            if body.get("duplicate"):
                return Answer("duplicate", photo_id, "the server already had these bytes")
            return Answer("uploaded", photo_id)
        code, message = error_of(response)
        return Answer("rejected", None, f"{code}: {message}")

    # --- the retry loop --------------------------------------------------------------------------
    def _call(self, what: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        """Send until a final answer: a 2xx, or a 4xx that is about the request itself."""
        attempt = 0
        first_failure: float | None = None
        while True:
            if self.stop.is_set():
                raise Stopped()
            retry_after: float | None = None
            try:
                response = send()
            except httpx.TransportError as exc:
                # Connection refused, reset, DNS, timeouts: the server or the network is away.
                self.health.failed()
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                self.health.ok()
                status = response.status_code
                if 200 <= status < 300:
                    return response
                if 300 <= status < 400:
                    raise FatalError(
                        f"The server redirected ({status}) to {response.headers.get('Location')}:"
                        " give --server the address it redirects to."
                    )
                code, message = error_of(response)
                if status in FATAL_STATUS:
                    raise FatalError(f"The server answered {status} {code}: {message}")
                if status < 500 and status not in RETRYABLE_STATUS and code not in RETRYABLE_CODES:
                    return response  # final: the caller records the rejection
                retry_after = retry_after_of(response)
                problem = f"HTTP {status} {code}: {message}"
            now = time.monotonic()
            if first_failure is None:
                first_failure = now
            delay = self.policy.delay(attempt, retry_after)
            failing_for = max(now - first_failure, self.health.down_for())
            if failing_for + delay > self.policy.give_up_after:
                raise GaveUp(f"{problem} (gave up after {failing_for:.0f} s)")
            logger.warning("%s: %s; retrying in %.1f s", what, problem, delay)
            if self.stop.wait(delay):
                raise Stopped()
            attempt += 1

    @staticmethod
    def _json(response: httpx.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            raise FatalError(
                f"The server answered {response.status_code} with something other than JSON:"
                " is --server the FindMe address?"
            ) from None
        if not isinstance(body, dict):
            raise FatalError("The server answered with an unexpected JSON shape.")
        return body
