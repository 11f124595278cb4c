"""The command line: ``FINDME_TOKEN=... python -m watcher DIR --server URL --event SLUG``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tqdm import tqdm

from . import __version__
from . import manifest as m
from .client import Client, RetryPolicy
from .folder import IMAGE_SUFFIXES, findme_checkout_of, scan, source_tree_reason
from .manifest import Manifest
from .pipeline import Watcher
from .progress import TerminalProgress

EXIT_OK = 0
EXIT_UNFINISHED = 1  # something is still pending or failed
EXIT_FATAL = 2  # bad arguments, or the server refuses the whole run (token, event, URL)
MAX_LISTED = 50

DESCRIPTION = """\
Upload the photos of a folder to a FindMe event, exactly once each.

Scans DIR (recursively), uploads every photo (.jpg .jpeg .png .webp .heic .heif; hidden and
temporary files are skipped), then keeps watching for new ones until Ctrl-C, printing one line
per file (new, duplicate, rejected or failed, with the photo's id and the rate in files per
second). A file is read only once its size and modification time have stayed the same for
--settle seconds. A folder that looks like source code (a Python package, a project's root)
is refused: the manifest below would be written into it.

The token is a staff user's API token, read from FINDME_TOKEN or from the file given with
--token-file, so that it never shows in the process list.

Progress is kept in DIR/.findme-manifest.sqlite3: stop or kill the watcher at any moment and
start it again; it uploads nothing twice and forgets nothing. A renamed or copied photo is
recognised by its SHA-256 and not sent again, and the server is asked which photos it already
has before any bytes are sent.

A file the server refuses (not an image, too large...) is marked rejected with the server's
reason and not tried again until its bytes change. Network errors, 429 and 5xx answers are
retried with exponential backoff (honouring Retry-After) for up to --give-up-after seconds;
the file is then marked failed and tried again on the next rescan or run.
"""

EPILOG = """\
exit status:
  0  nothing is pending or failed (rejected files do not count)
  1  some files are still pending or failed (stopped early, or the server stayed away)
  2  bad arguments, or the server refused the run (wrong token, not staff, unknown event)

environment:
  FINDME_SERVER, FINDME_EVENT stand in for --server, --event
  FINDME_TOKEN  the token, unless --token-file is given

examples:
  export FINDME_TOKEN=0123abcd...      # or keep it in a file: --token-file ~/.findme-token
  python -m watcher ~/Pictures/wedding --server https://findme.example.com \\
      --event smith-wedding
"""


def positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m watcher",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", metavar="DIR", type=Path, help="the folder of photos to upload")
    parser.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get("FINDME_SERVER"),
        help="the FindMe server, e.g. https://findme.example.com (env FINDME_SERVER)",
    )
    parser.add_argument(
        "--event",
        metavar="SLUG",
        default=os.environ.get("FINDME_EVENT"),
        help="the event's slug, as in /api/events/SLUG/ (env FINDME_EVENT)",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        type=Path,
        help="a file holding a staff user's API token (readable by you alone: chmod 600);"
        " without it the token comes from FINDME_TOKEN",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="the token itself: kept for old scripts, but every user of this machine sees it"
        " in the process list (ps); prefer FINDME_TOKEN or --token-file",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="scan and upload what is there, then exit (status 0 if nothing is pending or failed)",
    )
    parser.add_argument(
        "--concurrency",
        metavar="N",
        type=positive_int,
        default=4,
        help="uploads at the same time (default 4)",
    )
    parser.add_argument(
        "--settle",
        metavar="SECONDS",
        type=positive_float,
        default=1.0,
        help="how long a file's size and mtime must stay unchanged before it is read (default 1.0)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_float,
        default=60.0,
        help="timeout of each HTTP request: connect (at most 10 s), and each read or write"
        " while the request runs (default 60)",
    )
    parser.add_argument(
        "--max-backoff",
        metavar="SECONDS",
        type=positive_float,
        default=30.0,
        help="longest wait between retries, unless the server's Retry-After asks for more"
        " (default 30)",
    )
    parser.add_argument(
        "--give-up-after",
        metavar="SECONDS",
        type=positive_float,
        default=900.0,
        help="keep retrying a file (or an unreachable server) this long before marking it"
        " failed (default 900 = 15 minutes); failed files are retried on the next rescan or run",
    )
    parser.add_argument(
        "--rescan",
        metavar="SECONDS",
        type=positive_float,
        default=60.0,
        help="while watching, scan the whole folder again this often, as a safety net under"
        " the file system's events and to retry failed files (default 60)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (they go to stderr)"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log more (each retry is logged anyway)"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


class TqdmHandler(logging.Handler):
    """Log lines printed above the progress bars instead of through them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never crash the watcher
            self.handleError(record)


def summary_lines(watcher: Watcher, manifest: Manifest, pending: int) -> list[str]:
    counts = manifest.counts()
    rejected = manifest.entries(m.REJECTED)
    failed = manifest.entries(m.FAILED)
    on_server = counts[m.UPLOADED] + counts[m.DUPLICATE]
    lines = [
        f"Summary for event '{manifest.event}', folder {watcher.folder}:",
        f"  uploaded:   {watcher.totals.uploaded} (this run)",
        f"  duplicates: {watcher.totals.duplicates} (this run; the server already had them)",
        f"  rejected:   {len(rejected)}",
    ]
    lines += [f"    {e.path}: {e.message}" for e in rejected[:MAX_LISTED]]
    if len(rejected) > MAX_LISTED:
        lines.append(f"    ... and {len(rejected) - MAX_LISTED} more (see {manifest.path.name})")
    lines.append(f"  failed:     {len(failed)}")
    lines += [f"    {e.path}: {e.message}" for e in failed[:MAX_LISTED]]
    if len(failed) > MAX_LISTED:
        lines.append(f"    ... and {len(failed) - MAX_LISTED} more (see {manifest.path.name})")
    lines.append(f"  pending:    {pending}")
    lines.append(f"  on the server in all: {on_server}")
    return lines


def warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)


def token_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The token from --token-file, FINDME_TOKEN or (with a warning) --token."""
    if args.token and args.token_file:
        parser.error("give --token-file or --token, not both")
    if args.token:
        warn(
            "--token shows the token to every user of this machine (ps, /proc) and keeps it"
            " in your shell's history: use FINDME_TOKEN or --token-file instead."
        )
        return args.token.strip()
    if args.token_file:
        path: Path = args.token_file.expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"cannot read the token file {path}: {exc}")
        if not token:
            parser.error(f"the token file {path} is empty")
        if os.name == "posix" and mode & 0o077:
            warn(f"{path} can be read by other users of this machine: chmod 600 {path}")
        return token
    token = os.environ.get("FINDME_TOKEN", "").strip()
    if not token:
        parser.error("no token: set FINDME_TOKEN, or give --token-file PATH")
    return token


def check_folder(folder: Path, parser: argparse.ArgumentParser, *, once: bool) -> None:
    """Refuse a source tree (the manifest would land in it); warn about a folder without photos."""
    reason = source_tree_reason(folder)
    if reason is not None:
        parser.error(
            f"{folder} looks like source code, not a folder of photos ({reason}). The watcher"
            " keeps its manifest in the folder it uploads, so it does not start here."
            " Give it the folder your camera or editor writes photos into."
        )
    checkout = findme_checkout_of(folder)
    if checkout is not None:
        warn(
            f"{folder} is inside the FindMe checkout {checkout}: event photos normally live"
            f" elsewhere ({checkout / 'example-photos'} is the checkout's folder for a try)."
        )
    if next(scan(folder), None) is None:
        kinds = " ".join(sorted(IMAGE_SUFFIXES))
        then = "nothing to upload." if once else "watching for photos to arrive."
        warn(f"{folder} holds no photos ({kinds}; hidden and temporary files skipped): {then}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for option in ("server", "event"):
        if not getattr(args, option):
            parser.error(f"--{option} is required (or set FINDME_{option.upper()})")
    if not args.server.startswith(("http://", "https://")):
        parser.error("--server must start with http:// or https://")
    token = token_of(args, parser)
    folder: Path = args.folder.expanduser().resolve()
    if not folder.is_dir():
        parser.error(f"{folder} is not a folder")
    check_folder(folder, parser, once=args.once)

    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            # Second Ctrl-C: leave now. The manifest is consistent at every instant.
            os._exit(128 + signum)
        stop.set()
        logging.getLogger("watcher").warning(
            "stopping: finishing the uploads under way (Ctrl-C again to quit at once)"
        )

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    manifest = Manifest(folder, args.event)
    client = Client(
        args.server,
        args.event,
        token,
        timeout=args.timeout,
        # One more than the uploads: the check request never queues behind four slow bodies.
        connections=args.concurrency + 1,
        policy=RetryPolicy(cap=args.max_backoff, give_up_after=args.give_up_after),
        stop=stop,
    )
    if not args.once:
        print(
            f"Watching {folder} for event '{args.event}' on {args.server}. Ctrl-C stops.",
            file=sys.stderr,
        )
    progress = TerminalProgress(
        bars=not args.no_progress, lines=not args.once, out=sys.stdout, err=sys.stderr
    )
    watcher = Watcher(
        folder,
        manifest,
        client,
        settle=args.settle,
        concurrency=args.concurrency,
        rescan_every=args.rescan,
        progress=progress,
    )
    try:
        watcher.run(once=args.once)
    finally:
        progress.close()
        client.close()
    pending = len(watcher.pending_names())
    print("\n".join(summary_lines(watcher, manifest, pending)))
    failed = manifest.counts()[m.FAILED]
    manifest.close()
    if watcher.fatal:
        print(f"Stopped: {watcher.fatal}", file=sys.stderr)
        return EXIT_FATAL
    return EXIT_OK if pending == 0 and failed == 0 else EXIT_UNFINISHED
