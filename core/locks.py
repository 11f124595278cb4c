"""Locks held until the end of the current transaction, named by a string and an id.

They serialise work on one thing (an event's matching, say) across every process and machine
without locking a row of another app's table. PostgreSQL: a transaction-level advisory lock.
SQLite: nothing to take, because FindMe's SQLite transactions are IMMEDIATE, so writers are
already serialised (config/settings.py).
"""

from __future__ import annotations

import zlib

from django.db import connection


def _int4(value: int) -> int:
    """Any integer folded into PostgreSQL's signed 32-bit range (a collision only serialises
    two unrelated things a little more)."""
    return (value + 2**31) % 2**32 - 2**31


def transaction_lock(name: str, key: int) -> None:
    """Take the lock (name, key) until the current transaction commits or rolls back."""
    if not connection.in_atomic_block:
        raise RuntimeError("transaction_lock() needs a transaction: it is released at its end")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                [_int4(zlib.crc32(name.encode())), _int4(key)],
            )
