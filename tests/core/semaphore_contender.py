"""One contending process for tests/core/test_semaphore.py: several threads take the same
shared semaphore in turn and hold it briefly. Run as ``python -m tests.core.semaphore_contender``.

It builds the backend directly (no Django settings): the test hands it the Redis URL, the
PostgreSQL DSN or the lock folder. Enter and exit lines go to FINDME_SEMAPHORE_TRACE.
"""

from __future__ import annotations

import argparse
import threading
import time

from core.semaphore import FileSlots, PostgresSlots, RedisSlots, Semaphore


def backend_build(kind: str, target: str, name: str, slots: int):  # noqa: ANN201
    if kind == "file":
        return FileSlots(name=name, slots=slots, folder=target)
    if kind == "redis":
        return RedisSlots(name=name, slots=slots, url=target, lease_s=60)
    if kind == "postgres":
        import psycopg.conninfo

        return PostgresSlots(
            name=name, slots=slots, conninfo=psycopg.conninfo.conninfo_to_dict(target)
        )
    raise ValueError(kind)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind")
    parser.add_argument("target")
    parser.add_argument("--name", required=True)
    parser.add_argument("--slots", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hold", type=float, default=0.03)
    args = parser.parse_args()
    sem = Semaphore(
        backend_build(args.kind, args.target, args.name, args.slots), name=args.name, wait_s=60
    )

    def contend() -> None:
        for _ in range(args.rounds):
            with sem:
                time.sleep(args.hold)

    threads = [threading.Thread(target=contend) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
