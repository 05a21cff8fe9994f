"""Scratch PostgreSQL databases for tests: one fresh database per test, dropped afterwards.

The server comes from SUPPORTBOT_TEST_POSTGRES_URL (an admin URL, e.g. .ci/run's
postgresql://postgres@127.0.0.1:5432/postgres). Without it the tests are skipped, saying so,
except in CI (CI set), where a skipped PostgreSQL test would hide a broken backend: they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

ENV: Final = "SUPPORTBOT_TEST_POSTGRES_URL"
# Every scratch database's name starts so; drop_database refuses any other name.
PREFIX: Final = "supportbot_test_"
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


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


async def create_scratch_database(admin_dsn: str, *, options: str = "") -> str:
    """Create a uniquely named empty database on admin_dsn's server; returns its URL. options are
    appended to CREATE DATABASE (e.g. "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")."""
    name = f"{PREFIX}{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" {options}')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))


async def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drop a database made by create_scratch_database, ending any session still on it."""
    name = database_name(dsn)
    if not name.startswith(PREFIX) or '"' in name:
        raise ValueError(f"not a scratch database: {name!r}")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A fresh database on the test server (see postgres_admin_url), dropped afterwards."""
    admin = postgres_admin_url()
    dsn = await create_scratch_database(admin)
    try:
        yield dsn
    finally:
        await drop_database(admin, dsn)
