"""Which files of the folder are photos, and when a photo has finished being written."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif"})
# What browsers, editors, copy tools and cameras' import software leave while still writing.
TEMPORARY_ENDINGS = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp", "~")
TEMPORARY_PREFIXES = (".", "~$", "~")


def is_photo(path: Path, root: Path) -> bool:
    """An image file by its extension, not hidden, not temporary, inside ``root``."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return False
    if not relative.parts or any(part.startswith(TEMPORARY_PREFIXES) for part in relative.parts):
        return False
    name = relative.name.lower()
    if name.endswith(TEMPORARY_ENDINGS):
        return False
    return os.path.splitext(name)[1] in IMAGE_SUFFIXES


def scan(root: Path) -> Iterator[Path]:
    """Every photo under ``root``; hidden directories are not entered."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(TEMPORARY_PREFIXES))
        for name in sorted(files):
            path = Path(directory, name)
            if is_photo(path, root):
                yield path


# What the top of a project's source holds, and a folder of photos never does.
SOURCE_MARKERS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "manage.py",
    "package.json",
    "pyvenv.cfg",
    ".git",
)
# `make run` fills this folder, in the checkout's root, with sample photos to try the watcher on.
EXAMPLE_FOLDER = "example-photos"


def source_tree_reason(folder: Path) -> str | None:
    """Why ``folder`` looks like source code rather than photos; None when it does not.

    The watcher writes its manifest into the folder it uploads: pointed at an app's package
    (`make run` once printed ./photos, FindMe's own), it found no photos and left a database
    among the modules.
    """
    for directory in (folder, *folder.parents):
        if (directory / "__init__.py").is_file():
            if directory == folder:
                return "it is a Python package"
            return f"it is inside the Python package {directory}"
    for marker in SOURCE_MARKERS:
        if (folder / marker).exists():
            return f"it holds {marker}"
    python = next(folder.glob("*.py"), None)
    if python is not None:
        return f"it holds Python source ({python.name})"
    return None


def findme_checkout_of(folder: Path) -> Path | None:
    """The FindMe checkout that ``folder`` lies in, unless it is the checkout's example folder."""
    for directory in folder.parents:
        if (directory / "manage.py").is_file() and (directory / "watcher" / "cli.py").is_file():
            example = directory / EXAMPLE_FOLDER
            if folder == example or example in folder.parents:
                return None
            return directory
    return None


def relative_name(path: Path, root: Path) -> str:
    """The manifest's key: relative to the folder, so the folder can be moved or renamed."""
    return path.relative_to(root).as_posix()


@dataclass
class _Observation:
    size: int
    mtime_ns: int
    stable_since: float


class Settler:
    """Holds files until their size and mtime have not changed for ``settle`` seconds.

    Not thread-safe: the watcher's main loop owns it.
    """

    def __init__(
        self,
        settle: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.settle = settle
        self._monotonic = monotonic
        self._wallclock = wallclock
        self._waiting: dict[Path, _Observation] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def paths(self) -> list[Path]:
        return list(self._waiting)

    def add(self, path: Path) -> None:
        if path in self._waiting:
            return  # already watched; the next poll sees any change
        try:
            st = path.stat()
        except OSError:
            return  # gone already (a temporary file renamed away, say)
        # The mtime is the last write: a file untouched for ``settle`` seconds before we first
        # looked has already been stable that long, so a folder full of finished photos costs no
        # extra wait at start. A fresh file waits the whole interval.
        age = max(0.0, min(self.settle, self._wallclock() - st.st_mtime))
        self._waiting[path] = _Observation(st.st_size, st.st_mtime_ns, self._monotonic() - age)

    def poll(self) -> list[tuple[Path, os.stat_result]]:
        """The files that have settled (removed from the waiting set); vanished files dropped."""
        ready = []
        now = self._monotonic()
        for path, seen in list(self._waiting.items()):
            try:
                st = path.stat()
            except OSError:
                del self._waiting[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (seen.size, seen.mtime_ns):
                self._waiting[path] = _Observation(st.st_size, st.st_mtime_ns, now)
            elif now - seen.stable_since >= self.settle:
                del self._waiting[path]
                ready.append((path, st))
        return ready


class FolderEvents(FileSystemEventHandler):
    """Feeds the paths watchdog reports into a queue the main loop drains.

    Directories are passed on too: a folder copied in whole may fill before its own watch is
    in place, so the main loop scans it.
    """

    def __init__(self, paths: queue.SimpleQueue[Path]) -> None:
        self.paths = paths

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            # A directory's "modified" only means a file in it changed: that file has its own event.
            if event.event_type == "created":
                self.paths.put(Path(os.fsdecode(event.src_path)))
            elif event.event_type == "moved":
                self.paths.put(Path(os.fsdecode(event.dest_path)))
        elif event.event_type in {"created", "modified", "closed"}:
            self.paths.put(Path(os.fsdecode(event.src_path)))
        elif event.event_type == "moved":
            self.paths.put(Path(os.fsdecode(event.dest_path)))
