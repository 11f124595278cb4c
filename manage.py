#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Each worker runs one task at a time beside others on the same cores: numpy's BLAS thread
    # pool only adds wake-ups (a member's match against 5,000 faces: 14.6 ms with the pool,
    # 0.62 ms without; bench/match.py). Set before numpy is first imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
