"""The manifest: what the watcher knows about each file of the folder, kept in SQLite inside it.

One row per (event, path). Every change is a single SQLite statement or one explicit
transaction in WAL mode, so a kill at any moment leaves either the old row or the new one,
never half of each. The folder itself stays the source of truth for what exists: a file the
manifest has not seen yet is found again by the next scan.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

FILENAME = ".findme-manifest.sqlite3"

PENDING = "pending"
UPLOADED = "uploaded"
DUPLICATE = "duplicate"
REJECTED = "rejected"
FAILED = "failed"
STATES = (PENDING, UPLOADED, DUPLICATE, REJECTED, FAILED)
# Nothing more to do for these, on this run or any later one (unless the file's bytes change).
SETTLED = frozenset({UPLOADED, DUPLICATE, REJECTED})
# The server holds these bytes.
ON_SERVER = frozenset({UPLOADED, DUPLICATE})

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files (
    event      TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    photo_id   INTEGER,
    state      TEXT    NOT NULL CHECK (state IN ({", ".join(repr(s) for s in STATES)})),
    message    TEXT    NOT NULL DEFAULT '',
    updated_at REAL    NOT NULL,
    PRIMARY KEY (event, path)
);
CREATE INDEX IF NOT EXISTS files_by_hash ON files (event, sha256);
"""


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    mtime_ns: int
    sha256: str
    photo_id: int | None
    state: str
    message: str


class Manifest:
    """Thread-safe access to the manifest of one folder, for one event.

    One connection shared under a lock: writes are a few per file, far below what SQLite
    does per second, and a single connection cannot deadlock against itself.
    """

    def __init__(self, folder: Path, event: str) -> None:
        self.path = folder / FILENAME
        self.event = event
        self._lock = threading.Lock()
        # Autocommit (isolation_level=None): each statement is its own transaction unless
        # wrapped in an explicit BEGIN ... COMMIT below.
        self._db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process kill (the OS holds the committed pages); only a
        # power cut may lose the last commits, and then the server's check endpoint finds those
        # photos again: a lost commit costs a question, never a second upload.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, params: Iterable[object]) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(sql, tuple(params)).fetchall()
        return [Entry(*row) for row in rows]

    def get(self, path: str) -> Entry | None:
        rows = self._rows(
            "SELECT path, size, mtime_ns, sha256, photo_id, state, message FROM files"
            " WHERE event = ? AND path = ?",
            (self.event, path),
        )
        return rows[0] if rows else None

    def by_hash(self, sha256: str) -> Entry | None:
        """A settled row with these bytes: one on the server first, else a rejected one."""
        rows = self._rows(
            "SELECT path, size, mtime_ns, sha256, photo_id, state, message FROM files"
            " WHERE event = ? AND sha256 = ? AND state IN (?, ?, ?)"
            " ORDER BY state = ? DESC, state = ? DESC, path LIMIT 1",
            (self.event, sha256, UPLOADED, DUPLICATE, REJECTED, UPLOADED, DUPLICATE),
        )
        return rows[0] if rows else None

    def entries(self, *states: str) -> list[Entry]:
        return self._rows(
            "SELECT path, size, mtime_ns, sha256, photo_id, state, message FROM files"
            " WHERE event = ? AND state IN (SELECT value FROM json_each(?)) ORDER BY path",
            (self.event, json.dumps(states)),
        )

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM files WHERE event = ? GROUP BY state", (self.event,)
            ).fetchall()
        found = dict(rows)
        return {state: found.get(state, 0) for state in STATES}

    def record(
        self,
        paths: Iterable[str],
        *,
        size: int,
        mtime_ns: int,
        sha256: str,
        state: str,
        photo_id: int | None = None,
        message: str = "",
    ) -> None:
        """Insert or replace the rows of ``paths`` (one file, or several with the same bytes)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for path in paths:
                    self._db.execute(
                        "INSERT INTO files (event, path, size, mtime_ns, sha256, photo_id, state,"
                        " message, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (event, path) DO UPDATE SET size = excluded.size,"
                        " mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,"
                        " photo_id = excluded.photo_id, state = excluded.state,"
                        " message = excluded.message, updated_at = excluded.updated_at",
                        (self.event, path, size, mtime_ns, sha256, photo_id, state, message, now),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def set_state(
        self,
        paths: Iterable[str],
        state: str,
        *,
        sha256: str,
        photo_id: int | None = None,
        message: str = "",
    ) -> None:
        """Move rows to ``state``, but only rows that still describe these bytes.

        A file rewritten meanwhile was re-recorded with its new hash: the answer about the
        old bytes must not land on it.
        """
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for path in paths:
                    self._db.execute(
                        "UPDATE files SET state = ?, photo_id = COALESCE(?, photo_id),"
                        " message = ?, updated_at = ? WHERE event = ? AND path = ? AND sha256 = ?",
                        (state, photo_id, message, now, self.event, path, sha256),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def forget(self, paths: Iterable[str]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for path in paths:
                    self._db.execute(
                        "DELETE FROM files WHERE event = ? AND path = ?", (self.event, path)
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
