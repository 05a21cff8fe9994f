"""Scratch PostgreSQL databases for tests: one fresh database per test, dropped afterwards
(made and dropped by emulators/scratch_postgres.py, which the benchmarks use too).

The server comes from SUPPORTBOT_TEST_POSTGRES_URL (an admin URL, e.g. .ci/run's
postgresql://postgres@127.0.0.1:5432/postgres). Without it the tests are skipped, saying so,
except in CI (CI set), where a skipped PostgreSQL test would hide a broken backend: they fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import pytest

from emulators.scratch_postgres import create_scratch_database, drop_database

__all__ = ["create_scratch_database", "drop_database", "postgres_admin_url", "scratch_database"]

ENV: Final = "SUPPORTBOT_TEST_POSTGRES_URL"
# Why a PostgreSQL test was skipped, and how to run it (pytest -ra and ./dev test print it).
SKIP_REASON: Final = (
    f"PostgreSQL tests skipped: set {ENV}=postgresql://postgres@127.0.0.1:5432/postgres"
    " (a server's admin URL; see docs/operations.md)"
)


def postgres_admin_url() -> str:
    """The admin URL from the environment; skips the test without one (fails it in CI)."""
    url = os.environ.get(ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test PostgreSQL: {ENV} is not set (see .ci/run)")
        pytest.skip(SKIP_REASON)
    return url


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A fresh database on the test server (see postgres_admin_url), dropped afterwards."""
    admin = postgres_admin_url()
    dsn = await create_scratch_database(admin)
    try:
        yield dsn
    finally:
        await drop_database(admin, dsn)


async def kill_presence(storage: Any, dsn: str, within: float = 10.0) -> None:
    """Drop a PostgreSQL storage's presence as kill -9 would (its connection just goes), and wait
    until the server has noticed: the backend ends a moment after the socket closes."""
    import asyncio

    import asyncpg  # type: ignore[import-untyped]

    from adapters.storage.pg_presence import PRESENCE_CLASS

    storage._presence._conn.terminate()
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(int(within / 0.02)):
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1"
                " AND objid = hashtext($2)::oid AND objsubid = 2 AND granted", PRESENCE_CLASS, storage.process)
            if held == 0:
                return
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    raise AssertionError(f"the presence of {storage.process} did not end within {within} s")
