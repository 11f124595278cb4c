"""Throwaway servers for the fault tests (tests/reliability/servers.py), skipped with the reason
when this machine cannot run them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .servers import (
    PostgresServer,
    RedisServer,
    postgres_missing,
    postgres_server,
    redis_missing,
    redis_server,
)


@pytest.fixture(scope="module")
def throwaway_redis() -> Iterator[RedisServer]:
    if reason := redis_missing():
        pytest.skip(f"needs a throwaway Redis: {reason}")
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[PostgresServer]:
    if reason := postgres_missing():
        pytest.skip(f"needs a throwaway PostgreSQL: {reason}")
    with postgres_server() as server:
        yield server
