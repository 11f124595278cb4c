"""The WSGI application as servers see it: Django's, plus an honest ``Connection: close``.

``core.middleware.UnreadBodyCloseMiddleware`` marks an error answered before the request body
was read with ``Connection: close``. gunicorn drops hop-by-hop headers from an application and
decides keep-alive itself, so under its gthread worker such an answer went out advertising
keep-alive while the client was still sending a body nobody would read. Here the mark becomes
gunicorn's own decision (``Response.force_close``, reached through ``start_response``), and the
rest of the body is then read and discarded for a short while before gunicorn closes the
socket: closing with unread bytes makes the kernel send a reset, which can destroy the answer
in the client's buffers before it has read it (the "lingering close" that nginx and Apache do).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# How long, and how much, to keep reading an unwanted body after the answer went out.
LINGER_S = 2.0
LINGER_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024


def _is_close(name: str, value: str) -> bool:
    return name.lower() == "connection" and value.strip().lower() == "close"


def _linger(environ: dict[str, Any], deadline: float) -> None:
    """Read what is left of the body until it ends, the deadline or the byte budget."""
    stream = environ.get("wsgi.input")
    sock: socket.socket | None = environ.get("gunicorn.socket")
    if stream is None or sock is None:
        return
    budget = LINGER_BYTES
    previous = sock.gettimeout()
    try:
        while budget > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            chunk = stream.read(min(_CHUNK, budget))
            if not chunk:
                return
            budget -= len(chunk)
    except (OSError, ValueError):
        return  # the client went away, or the timeout passed: gunicorn closes either way
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(previous)


class _Lingering:
    """The application's body, iterated unchanged, that lingers on the socket when closed."""

    def __init__(self, body: Iterable[bytes], environ: dict[str, Any]) -> None:
        self._body = body
        self._environ = environ

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            _linger(self._environ, time.monotonic() + LINGER_S)


def closing_after_unread_body(app: Callable[..., Iterable[bytes]]) -> Callable[..., Any]:
    """Wrap a WSGI application; only answers marked ``Connection: close`` under gunicorn change
    (every other body is handed back as it is, so gunicorn's sendfile still applies)."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
        if force_close is None:
            return app(environ, start_response)  # not gunicorn: the header goes through as is
        closing = False

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal closing
            if any(_is_close(name, value) for name, value in headers):
                headers = [(name, value) for name, value in headers if not _is_close(name, value)]
                force_close()  # gunicorn now writes "Connection: close" itself, and closes
                closing = True
            return start_response(status, headers, exc_info)

        body = app(environ, start)
        return _Lingering(body, environ) if closing else body

    return application
