"""Structured logs: one line per event, with the ids it concerns.

What a line is about (the task, the photo, the member) is bound once, where the work starts,
and every log record made meanwhile carries it, whatever module logs it:

    with log_context(photo_id=photo_id):
        ...   # logger.info("...") here carries photo_id, and the task's id in a worker

django-q2 tells us each task it runs (signals ``pre_execute`` and ``post_execute_in_worker``):
core.apps binds the task's id and name for its duration. Context lives in a ContextVar, so
threads (gunicorn's gthread) never see each other's.

Two formats, chosen with LOG_FORMAT: ``json`` (one JSON object per line, for a log pipeline;
the production default) and ``plain`` (text with ``key=value`` pairs; development).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_context: ContextVar[dict[str, Any] | None] = ContextVar("findme_log_context", default=None)

# The attributes every LogRecord has: anything else on a record was given with extra=.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "context"}


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged inside the block (nested blocks add up)."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def context_bind(**fields: Any) -> None:
    """Bind for the rest of this context (a task's run): undone by ``context_clear``."""
    _context.set({**(_context.get() or {}), **fields})


def context_clear() -> None:
    _context.set(None)


class ContextFilter(logging.Filter):
    """Put the bound fields, and any ``extra=`` fields, on the record as ``record.context``."""

    def filter(self, record: logging.LogRecord) -> bool:
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        record.context = {**(_context.get() or {}), **extra}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "context", {}),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = getattr(record, "context", {})
        if not context:
            return text
        pairs = " ".join(f"{key}={value}" for key, value in context.items())
        head, newline, rest = text.partition("\n")  # a traceback stays below the line
        return f"{head} [{pairs}]{newline}{rest}"
