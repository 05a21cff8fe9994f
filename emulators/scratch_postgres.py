"""Throwaway PostgreSQL databases for tests and benchmarks: made with a unique name on a server
given by an admin URL, dropped afterwards. Only names made here can be dropped here."""

from __future__ import annotations

import uuid
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

__all__ = ["PREFIX", "create_scratch_database", "database_name", "drop_database"]

# Every scratch database's name starts so; drop_database refuses any other name.
PREFIX: Final = "supportbot_test_"


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
