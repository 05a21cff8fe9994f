"""Where SQLite's and PostgreSQL's SQL differ, and nowhere else.

The schema (schema.py) and the statements (sql.py) are written once, with PostgreSQL's numbered
parameters ($1, $2, … — a parameter may be used twice) and placeholders for the few words that
differ; a Dialect renders them. SQLite takes numbered parameters as ?1, ?2, ….
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from adapters.storage.pg_presence import gone_sql

_PARAMETER: Final = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    # Placeholders of the schema and the statements ({real}, {untold}, …) and their words here.
    words: Mapping[str, str]
    # How a list of values is passed: one parameter per value, at most this many to a statement
    # (SQLite); or None, the whole list as one array parameter (PostgreSQL).
    list_chunk: int | None

    def sql(self, text: str) -> str:
        """A statement or DDL written for both, in this dialect."""
        rendered = text.format_map(self.words)
        return rendered if self.name == "postgresql" else _PARAMETER.sub(r"?\1", rendered)

    def any_of(self, column: str, first: int, count: int) -> str:
        """`column` is one of the `count` values passed from parameter `first` on (list_args)."""
        if self.list_chunk is None:
            return f"{column} = ANY(${first}::text[])"
        return f"{column} IN ({', '.join(f'${n}' for n in range(first, first + count))})"

    def list_args(self, values: Sequence[str]) -> tuple[Any, ...]:
        return tuple(values) if self.list_chunk is not None else (list(values),)

    def chunks(self, values: Sequence[str]) -> list[Sequence[str]]:
        """values in as few statements as the parameter limit allows."""
        size = self.list_chunk or max(1, len(values))
        return [values[start : start + size] for start in range(0, len(values), size)]


SQLITE: Final = Dialect(
    "sqlite",
    {
        "real": "REAL",
        "bigint": "INTEGER",
        "blob": "BLOB",
        "bool": "INTEGER",
        "false": "0",
        "serial_key": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "row_key": "",  # a rowid table needs no key of its own
        "collate_c": "",  # SQLite compares TEXT by code point already
        "add_column": "ADD COLUMN",  # each migration runs once; SQLite has no IF NOT EXISTS here
        "drop_column": "DROP COLUMN",  # nor IF EXISTS here
        "due_key": "next_at",
        # The planner would scan the whole outbox (finished items included) without the hint.
        "due_index": " INDEXED BY outbox_due",
        # The same words as the partial index outbox_untold, so that SQLite uses it.
        "untold": "told = 0",
        "greatest": "max",
        # One process uses the file: what an earlier run held is freed when the file is opened.
        "held_by_gone": "",
        "holder_gone": "",
    },
    list_chunk=500,  # below SQLite's bound-parameter limit
)

POSTGRESQL: Final = Dialect(
    "postgresql",
    {
        "real": "DOUBLE PRECISION",
        "bigint": "BIGINT",
        "blob": "BYTEA",
        "bool": "BOOLEAN",
        "false": "FALSE",
        "serial_key": "BIGSERIAL PRIMARY KEY",
        # A key for every row: logical replication needs one to replicate prune's deletes.
        "row_key": "seq BIGSERIAL PRIMARY KEY,",
        # Pages of watched tickets come in code point order whatever the database's locale.
        "collate_c": ' COLLATE "C"',
        "add_column": "ADD COLUMN IF NOT EXISTS",
        "drop_column": "DROP COLUMN IF EXISTS",
        # The due query walks pending items in seq order; indexing next_at, the planner would
        # walk the whole table by its primary key, finished items included, until prune.
        "due_key": "seq",
        "due_index": "",
        "untold": "NOT told",
        "greatest": "greatest",
        # An item in the hands of a process that is gone is due at once, not when its lease ends;
        # but after the answers that process kept for the same user unsent (sent by the sweep
        # within seconds): the user hears "принята, номер придёт" before the number, not after.
        # The grace: a live worker whose presence blinked (a database restart, a slow link) is
        # back within it, and its attempt in flight is not run twice beside it.
        "held_by_gone": " OR o.held AND o.updated_at <= $1 - 15 AND " + gone_sql("o.held_by")
                        + " AND NOT EXISTS (SELECT 1 FROM inbox AS i WHERE i.peer = o.peer AND i.replies IS NOT NULL"
                        + " AND " + gone_sql("i.handled_by") + ")",
        # A lease whose holder is gone is free (pg_presence.py).
        "holder_gone": " OR " + gone_sql("l.holder"),
    },
    list_chunk=None,
)
