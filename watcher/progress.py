"""What the photographer sees while the watcher works: two bars on stderr and, while watching,
one line per finished file on stdout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm

from . import manifest as m

# What a line calls each final state: "new" is a photo the server did not have before.
RESULT_WORDS = {
    m.UPLOADED: "new",
    m.DUPLICATE: "duplicate",
    m.REJECTED: "rejected",
    m.FAILED: "failed",
}


@dataclass(frozen=True)
class Outcome:
    """The final answer about one file of this run."""

    name: str
    state: str
    photo_id: int | None = None
    message: str = ""


class Burst:
    """Files and bytes finished per second over the current burst of work.

    A burst starts when a file arrives while nothing is under way and lasts until nothing is
    left. A watcher idles between bursts, for hours at an event; a rate over its whole life
    (tqdm's own) then reads "23 s/file" after one photo dropped in a quiet folder.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.outstanding = 0
        self.started_at = clock()
        self.ended_at: float | None = None
        self.files = 0
        self.nbytes = 0
        # Until a new burst has finished a file, the bars keep the last burst's rates.
        self._previous: tuple[float | None, float | None] = (None, None)

    def add(self, files: int) -> None:
        if self.outstanding <= 0 and files > 0:
            if self.files:
                self._previous = (self.files_per_second(), self.bytes_per_second())
            self.started_at = self._clock()
            self.files = 0
            self.nbytes = 0
        self._count(files)

    def advance(self, nbytes: int) -> None:
        self.nbytes += nbytes

    def finish(self) -> None:
        self.files += 1
        self._count(-1)

    def _count(self, files: int) -> None:
        self.outstanding = max(0, self.outstanding + files)
        self.ended_at = self._clock() if self.outstanding == 0 else None

    def elapsed(self) -> float:
        return (self.ended_at or self._clock()) - self.started_at

    def files_per_second(self) -> float | None:
        if not self.files:
            return self._previous[0]
        elapsed = self.elapsed()
        return self.files / elapsed if elapsed > 0 else None

    def bytes_per_second(self) -> float | None:
        if not self.files:
            return self._previous[1]
        elapsed = self.elapsed()
        return self.nbytes / elapsed if self.nbytes > 0 and elapsed > 0 else None


def rate_text(files_per_second: float | None) -> str:
    if files_per_second is None:
        return "- files/s"
    if files_per_second >= 10:
        return f"{files_per_second:.0f} files/s"
    return f"{files_per_second:.2g} files/s"


def outcome_line(outcome: Outcome, done: int, total: int, files_per_second: float | None) -> str:
    """``IMG_0001.jpg: new, photo 17  [3/16, 2.4 files/s]``."""
    word = RESULT_WORDS.get(outcome.state, outcome.state)
    if outcome.state in m.ON_SERVER:
        detail = f"photo {outcome.photo_id}" if outcome.photo_id is not None else outcome.message
    elif outcome.state == m.FAILED:
        detail = f"{outcome.message} (tried again at the next rescan)"
    else:
        detail = outcome.message
    text = f"{outcome.name}: {word}" + (f", {detail}" if detail else "")
    return f"{text}  [{done}/{total}, {rate_text(files_per_second)}]"


BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class TerminalProgress:
    """Two bars (files, bytes) on ``err``; with ``lines``, one line per finished file on ``out``.

    Totals grow as the watcher finds files. Both bars show the burst's rate (see Burst), not
    tqdm's, and are redrawn whenever a file finishes: tqdm skips a redraw that comes sooner
    than ``mininterval`` after the last, and a watcher that then sits idle never draws
    again, so a bar stayed at "15/16" with all 16 done.
    """

    def __init__(
        self,
        *,
        bars: bool,
        lines: bool,
        out: TextIO,
        err: TextIO,
        clock: Callable[[], float] = time.monotonic,
        timestamps: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._lines = lines
        self._out = out
        self._timestamps = timestamps
        self.burst = Burst(clock)
        # Counted here too: a disabled tqdm bar (--no-progress) counts nothing.
        self.total = 0
        self.finished = 0
        common = {
            "disable": not bars,
            "file": err,
            "dynamic_ncols": True,
            "leave": True,
            "bar_format": BAR_FORMAT,
        }
        self.files = tqdm(total=0, desc="files", unit="file", position=0, **common)
        self.bytes = tqdm(
            total=0,
            desc="bytes",
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            position=1,
            **common,
        )

    def add(self, files: int, nbytes: int) -> None:
        with self._lock:
            self.burst.add(files)
            self.total += files
            self.files.total += files
            self.bytes.total += nbytes
            self._redraw()

    def advance(self, nbytes: int) -> None:
        """Bytes on their way (from the upload threads): drawn at tqdm's own pace."""
        with self._lock:
            self.burst.advance(nbytes)
            self.bytes.update(nbytes)

    def done(self, outcome: Outcome, nbytes: int) -> None:
        """One file has its final answer; ``nbytes`` of it were not counted while streaming."""
        with self._lock:
            self.burst.finish()
            self.finished += 1
            if nbytes:
                self.burst.advance(nbytes)
                self.bytes.update(nbytes)
            self.files.update(1)
            if self._lines:
                line = outcome_line(
                    outcome, self.finished, self.total, self.burst.files_per_second()
                )
                if self._timestamps:
                    line = f"{time.strftime('%H:%M:%S')} {line}"
                # Above the bars, not through them; flushed, since stdout is often a pipe or
                # a log file whose reader should see each upload as it happens.
                tqdm.write(line, file=self._out)
                self._out.flush()
            self._redraw()

    def _redraw(self) -> None:
        files_rate = self.burst.files_per_second()
        bytes_rate = self.burst.bytes_per_second()
        self.files.set_postfix_str(rate_text(files_rate), refresh=False)
        bytes_text = "- B/s"
        if bytes_rate is not None:
            bytes_text = tqdm.format_sizeof(bytes_rate, "B/s", divisor=1024)
        self.bytes.set_postfix_str(bytes_text, refresh=False)
        self.files.refresh()
        self.bytes.refresh()

    def close(self) -> None:
        self.bytes.close()
        self.files.close()
