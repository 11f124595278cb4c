"""``python -m watcher``: see ``python -m watcher --help``."""

from watcher.cli import main

raise SystemExit(main())
