"""Moving an embedded deployment to PostgreSQL: every table of a SQLite database, copied.

Both databases are first brought to the same schema version by their own migrations; the copy
then goes table by table in one PostgreSQL transaction (all or nothing), keeping the `seq`
columns so pending events, outbox items and notices keep their order. The target must be empty:
copying over a database in use would mix two deployments' sessions.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from adapters.storage.postgres import open_postgres
from adapters.storage.sqlite import open_sqlite


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    serial: str | None = None  # a BIGSERIAL column whose sequence must continue after the copy
    flags: tuple[str, ...] = ()  # SQLite 0/1 columns that are BOOLEAN in PostgreSQL


# Every table but leases: they belong to running processes, and the embedded deployment is
# stopped while it is copied.
TABLES: tuple[Table, ...] = (
    Table("sessions", ("peer", "state", "slots", "flow_version", "version", "updated_at")),
    Table("bindings", ("peer", "email", "caller_id", "name", "bound_at")),
    Table("auth_codes", ("peer", "email", "code_hash", "salt", "created_at", "expires_at", "attempts")),
    Table("auth_sends", ("peer", "email", "sent_at")),
    Table("auth_owners", ("email", "peer", "verified_at")),
    Table("inbox", ("seq", "event_id", "peer", "body", "received_at", "handled_at", "replies", "sent_at",
                    "version"),
          serial="seq"),
    Table("cursors", ("name", "value", "updated_at")),
    Table("outbox", ("seq", "id", "peer", "kind", "payload", "state", "attempts", "next_at", "created_at",
                     "updated_at", "finished_at", "last_error", "progress", "result", "told", "record",
                     "retried_at", "held"), serial="seq", flags=("told", "held")),
    Table("notices", ("seq", "id", "peer", "text", "created_at", "sent_at", "buttons"), serial="seq"),
    Table("counters", ("name", "day", "count")),
    Table("ticket_watch", ("table_name", "sys_id", "number", "peer", "state", "updated_at", "active", "added_at",
                           "comment_after", "asked_at"),
          flags=("active",)),
)
# Columns deliberately not copied, and why: each names a running process (gone once the embedded
# deployment is stopped) or a moment's request that the next poll repeats.
NOT_COPIED: dict[str, frozenset[str]] = {
    "inbox": frozenset({"handled_by", "received_by"}),
    "outbox": frozenset({"held_by"}),
    "ticket_watch": frozenset({"poked_at"}),
}


class TargetNotEmpty(RuntimeError):
    """The PostgreSQL database already holds a deployment's data."""


def _read_all(path: Path, tables: Sequence[Table]) -> dict[str, list[tuple[Any, ...]]]:
    """Every table as of one moment: one read transaction, so a bot still writing to the file
    cannot leave, say, an event pending next to the step that handled it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")
        found = {t.name: conn.execute(f"SELECT {', '.join(t.columns)} FROM {t.name}").fetchall() for t in tables}
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {t.name: [_convert(t, row) for row in found[t.name]] for t in tables}


def _convert(table: Table, row: Sequence[Any]) -> tuple[Any, ...]:
    out = []
    for column, value in zip(table.columns, row, strict=True):
        if column in table.flags and value is not None:
            value = bool(value)
        elif isinstance(value, memoryview | bytearray):
            value = bytes(value)
        out.append(value)
    return tuple(out)


async def copy_sqlite_to_postgres(source: Path, dsn: str, tables: Sequence[Table] = TABLES) -> dict[str, int]:
    """Copy every table; returns the rows copied per table. Raises TargetNotEmpty, changing
    nothing, if any table of the target has rows already."""
    if not await asyncio.to_thread(source.is_file):
        raise FileNotFoundError(f"no SQLite database at {source}")
    # Each side migrated by its own adapter first: the same schema version on both.
    await (await open_sqlite(source)).close()
    await (await open_postgres(dsn, max_size=2)).close()
    rows = await asyncio.to_thread(_read_all, source, tables)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            # Locked first: a worker running on the target cannot write between check and copy.
            await conn.execute(f"LOCK TABLE {', '.join(t.name for t in tables)} IN EXCLUSIVE MODE")
            for table in tables:
                if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table.name})"):
                    raise TargetNotEmpty(f"the PostgreSQL database already has {table.name}; copy into an empty one")
            for table in tables:
                if rows[table.name]:
                    await conn.copy_records_to_table(table.name, records=rows[table.name], columns=table.columns)
                if table.serial:
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{table.serial}'),"
                        f" coalesce((SELECT max({table.serial}) FROM {table.name}), 0) + 1, false)"
                    )
    finally:
        await conn.close()
    return {name: len(found) for name, found in rows.items()}


__all__ = ["TABLES", "Table", "TargetNotEmpty", "copy_sqlite_to_postgres"]
