"""The tables, written once and rendered per dialect (dialect.py): versioned schema changes,
applied in order at start, each once (recorded in schema_migrations).

Append only: never edit a released entry. A schema version names the same tables in both
backends. Statements are idempotent (IF NOT EXISTS) where the dialect allows, so a database
whose bookkeeping was lost still migrates cleanly. JSON is TEXT, exactly as json.dumps wrote it
(PostgreSQL's jsonb would reorder keys and refuse the escape \\u0000, and nothing queries inside
it); times are REAL / DOUBLE PRECISION (floats round-trip exactly).
"""

from __future__ import annotations

from typing import Final

from adapters.storage.dialect import Dialect
from adapters.storage.pg_step_commit import COMMIT_FUNCTION, LOCK_FUNCTION, STEP_BATCHES_INDEX, STEP_BATCHES_TABLE

Migrations = tuple[tuple[int, tuple[str, ...]], ...]


class PostgresOnly(str):
    """A statement only PostgreSQL runs (its server-side functions); on SQLite the migration
    records its version and does nothing else."""


_MIGRATIONS: Final[Migrations] = (
    (
        1,
        (
            """CREATE TABLE IF NOT EXISTS sessions (
                peer TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                slots TEXT NOT NULL,
                flow_version TEXT NOT NULL,
                version {bigint} NOT NULL,
                updated_at {real} NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS bindings (
                peer TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                caller_id TEXT NOT NULL,
                name TEXT NOT NULL,
                bound_at {real} NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS bindings_email ON bindings (email)",
            """CREATE TABLE IF NOT EXISTS auth_codes (
                peer TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                code_hash {blob} NOT NULL,
                salt {blob} NOT NULL,
                created_at {real} NOT NULL,
                expires_at {real} NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE IF NOT EXISTS auth_sends ({row_key}
                peer TEXT NOT NULL,
                email TEXT NOT NULL,
                sent_at {real} NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS auth_sends_peer ON auth_sends (peer, sent_at)",
            "CREATE INDEX IF NOT EXISTS auth_sends_email ON auth_sends (email, sent_at)",
            "CREATE INDEX IF NOT EXISTS auth_sends_sent_at ON auth_sends (sent_at)",
            # Channel events: recorded when received (with the raw event, for a callback that
            # was answered before it was handled) and marked handled by the step's commit.
            # seq orders pending events as they arrived (timestamps can tie).
            """CREATE TABLE IF NOT EXISTS inbox (
                seq {serial_key},
                event_id TEXT NOT NULL UNIQUE,
                peer TEXT,
                body TEXT,
                received_at {real} NOT NULL,
                handled_at {real},
                replies TEXT,
                sent_at {real}
            )""",
            "CREATE INDEX IF NOT EXISTS inbox_received_at ON inbox (received_at)",
            "CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (seq) WHERE handled_at IS NULL",
            "CREATE INDEX IF NOT EXISTS inbox_unsent ON inbox (seq) WHERE replies IS NOT NULL",
            # Small named positions that must survive a restart (the long-poll ts).
            """CREATE TABLE IF NOT EXISTS cursors (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at {real} NOT NULL
            )""",
        ),
    ),
    (
        2,
        (
            # SimpleOne work committed with the step that decided it. seq is the order of
            # insertion (created_at can tie). finished_at is set when the item became done or
            # failed, in the engine's clock.
            """CREATE TABLE IF NOT EXISTS outbox (
                seq {serial_key},
                id TEXT NOT NULL UNIQUE,
                peer TEXT NOT NULL,
                kind TEXT NOT NULL,
                payload TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at {real} NOT NULL,
                created_at {real} NOT NULL,
                updated_at {real} NOT NULL,
                finished_at {real},
                last_error TEXT NOT NULL DEFAULT '',
                progress TEXT NOT NULL DEFAULT '{{}}',
                result TEXT,
                told {bool} NOT NULL DEFAULT {false}
            )""",
            "CREATE INDEX IF NOT EXISTS outbox_due ON outbox ({due_key}) WHERE state = 'pending'",
            "CREATE INDEX IF NOT EXISTS outbox_untold ON outbox (finished_at)"
            " WHERE {untold} AND state IN ('done', 'failed')",
            # Messages sent unasked; id makes each once-only, seq keeps their order.
            """CREATE TABLE IF NOT EXISTS notices (
                seq {serial_key},
                id TEXT NOT NULL UNIQUE,
                peer TEXT NOT NULL,
                text TEXT NOT NULL,
                created_at {real} NOT NULL,
                sent_at {real}
            )""",
            "CREATE INDEX IF NOT EXISTS notices_unsent ON notices (seq) WHERE sent_at IS NULL",
            # Tickets followed for status notices, scanned in pages by their key.
            """CREATE TABLE IF NOT EXISTS ticket_watch (
                table_name TEXT{collate_c} NOT NULL,
                sys_id TEXT{collate_c} NOT NULL,
                number TEXT NOT NULL,
                peer TEXT NOT NULL,
                state TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                active {bool} NOT NULL,
                added_at {real} NOT NULL,
                PRIMARY KEY (table_name, sys_id)
            )""",
        ),
    ),
    (
        3,
        (
            # The record an item writes to: items on one record go in order (the due query
            # looks for an older pending one); and when an admin's retry restarted the clock.
            "ALTER TABLE outbox {add_column} record TEXT",
            "ALTER TABLE outbox {add_column} retried_at {real}",
            "CREATE INDEX IF NOT EXISTS outbox_record ON outbox (record, seq) WHERE state = 'pending'",
        ),
    ),
    (
        4,
        (
            # Jobs that one process at a time should do (the status poller, the notice sender):
            # held by `holder` until `until`, then free for any process to take.
            """CREATE TABLE IF NOT EXISTS leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                until {real} NOT NULL
            )""",
            # The step that last wrote a sign-in code (PendingCode.step), and whether it was used.
            "ALTER TABLE auth_codes {add_column} step {bigint} NOT NULL DEFAULT -1",
            "ALTER TABLE auth_codes {add_column} used {bool} NOT NULL DEFAULT {false}",
            "ALTER TABLE auth_codes {add_column} mailed {bool} NOT NULL DEFAULT {false}",
            # An item in a worker's hands (OutboxItem.held): an admin's retry leaves it alone.
            "ALTER TABLE outbox {add_column} held {bool} NOT NULL DEFAULT {false}",
            # The session version the event's step made: kept replies a later step has
            # overtaken are resent without their (stale) keyboard.
            "ALTER TABLE inbox {add_column} version {bigint}",
        ),
    ),
    (
        5,
        (
            # Sign-in codes commit with the step that mails or tries them: no half-done steps to
            # recognise any more (PendingCode.step, used, mailed).
            "ALTER TABLE auth_codes {drop_column} step",
            "ALTER TABLE auth_codes {drop_column} used",
            "ALTER TABLE auth_codes {drop_column} mailed",
        ),
    ),
    (
        6,
        (
            # What the flows count (`count:` on a transition), per day: e.g. hints that helped.
            """CREATE TABLE IF NOT EXISTS counters (
                name TEXT NOT NULL,
                day TEXT NOT NULL,
                count {bigint} NOT NULL,
                PRIMARY KEY (name, day)
            )""",
        ),
    ),
    (
        7,
        (
            # Who has proved they read an address (signed in with a code sent there): they are
            # not held back by the quota strangers share for that address.
            """CREATE TABLE IF NOT EXISTS auth_owners (
                email TEXT NOT NULL,
                peer TEXT NOT NULL,
                verified_at {real} NOT NULL,
                PRIMARY KEY (email, peer)
            )""",
            # Everyone bound today has proved it.
            # (WHERE true: SQLite's parser needs it before ON CONFLICT in INSERT … SELECT.)
            "INSERT INTO auth_owners (email, peer, verified_at) SELECT email, peer, bound_at FROM bindings"
            " WHERE true ON CONFLICT (email, peer) DO NOTHING",
        ),
    ),
    (
        8,
        (
            # Which process committed an event's step, and which holds an outbox item: what a
            # process that is gone left behind is taken up at once (adapters/storage/pg_presence.py).
            "ALTER TABLE inbox {add_column} handled_by TEXT",
            "ALTER TABLE inbox {add_column} received_by TEXT",
            "ALTER TABLE outbox {add_column} held_by TEXT",
        ),
    ),
    (
        9,
        (
            # Two-way support: a notice's buttons (JSON, "" for none); a followed ticket's last
            # journal entry seen (NULL: not known yet) and when an agent's message on it was told.
            "ALTER TABLE notices {add_column} buttons TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE ticket_watch {add_column} comment_after TEXT",
            "ALTER TABLE ticket_watch {add_column} asked_at {real} NOT NULL DEFAULT 0",
            "CREATE INDEX IF NOT EXISTS ticket_watch_peer ON ticket_watch (peer)",
        ),
    ),
    (
        10,
        (
            # The due query looks, for each item held by a process that is gone, for kept replies
            # of its user (dialect.py, held_by_gone): by peer among the unsent, not through all of
            # them (a VK outage keeps thousands), nor the whole inbox (before its statistics).
            "CREATE INDEX IF NOT EXISTS inbox_unsent_peer ON inbox (peer) WHERE replies IS NOT NULL",
        ),
    ),
    (
        11,
        (
            # Push (SimpleOne's business rule calls POST /simpleone/events): when a followed
            # ticket was said to have changed and not looked at since (NULL: not poked). The
            # poller asks for the poked ones every second, by this partial index.
            "ALTER TABLE ticket_watch {add_column} poked_at {real}",
            "CREATE INDEX IF NOT EXISTS ticket_watch_poked ON ticket_watch (poked_at) WHERE poked_at IS NOT NULL",
        ),
    ),
    (
        12,
        (
            # A step's commit in one round trip, and its peer's lock with its session in another
            # (pg_step_commit.py); step_batches makes a commit sent again after a lost answer
            # answer as the first one did instead of writing twice.
            PostgresOnly(STEP_BATCHES_TABLE),
            PostgresOnly(STEP_BATCHES_INDEX),
            PostgresOnly(COMMIT_FUNCTION),
            PostgresOnly(LOCK_FUNCTION),
        ),
    ),
)


def migrations(dialect: Dialect) -> Migrations:
    """Every schema change, in order, as this dialect runs it."""
    return tuple((version, tuple(dialect.sql(str(s)) for s in statements
                                 if dialect.name == "postgresql" or not isinstance(s, PostgresOnly)))
                 for version, statements in _MIGRATIONS)


SCHEMA_MIGRATIONS: Final = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at {real} NOT NULL)"
)
NEWER_SCHEMA: Final = (
    "database schema version {newest} is newer than this program knows ({known});"
    " upgrade the program instead of running an older one on this database"
)
