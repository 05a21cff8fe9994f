"""PostgreSQL storage (asyncpg): the backend for several workers on one database.

It behaves as SqliteStorage does (tests/contract is the judge). What is particular to it:

Write path. `commit_step` commits the steps of concurrent peers together, as SQLite does: the
calls queue, one flusher task per process writes everything queued in one transaction with a
SAVEPOINT per step (a refused or failing step stands or falls alone), and each caller is
answered only after COMMIT returned. A step is its session write and its inbox mark in one
statement, its outbox items, outcomes and follow-up replies after it. Unlike SQLite, a step
whose own data fails (a duplicate outbox id, text PostgreSQL refuses) fails only its caller; a
batch-wide failure (the connection, a timeout) is raised to every caller in the batch. Within a
batch the steps are written in peer order, so two workers' batches lock sessions in the same
order and cannot deadlock on them; a deadlock elsewhere rolls the batch back and it is retried.

Lost connections. A call that breaks because its connection was lost (a database restart, a
killed backend, a pooled connection gone stale) is tried again, after 0.05, 0.25 and 1 s, only
where that cannot do anything twice:
- reads, and writes that leave the same state when repeated whatever another worker did in
  between (marks, notices and follow-ups ignored if present), always; sessions, bindings and
  codes are not among them (a repeated upsert could undo another worker's write in between);
- every other write runs in a transaction, retried when the connection broke before its COMMIT
  was sent: PostgreSQL rolls back a transaction whose connection is gone, so nothing of it
  stayed. A COMMIT whose answer was lost may have committed: that error is raised, not retried;
- a failure to get a connection at all (refused, too many clients, the server starting), and a
  deadlock or serialization failure (rolled back by the server), always.
A statement timeout (command_timeout) is raised, never retried. After a network partition the
old backend may hold its locks until the server notices the connection is gone; the retry waits
for them (bounded by command_timeout).

Bindings are not cached: with several workers, a sign-out on one must be seen by the next step
on every other; the read is one indexed lookup.

JSON (slots, payloads, progress, results) is stored as TEXT, exactly as json.dumps wrote it:
jsonb would reorder keys and refuses the escape \\u0000, and nothing queries inside it. Times are
DOUBLE PRECISION (binary transfer: floats round-trip exactly); BIGSERIAL seq columns keep the
order of insertion. ticket_watch's key is COLLATE "C", so pages come in code point order whatever
the database's locale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, TypeVar

import asyncpg  # type: ignore[import-untyped]

from adapters.storage.pg_peer_locks import AdvisoryPeerLocks
from adapters.storage.rows import (
    OutcomeRows as _OutcomeRows,
)
from adapters.storage.rows import (
    StepRow as _StepRow,
)
from adapters.storage.rows import (
    json_text as _json,
)
from adapters.storage.rows import (
    notice_row as _notice_row,
)
from adapters.storage.rows import (
    outbox_item as _outbox_item,
)
from adapters.storage.rows import (
    outcome_rows as _encode_outcome,
)
from adapters.storage.rows import (
    step_row as _encode,
)
from adapters.storage.rows import (
    watch_row as _watch_row,
)
from adapters.storage.sqlite import CommitStats, StorageClosed
from engine.ports import (
    OUTBOX_DONE,
    OUTBOX_FAILED,
    OUTBOX_PENDING,
    Binding,
    InboxEvent,
    Notice,
    OutboxItem,
    OutboxOutcome,
    PendingCode,
    SendStats,
    Session,
    StepCommit,
    UnsentReplies,
    WatchedTicket,
)

__all__ = [
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "OPEN_ERRORS",
    "PostgresStorage",
    "SchemaTooNew",
    "StorageClosed",
    "open_postgres",
    "postgres_dsn_from_url",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

# What opening can fail with for a reason the admin must fix: the server down or unreachable,
# a database that does not exist, a wrong password.
OPEN_ERRORS: tuple[type[BaseException], ...] = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

# Versioned schema changes, applied in order at start, each once (recorded in schema_migrations).
# Append only: never edit a released entry. The numbers match adapters/storage/sqlite.py's, so a schema
# version names the same tables in both backends.
MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = (
    (
        1,
        (
            """CREATE TABLE IF NOT EXISTS sessions (
                peer TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                slots TEXT NOT NULL,
                flow_version TEXT NOT NULL,
                version BIGINT NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS bindings (
                peer TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                caller_id TEXT NOT NULL,
                name TEXT NOT NULL,
                bound_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS bindings_email ON bindings (email)",
            """CREATE TABLE IF NOT EXISTS auth_codes (
                peer TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                code_hash BYTEA NOT NULL,
                salt BYTEA NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0
            )""",
            # seq: a key for every row (logical replication needs one to replicate prune's deletes).
            """CREATE TABLE IF NOT EXISTS auth_sends (
                seq BIGSERIAL PRIMARY KEY,
                peer TEXT NOT NULL,
                email TEXT NOT NULL,
                sent_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS auth_sends_peer ON auth_sends (peer, sent_at)",
            "CREATE INDEX IF NOT EXISTS auth_sends_email ON auth_sends (email, sent_at)",
            "CREATE INDEX IF NOT EXISTS auth_sends_sent_at ON auth_sends (sent_at)",
            # Channel events: recorded when received (with the raw event) and marked handled by
            # the step's commit. seq orders pending events as they arrived (timestamps can tie).
            """CREATE TABLE IF NOT EXISTS inbox (
                seq BIGSERIAL PRIMARY KEY,
                event_id TEXT NOT NULL UNIQUE,
                peer TEXT,
                body TEXT,
                received_at DOUBLE PRECISION NOT NULL,
                handled_at DOUBLE PRECISION,
                replies TEXT,
                sent_at DOUBLE PRECISION
            )""",
            "CREATE INDEX IF NOT EXISTS inbox_received_at ON inbox (received_at)",
            "CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (seq) WHERE handled_at IS NULL",
            "CREATE INDEX IF NOT EXISTS inbox_unsent ON inbox (seq) WHERE replies IS NOT NULL",
            """CREATE TABLE IF NOT EXISTS cursors (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
    (
        2,
        (
            # SimpleOne work committed with the step that decided it; seq is the order of
            # insertion. finished_at: when it became done or failed, in the engine's clock.
            """CREATE TABLE IF NOT EXISTS outbox (
                seq BIGSERIAL PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                peer TEXT NOT NULL,
                kind TEXT NOT NULL,
                payload TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION,
                last_error TEXT NOT NULL DEFAULT '',
                progress TEXT NOT NULL DEFAULT '{}',
                result TEXT,
                told BOOLEAN NOT NULL DEFAULT FALSE
            )""",
            # The due query walks pending items in seq order (SQLite indexes next_at and forces
            # it with INDEXED BY): PostgreSQL's planner would otherwise walk the whole table by
            # its primary key, finished items included, until prune.
            "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (seq) WHERE state = 'pending'",
            "CREATE INDEX IF NOT EXISTS outbox_untold ON outbox (finished_at)"
            " WHERE NOT told AND state IN ('done', 'failed')",
            """CREATE TABLE IF NOT EXISTS notices (
                seq BIGSERIAL PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                peer TEXT NOT NULL,
                text TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                sent_at DOUBLE PRECISION
            )""",
            "CREATE INDEX IF NOT EXISTS notices_unsent ON notices (seq) WHERE sent_at IS NULL",
            # Scanned in pages by its key: "C" orders it by code point, as SQLite does.
            """CREATE TABLE IF NOT EXISTS ticket_watch (
                table_name TEXT COLLATE "C" NOT NULL,
                sys_id TEXT COLLATE "C" NOT NULL,
                number TEXT NOT NULL,
                peer TEXT NOT NULL,
                state TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                active BOOLEAN NOT NULL,
                added_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (table_name, sys_id)
            )""",
        ),
    ),
    (
        3,
        (
            "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS record TEXT",
            "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS retried_at DOUBLE PRECISION",
            "CREATE INDEX IF NOT EXISTS outbox_record ON outbox (record, seq) WHERE state = 'pending'",
        ),
    ),
    (
        4,
        (
            """CREATE TABLE IF NOT EXISTS leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                until DOUBLE PRECISION NOT NULL
            )""",
            "ALTER TABLE auth_codes ADD COLUMN IF NOT EXISTS step BIGINT NOT NULL DEFAULT -1",
            "ALTER TABLE auth_codes ADD COLUMN IF NOT EXISTS used BOOLEAN NOT NULL DEFAULT false",
            "ALTER TABLE auth_codes ADD COLUMN IF NOT EXISTS mailed BOOLEAN NOT NULL DEFAULT false",
            "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS held BOOLEAN NOT NULL DEFAULT false",
            "ALTER TABLE inbox ADD COLUMN IF NOT EXISTS version BIGINT",
        ),
    ),
)

# pg_advisory_xact_lock key held while migrating: workers starting together migrate one at a
# time (the lock is per database). The bytes of "sbot-mig" as a bigint.
MIGRATION_LOCK: Final = int.from_bytes(b"sbot-mig", "big")

_SCHEMES: Final = ("postgresql://", "postgres://")

# A worker whose machine died without closing its connections (power, a frozen VM) holds its
# peer locks and open transactions until the server notices: within about a minute with these,
# not the operating system's two hours.
_KEEPALIVES: Final = {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}

# Waits before each retry of a call broken by a lost connection (see the module docstring).
_RETRY_DELAYS: Final = (0.05, 0.25, 1.0)

# The connection is gone (or could not be made): not an answer about the statement.
_LOST: Final = (
    OSError,  # refused, reset, unreachable (TimeoutError, also an OSError, is excluded below)
    asyncpg.PostgresConnectionError,  # class 08, e.g. "connection was closed in the middle of operation"
    asyncpg.exceptions.AdminShutdownError,  # pg_terminate_backend, a fast shutdown
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,  # the server is starting or stopping
    asyncpg.exceptions.TooManyConnectionsError,  # only at connect time
)
# Errors of one step's own data: that step fails alone (its savepoint undoes it), its batch goes
# on. ValueError covers asyncpg's client-side "invalid input for query argument" (e.g. a lone
# surrogate); ProgramLimitExceededError an over-long value in an indexed column.
_STEP_ERRORS: Final = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError,
                       asyncpg.exceptions.ProgramLimitExceededError, ValueError)

_SELECT_SESSION: Final = "SELECT peer, state, slots, flow_version, updated_at, version FROM sessions WHERE peer = $1"
_INSERT_SESSION: Final = (
    "INSERT INTO sessions (peer, state, slots, flow_version, updated_at, version)"
    " VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT (peer) DO NOTHING RETURNING peer, version"
)
_UPDATE_SESSION: Final = (
    "UPDATE sessions SET state = $2, slots = $3, flow_version = $4, updated_at = $5, version = $6 + 1"
    " WHERE peer = $1 AND version = $6 RETURNING peer, version"
)


def _with_mark(session_sql: str, first: int) -> str:
    """The session write and its event's inbox mark in one statement (parameters from $first:
    event id, received_at, replies). The mark happens only if the session was written, and marks
    the event handled unless it is handled already; no row back means the step is refused (and
    a session already written is undone by the step's savepoint)."""
    e, at, replies = (f"${first + n}" for n in range(3))
    return (
        f"WITH s AS ({session_sql})"
        f" INSERT INTO inbox AS i (event_id, peer, received_at, handled_at, replies, version)"
        f" SELECT {e}, s.peer, {at}, {at}, {replies}, s.version FROM s"
        " ON CONFLICT (event_id) DO UPDATE SET handled_at = excluded.handled_at, body = NULL,"
        " replies = excluded.replies, peer = coalesce(i.peer, excluded.peer), version = excluded.version"
        " WHERE i.handled_at IS NULL RETURNING 1"
    )


_INSERT_SESSION_MARK: Final = _with_mark(_INSERT_SESSION, 6)
_UPDATE_SESSION_MARK: Final = _with_mark(_UPDATE_SESSION, 7)

_OUTBOX_COLUMNS: Final = (
    "id, peer, kind, payload, state, attempts, next_at, created_at, updated_at, last_error, progress,"
    " result, told, record, retried_at, held"
)
_INSERT_OUTBOX: Final = (
    f"INSERT INTO outbox ({_OUTBOX_COLUMNS}, finished_at) VALUES ({', '.join(f'${n}' for n in range(1, 18))})"
)
# An outcome written again (a worker that ran twice) adds its follow-ups once, if their ids are
# derived from the item's; a step's items are new by construction, so a clash there is an error.
_INSERT_FOLLOW_UP: Final = f"{_INSERT_OUTBOX} ON CONFLICT (id) DO NOTHING"
_SELECT_OUTBOX: Final = f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
_FINISH_OUTBOX: Final = (
    "UPDATE outbox SET state = $1, result = $2, progress = $3, attempts = $4, last_error = $5, held = FALSE,"
    " told = told OR $6, updated_at = $7, finished_at = $8"
    f" WHERE id = $9 AND state = '{OUTBOX_PENDING}' RETURNING 1"
)
# Pending items due, oldest first, skipping any with an older pending item on its record. Plain
# enough (no aggregate, no DISTINCT) to take FOR UPDATE SKIP LOCKED when workers claim with it.
_OUTBOX_DUE: Final = (
    f"SELECT {_OUTBOX_COLUMNS} FROM outbox AS o"
    f" WHERE o.state = '{OUTBOX_PENDING}' AND o.next_at <= $1"
    " AND (o.record IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS e WHERE e.record = o.record"
    f" AND e.state = '{OUTBOX_PENDING}' AND e.seq < o.seq))"
    " ORDER BY o.seq LIMIT $2"
)
# Claims what _OUTBOX_DUE picks, at once: rows another worker is claiming are skipped, not
# waited for. $3 maps kinds to lease seconds, $4 is the lease of any other kind.
_OUTBOX_TAKE: Final = (
    f"WITH due AS ({_OUTBOX_DUE.replace('SELECT ' + _OUTBOX_COLUMNS, 'SELECT o.id')} FOR UPDATE OF o SKIP LOCKED)"
    " UPDATE outbox AS u SET attempts = u.attempts + 1, updated_at = $1, held = TRUE,"
    " next_at = $1 + coalesce(($3::jsonb ->> u.kind)::double precision, $4)"
    f" FROM due WHERE u.id = due.id RETURNING u.seq, {', '.join('u.' + c for c in _OUTBOX_COLUMNS.split(', '))}"
)
_ACQUIRE_LEASE: Final = (
    "INSERT INTO leases AS l (name, holder, until) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE"
    " SET holder = excluded.holder, until = excluded.until WHERE l.holder = excluded.holder OR l.until <= $4"
    " RETURNING 1"
)
_INSERT_NOTICE: Final = (
    "INSERT INTO notices (id, peer, text, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING"
)
# A ticket followed already keeps what was last seen of it; it goes to the chat that follows it
# now (its owner signed in there), so a chat they left hears no more of it.
_INSERT_WATCH: Final = (
    "INSERT INTO ticket_watch (table_name, sys_id, number, peer, state, updated_at, active, added_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (table_name, sys_id) DO UPDATE SET peer = excluded.peer"
)
_WATCH_COLUMNS: Final = "table_name, sys_id, number, peer, state, updated_at, active"
# A follow-up step's replies replace the earlier event's only while those are kept unsent.
_REPLACE_REPLIES: Final = (
    "UPDATE inbox SET replies = $1, version = $3 WHERE event_id = $2 AND replies IS NOT NULL"
)
# Whether a later step of the peer has committed since these kept replies' step.
_OVERTAKEN: Final = "EXISTS (SELECT 1 FROM sessions AS s WHERE s.peer = i.peer AND s.version > i.version)"

# What a step came to: committed (True), refused (False), or its own error.
_StepResult = bool | Exception


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release than this one."""


def postgres_dsn_from_url(url: str) -> str:
    """The asyncpg DSN for a postgresql:// or postgres:// URL: the URL itself, once checked."""
    if not url.lower().startswith(_SCHEMES):
        raise ValueError(f"not a PostgreSQL URL: {url!r}; expected postgresql://USER@HOST:PORT/DB")
    return url


async def open_postgres(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float = 30.0,
    max_batch: int = 1000,
    application_name: str = "supportbot",
    lock_connections: int = 2,
) -> PostgresStorage:
    """Connect a pool to the database at dsn (a postgresql:// URL) and migrate its schema.

    Workers starting together are safe: they migrate one after another under an advisory lock.
    A database whose schema is newer than this program knows is refused (SchemaTooNew)."""
    url = postgres_dsn_from_url(dsn)
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        server_settings={"application_name": application_name, **_KEEPALIVES},
        # Nothing here sets session state (no LISTEN, SET, cursors or session locks; the peer
        # locks have their own connections): asyncpg's default reset would cost a round trip
        # per call. An open transaction is still rolled back on release.
        reset=_keep_session,
    )
    try:
        async with pool.acquire() as conn:
            await _migrate(conn)
    except BaseException:
        pool.terminate()
        raise

    async def connect_locks() -> Any:
        return await asyncpg.connect(url, timeout=command_timeout,
                               server_settings={"application_name": f"{application_name} peer locks", **_KEEPALIVES})

    return PostgresStorage(pool, max_batch=max_batch, close_timeout=command_timeout,
                           locks=AdvisoryPeerLocks(connect_locks, shards=lock_connections))


async def _keep_session(conn: Any) -> None:
    return None


async def _migrate(conn: Any) -> None:
    async with conn.transaction():
        # Taken before anything is read: the first worker migrates, the others wait and then
        # find every version applied. The lock ends with the transaction.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        # DDL only when something is missing: a role without CREATE can run a migrated database.
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
        applied = {int(r[0]) for r in await conn.fetch("SELECT version FROM schema_migrations")}
        known = MIGRATIONS[-1][0]
        newest = max(applied, default=0)
        if newest > known:
            raise SchemaTooNew(
                f"database schema version {newest} is newer than this program knows ({known});"
                " upgrade the program instead of running an older one on this database"
            )
        for version, statements in MIGRATIONS:
            if version in applied:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", version, time.time()
            )
            log.info("database schema migrated to version %d", version)


def _lost(exc: BaseException, conn: Any) -> bool:
    """Whether exc says the connection is gone, rather than answering the statement."""
    if isinstance(exc, TimeoutError):  # command_timeout: the statement was slow, not the link
        return False
    if isinstance(exc, _LOST):
        return True
    if isinstance(exc, asyncpg.InternalClientError):
        # "cannot switch to state …; another operation is in progress": a pooled connection whose
        # server said goodbye (e.g. it was terminated) before asyncpg saw it close. Nothing was sent.
        return True
    if isinstance(exc, asyncpg.InterfaceError):  # "connection is closed", "released back to the pool"
        return conn is not None and _is_closed(conn)
    return False


def _is_closed(conn: Any) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:  # asyncpg released it to the pool when it closed
        return True


def _terminate(conn: Any) -> None:
    try:
        conn.terminate()
    except asyncpg.InterfaceError:  # released already
        pass


def _rows_changed(status: str) -> int:
    """Rows a DELETE/UPDATE/INSERT changed, from its command tag ("DELETE 3")."""
    return int(status.rsplit(" ", 1)[-1])


class _Undone(Exception):
    """A batch of one step that did not stand: raised to roll its transaction back."""

    def __init__(self, result: _StepResult) -> None:
        super().__init__("step not written")
        self.result = result


async def _write_steps(conn: Any, rows: Sequence[_StepRow], received_at: float) -> list[_StepResult]:
    """One group commit's statements, inside the caller's transaction: a savepoint per step.
    A batch of one (users stepping one after another) needs none: the transaction is its
    savepoint, rolled back by raising _Undone — one round trip less."""
    if len(rows) == 1:
        only = await _try_step(conn, rows[0], received_at)
        if only is not True:
            raise _Undone(only)
        return [True]
    results: list[_StepResult] = []
    kept = True  # whether the last step was kept (its savepoint must move on past it)
    for n, row in enumerate(rows):
        # The savepoint marks the state after the last kept step: a refused step rolls back to
        # it (and leaves it in place for the next), a kept one moves it on.
        if n == 0:
            await conn.execute("SAVEPOINT step")
        elif kept:
            await conn.execute("RELEASE SAVEPOINT step; SAVEPOINT step")
        result = await _try_step(conn, row, received_at)
        kept = result is True
        if not kept:
            await conn.execute("ROLLBACK TO SAVEPOINT step")
        results.append(result)
    return results


async def _try_step(conn: Any, row: _StepRow, received_at: float) -> _StepResult:
    try:
        return await _write_step(conn, row, received_at)
    except _STEP_ERRORS as exc:
        return exc


async def _write_step(conn: Any, row: _StepRow, received_at: float) -> bool:
    peer, state, slots, flow_version, updated_at, expected, event_id, replies, outbox, reply_of, outcomes = row
    session: tuple[Any, ...] = (peer, state, slots, flow_version, updated_at)
    if expected != 0:
        session += (expected,)
    if event_id is None:
        sql = _INSERT_SESSION if expected == 0 else _UPDATE_SESSION
        written = await conn.fetchval(sql, *session)
    else:
        sql = _INSERT_SESSION_MARK if expected == 0 else _UPDATE_SESSION_MARK
        written = await conn.fetchval(sql, *session, event_id, received_at, replies)
    if written is None:
        return False
    if outbox:  # most steps queue nothing: no statement for them at all
        await conn.executemany(_INSERT_OUTBOX, outbox)
    for outcome in outcomes:
        # An outcome recorded meanwhile (the worker stopped waiting for this step) means it was
        # told already: the step would tell it twice, so it fails as a whole.
        if not await _apply_outcome(conn, outcome):
            return False
    # Already sent (or never kept) is no failure: the replies then go out live only.
    if reply_of is not None and replies is not None:
        await conn.execute(_REPLACE_REPLIES, replies, reply_of, expected + 1)
    return True


async def _apply_outcome(conn: Any, rows: _OutcomeRows) -> bool:
    """Pending only: an item finished by another attempt, or dropped by an admin meanwhile, is
    left as it is and nothing follows from this outcome."""
    update, notices, follow_ups, watch = rows
    if await conn.fetchval(_FINISH_OUTBOX, *update) is None:
        return False
    if notices:
        await conn.executemany(_INSERT_NOTICE, notices)
    if follow_ups:
        await conn.executemany(_INSERT_FOLLOW_UP, follow_ups)
    if watch:
        await conn.executemany(_INSERT_WATCH, watch)
    return True











class PostgresStorage:
    """The Storage port on an asyncpg pool; see the module docstring for the write path and
    the retry rule. Make one with open_postgres, which migrates the database first."""

    shared = True  # several worker processes on one database

    def __init__(self, pool: Any, *, locks: AdvisoryPeerLocks, max_batch: int = 1000,
                 close_timeout: float = 30.0) -> None:
        self._pool = pool
        self._locks = locks
        self._max_batch = max(1, max_batch)
        self._close_timeout = close_timeout
        self._pending: list[tuple[_StepRow, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._calls = 0  # calls in flight, waited for by close()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._closer: asyncio.Future[None] | None = None
        self._closed = False
        self._batches = 0
        self._steps = 0

    @property
    def commit_stats(self) -> CommitStats:
        return CommitStats(self._batches, self._steps)

    # ----------------------------------------------------------------- running calls

    async def _read(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """A read: retried after any lost connection."""
        return await self._call(fn, transaction=False, repeatable=True)

    async def _put(self, fn: Callable[[Any], Awaitable[T]], *, transaction: bool = False) -> T:
        """A write that leaves the same state when repeated: retried after any lost connection."""
        return await self._call(fn, transaction=transaction, repeatable=True)

    async def _write(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Any other write: in a transaction, retried only if the connection broke before COMMIT."""
        return await self._call(fn, transaction=True, repeatable=False)

    async def _call(self, fn: Callable[[Any], Awaitable[T]], *, transaction: bool, repeatable: bool) -> T:
        if self._closed:
            raise StorageClosed("PostgreSQL storage is closed")
        self._calls += 1
        self._idle.clear()
        try:
            return await self._attempts(fn, transaction=transaction, repeatable=repeatable)
        finally:
            self._calls -= 1
            if self._calls == 0:
                self._idle.set()

    async def _attempts(self, fn: Callable[[Any], Awaitable[T]], *, transaction: bool, repeatable: bool) -> T:
        for delay in (*_RETRY_DELAYS, None):
            conn = None
            # Whether the database may have applied the call if the connection broke now.
            maybe_applied = False
            try:
                conn = await self._pool.acquire()
                if transaction:
                    async with conn.transaction():
                        result = await fn(conn)
                        maybe_applied = True  # COMMIT is sent as the block ends
                else:
                    maybe_applied = True
                    result = await fn(conn)
                return result
            except Exception as exc:
                rolled_back = isinstance(exc, asyncpg.TransactionRollbackError)  # deadlock, serialization
                lost = _lost(exc, conn)
                if lost:
                    if conn is not None:
                        _terminate(conn)  # not handed out again
                    # Its idle siblings likely died with it (a restart): the next acquisitions
                    # connect afresh rather than each finding a dead one first.
                    await self._pool.expire_connections()
                retry = rolled_back or (lost and (repeatable or not maybe_applied))
                if delay is None or not retry:
                    raise
                log.warning("PostgreSQL call failed (%s: %s); trying again in %.2f s", type(exc).__name__, exc, delay)
            finally:
                if conn is not None:
                    await self._release(conn)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the last round returns or raises

    async def _release(self, conn: Any) -> None:
        try:
            await self._pool.release(conn)
        except Exception as exc:
            # The call's outcome stands; asyncpg has terminated the connection it could not reset.
            log.debug("PostgreSQL connection not reusable after release: %s", exc)

    # ----------------------------------------------------------------- sessions

    async def load_session(self, peer: str) -> Session | None:
        row = await self._read(lambda conn: conn.fetchrow(_SELECT_SESSION, peer))
        if row is None:
            return None
        peer_, state, slots, flow_version, updated_at, version = row
        return Session(peer_, state, json.loads(slots), flow_version, updated_at, version)

    async def commit_step(self, step: StepCommit) -> bool:
        if self._closing:
            raise StorageClosed("PostgreSQL storage is closed")
        row = _encode(step)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        """Write queued steps batch after batch until the queue is empty."""
        batch: list[tuple[_StepRow, asyncio.Future[bool]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                # Peer order: concurrent batches of several workers lock sessions in one order.
                # The sort is stable, so one peer's steps keep the order they were made in.
                batch.sort(key=lambda entry: entry[0][0])
                rows = [row for row, _ in batch]

                async def write(conn: Any, rows: list[_StepRow] = rows) -> list[_StepResult]:
                    return await _write_steps(conn, rows, time.time())

                try:
                    results = await self._attempts(write, transaction=True, repeatable=False)
                except _Undone as undone:  # a batch of one, refused or failing: rolled back whole
                    results = [undone.result]
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    batch = []
                    continue
                self._batches += 1
                self._steps += len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # the caller may have been cancelled meanwhile
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        except BaseException:
            # Cancelled (loop shutting down): whether the batch in flight committed is unknown,
            # so its callers and everyone still queued are cancelled rather than left waiting.
            for _, future in batch + self._pending:
                future.cancel()
            self._pending.clear()
            raise
        finally:
            self._flusher = None

    # ----------------------------------------------------------------- bindings

    async def get_binding(self, peer: str) -> Binding | None:
        row = await self._read(
            lambda conn: conn.fetchrow("SELECT peer, email, caller_id, name, bound_at FROM bindings WHERE peer = $1",
                                       peer)
        )
        return None if row is None else Binding(*row)

    async def put_binding(self, binding: Binding) -> None:
        b = binding
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO bindings (peer, email, caller_id, name, bound_at) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (peer) DO UPDATE SET email = excluded.email, caller_id = excluded.caller_id,"
                " name = excluded.name, bound_at = excluded.bound_at",
                b.peer, b.email, b.caller_id, b.name, b.bound_at,
            )
        )

    async def delete_binding(self, peer: str) -> None:
        await self._write(lambda conn: conn.execute("DELETE FROM bindings WHERE peer = $1", peer))

    # ----------------------------------------------------------------- sign-in codes

    async def put_code(self, code: PendingCode) -> None:
        c = code
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO auth_codes"
                " (peer, email, code_hash, salt, created_at, expires_at, attempts, step, used, mailed)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                " ON CONFLICT (peer) DO UPDATE SET email = excluded.email, code_hash = excluded.code_hash,"
                " salt = excluded.salt, created_at = excluded.created_at, expires_at = excluded.expires_at,"
                " attempts = excluded.attempts, step = excluded.step, used = excluded.used, mailed = excluded.mailed",
                c.peer, c.email, c.code_hash, c.salt, c.created_at, c.expires_at, c.attempts, c.step, c.used,
                c.mailed,
            )
        )

    async def get_code(self, peer: str) -> PendingCode | None:
        row = await self._read(
            lambda conn: conn.fetchrow(
                "SELECT peer, email, code_hash, salt, created_at, expires_at, attempts, step, used, mailed"
                " FROM auth_codes WHERE peer = $1",
                peer,
            )
        )
        if row is None:
            return None
        peer_, email, code_hash, salt, created_at, expires_at, attempts, step, used, mailed = row
        return PendingCode(peer_, email, bytes(code_hash), bytes(salt), created_at, expires_at, attempts, step, used,
                           mailed)

    async def add_code_attempt(self, peer: str) -> int:
        attempts = await self._write(
            lambda conn: conn.fetchval(
                "UPDATE auth_codes SET attempts = attempts + 1 WHERE peer = $1 RETURNING attempts", peer
            )
        )
        return 0 if attempts is None else int(attempts)

    async def delete_code(self, peer: str) -> None:
        await self._write(lambda conn: conn.execute("DELETE FROM auth_codes WHERE peer = $1", peer))

    async def record_code_sent(self, peer: str, email: str, at: float) -> None:
        await self._write(
            lambda conn: conn.execute("INSERT INTO auth_sends (peer, email, sent_at) VALUES ($1, $2, $3)",
                                      peer, email, at)
        )

    async def code_send_stats(self, peer: str, email: str, since: float) -> SendStats:
        """Sends at or after since: by this peer, to this email, by the pair, the pair's latest."""
        row = await self._read(
            lambda conn: conn.fetchrow(
                "SELECT count(*) FILTER (WHERE peer = $1), count(*) FILTER (WHERE email = $2),"
                " count(*) FILTER (WHERE peer = $1 AND email = $2),"
                " max(sent_at) FILTER (WHERE peer = $1 AND email = $2)"
                " FROM auth_sends WHERE (peer = $1 OR email = $2) AND sent_at >= $3",
                peer, email, since,
            )
        )
        by_peer, by_email, by_pair, last_pair = row
        return SendStats(int(by_peer), int(by_email), int(by_pair), last_pair)

    # ----------------------------------------------------------------- inbox and cursors

    async def seen_event(self, event_id: str) -> bool:
        row = await self._read(
            lambda conn: conn.fetchval("SELECT 1 FROM inbox WHERE event_id = $1 AND handled_at IS NOT NULL", event_id)
        )
        return row is not None

    async def seen_events(self, event_ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return set()
        rows = await self._read(
            lambda conn: conn.fetch(
                "SELECT event_id FROM inbox WHERE handled_at IS NOT NULL AND event_id = ANY($1::text[])", ids
            )
        )
        return {str(r[0]) for r in rows}

    async def inbox_add(self, event_id: str, peer: str, body: str) -> bool:
        # Not repeatable (a second run would answer "duplicate"): in a transaction, see _write.
        inserted = await self._write(
            lambda conn: conn.fetchval(
                "INSERT INTO inbox (event_id, peer, body, received_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (event_id) DO NOTHING RETURNING 1",
                event_id, peer, body, time.time(),
            )
        )
        return inserted is not None

    async def inbox_pending(self, limit: int = 1000, received_before: float = math.inf) -> list[InboxEvent]:
        rows = await self._read(
            lambda conn: conn.fetch(
                "SELECT event_id, peer, body, received_at FROM inbox WHERE handled_at IS NULL"
                " AND received_at < $2 ORDER BY seq LIMIT $1",
                limit, received_before,
            )
        )
        return [InboxEvent(e, p or "", b or "", r) for e, p, b, r in rows]

    async def inbox_mark_handled(self, event_ids: Sequence[str]) -> None:
        ids = list(event_ids)
        if ids:
            await self._put(
                lambda conn: conn.execute(
                    "UPDATE inbox SET handled_at = $1, body = NULL WHERE event_id = ANY($2::text[])"
                    " AND handled_at IS NULL",
                    time.time(), ids,
                )
            )

    async def replies_unsent(self, limit: int = 1000, handled_before: float = math.inf) -> list[UnsentReplies]:
        rows = await self._read(
            lambda conn: conn.fetch(
                f"SELECT event_id, peer, replies, {_OVERTAKEN} FROM inbox AS i"
                " WHERE replies IS NOT NULL AND handled_at < $2 ORDER BY seq LIMIT $1",
                limit, handled_before,
            )
        )
        return [UnsentReplies(e, p or "", r, bool(o)) for e, p, r, o in rows]

    async def replies_sent(self, event_ids: Sequence[str]) -> None:
        ids = list(event_ids)
        if ids:
            await self._put(
                lambda conn: conn.execute(
                    "UPDATE inbox SET sent_at = $1, replies = NULL WHERE event_id = ANY($2::text[])", time.time(), ids
                )
            )

    # ----------------------------------------------------------------- one process at a time

    def peer_lock(self, peer: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(peer)

    async def lease_acquire(self, name: str, holder: str, now: float, until: float) -> bool:
        # Repeating it leaves the same state (the holder's own lease, renewed): safe to retry.
        taken = await self._put(lambda conn: conn.fetchval(_ACQUIRE_LEASE, name, holder, until, now))
        return taken is not None

    async def lease_release(self, name: str, holder: str) -> None:
        await self._put(lambda conn: conn.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder))

    async def get_cursor(self, name: str) -> str | None:
        value = await self._read(lambda conn: conn.fetchval("SELECT value FROM cursors WHERE name = $1", name))
        return None if value is None else str(value)

    async def put_cursor(self, name: str, value: str) -> None:
        await self._put(
            lambda conn: conn.execute(
                "INSERT INTO cursors (name, value, updated_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                name, value, time.time(),
            )
        )

    # ----------------------------------------------------------------- outbox

    async def outbox_due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        rows = await self._read(lambda conn: conn.fetch(_OUTBOX_DUE, now, limit))
        return [_outbox_item(r) for r in rows]

    async def outbox_take(self, now: float, leases: Mapping[str, float], limit: int = 100) -> list[OutboxItem]:
        longest = max(leases.values(), default=0.0)
        rows = await self._write(
            lambda conn: conn.fetch(_OUTBOX_TAKE, now, limit, json.dumps(dict(leases)), longest)
        )
        return [_outbox_item(r[1:]) for r in sorted(rows, key=lambda r: r[0])]

    async def outbox_get(self, item_id: str) -> OutboxItem | None:
        row = await self._read(lambda conn: conn.fetchrow(f"{_SELECT_OUTBOX} WHERE id = $1", item_id))
        return None if row is None else _outbox_item(row)

    async def outbox_save(self, item: OutboxItem) -> None:
        i = item
        # Pending only: an item finished, retried or dropped meanwhile is not written back.
        await self._put(
            lambda conn: conn.execute(
                "UPDATE outbox SET attempts = $1, next_at = $2, updated_at = $3, last_error = $4, progress = $5,"
                f" held = $7 WHERE id = $6 AND state = '{OUTBOX_PENDING}'",
                i.attempts, i.next_at, i.updated_at, i.last_error, _json(i.progress), i.id, i.held,
            )
        )

    async def outbox_lease(self, item_id: str, held_until: float, until: float, attempts: int = 0) -> bool:
        moved = await self._write(
            lambda conn: conn.fetchval(
                "UPDATE outbox SET next_at = $1, attempts = greatest(0, attempts + $2), held = $5"
                f" WHERE id = $3 AND state = '{OUTBOX_PENDING}' AND next_at = $4 RETURNING 1",
                until, attempts, item_id, held_until, attempts >= 0,
            )
        )
        return moved is not None

    async def outbox_finish(self, outcome: OutboxOutcome) -> bool:
        rows = _encode_outcome(outcome)
        return await self._write(lambda conn: _apply_outcome(conn, rows))

    async def outbox_list(self, states: Sequence[str] = (), limit: int = 100) -> list[OutboxItem]:
        wanted = list(dict.fromkeys(states))
        if wanted:
            rows = await self._read(
                lambda conn: conn.fetch(f"{_SELECT_OUTBOX} WHERE state = ANY($1::text[]) ORDER BY seq LIMIT $2",
                                        wanted, limit)
            )
        else:
            rows = await self._read(lambda conn: conn.fetch(f"{_SELECT_OUTBOX} ORDER BY seq LIMIT $1", limit))
        return [_outbox_item(r) for r in rows]

    async def outbox_untold(self, finished_before: float, limit: int = 100) -> list[OutboxItem]:
        # The WHERE repeats the partial index's terms, so the planner can use it.
        rows = await self._read(
            lambda conn: conn.fetch(
                f"{_SELECT_OUTBOX} WHERE NOT told AND state IN ('{OUTBOX_DONE}', '{OUTBOX_FAILED}')"
                " AND finished_at <= $1 ORDER BY finished_at, seq LIMIT $2",
                finished_before, limit,
            )
        )
        return [_outbox_item(r) for r in rows]

    async def outbox_tell(self, item_id: str, notice: Notice | None) -> bool:
        async def tell(conn: Any) -> bool:
            # The told flag is the once-only guard: whoever flips it tells, nobody else.
            if await conn.fetchval("UPDATE outbox SET told = TRUE WHERE id = $1 AND NOT told RETURNING 1",
                                   item_id) is None:
                return False
            if notice is not None:
                await conn.execute(_INSERT_NOTICE, *_notice_row(notice))
            return True

        return await self._write(tell)

    async def outbox_retry(self, item_id: str, now: float) -> bool:
        # progress, attempts and last_error stay: the retry goes on from what was done (attempts
        # tell the worker an earlier try may have got through), and the last error is worth
        # seeing until a new attempt replaces it. retried_at restarts the give-up clock.
        retried = await self._write(
            lambda conn: conn.fetchval(
                f"UPDATE outbox SET state = '{OUTBOX_PENDING}', next_at = $1, updated_at = $1, retried_at = $1,"
                " finished_at = NULL, told = FALSE, result = NULL, held = FALSE"
                f" WHERE id = $2 AND (state = '{OUTBOX_FAILED}'"
                f" OR state = '{OUTBOX_PENDING}' AND (NOT held OR next_at <= $1)) RETURNING 1",
                now, item_id,
            )
        )
        return retried is not None

    async def outbox_drop(self, item_id: str) -> OutboxItem | None:
        row = await self._write(
            lambda conn: conn.fetchrow(
                f"DELETE FROM outbox WHERE id = $1 AND state IN ('{OUTBOX_PENDING}', '{OUTBOX_FAILED}')"
                f" RETURNING {_OUTBOX_COLUMNS}",
                item_id,
            )
        )
        return None if row is None else _outbox_item(row)

    # ----------------------------------------------------------------- notices

    async def notices_add(self, notices: Sequence[Notice]) -> None:
        rows = [_notice_row(n) for n in notices]
        if rows:
            await self._put(lambda conn: conn.executemany(_INSERT_NOTICE, rows), transaction=True)

    async def notices_unsent(self, limit: int = 100) -> list[Notice]:
        rows = await self._read(
            lambda conn: conn.fetch(
                "SELECT id, peer, text, created_at FROM notices WHERE sent_at IS NULL ORDER BY seq LIMIT $1", limit
            )
        )
        return [Notice(*r) for r in rows]

    async def notices_sent(self, notice_ids: Sequence[str]) -> None:
        ids = list(notice_ids)
        if ids:
            # The first sending counts: a resend does not push back its pruning.
            await self._put(
                lambda conn: conn.execute(
                    "UPDATE notices SET sent_at = $1 WHERE id = ANY($2::text[]) AND sent_at IS NULL", time.time(), ids
                )
            )

    # ----------------------------------------------------------------- watched tickets

    async def watch_add(self, tickets: Sequence[WatchedTicket]) -> None:
        now = time.time()
        rows = [_watch_row(t, now) for t in tickets]
        if rows:
            await self._put(lambda conn: conn.executemany(_INSERT_WATCH, rows), transaction=True)

    async def watch_list(self, after: tuple[str, str] = ("", ""), limit: int = 500) -> list[WatchedTicket]:
        # A row comparison walks the primary key from the last page's end.
        rows = await self._read(
            lambda conn: conn.fetch(
                f"SELECT {_WATCH_COLUMNS} FROM ticket_watch WHERE (table_name, sys_id) > ($1, $2)"
                " ORDER BY table_name, sys_id LIMIT $3",
                after[0], after[1], limit,
            )
        )
        return [WatchedTicket(*r) for r in rows]

    async def watch_update(self, seen: Sequence[WatchedTicket], notices: Sequence[Notice]) -> None:
        # An UPDATE, not an upsert: a ticket dropped while it was being looked at stays dropped.
        updates = [(t.number, t.state, t.updated_at, t.active, t.table, t.sys_id) for t in seen]
        rows = [_notice_row(n) for n in notices]

        async def update(conn: Any) -> None:
            if updates:
                await conn.executemany(
                    "UPDATE ticket_watch SET number = $1, state = $2, updated_at = $3, active = $4"
                    " WHERE table_name = $5 AND sys_id = $6",
                    updates,
                )
            if rows:
                await conn.executemany(_INSERT_NOTICE, rows)

        if updates or rows:
            await self._put(update, transaction=True)

    async def watch_drop(self, keys: Sequence[tuple[str, str]]) -> None:
        rows = [(table, sys_id) for table, sys_id in keys]
        if rows:
            await self._put(
                lambda conn: conn.executemany("DELETE FROM ticket_watch WHERE table_name = $1 AND sys_id = $2", rows),
                transaction=True,
            )

    # ----------------------------------------------------------------- upkeep

    async def prune(self, older_than: float) -> int:
        """Delete what is done with and older than the given time: handled inbox events, code
        sends, expired codes, sent notices, and outbox items done and told. Returns rows deleted."""

        async def delete(conn: Any) -> int:
            statements = (
                # Handled events only: one received but not yet handled is work still to do.
                "DELETE FROM inbox WHERE received_at < $1 AND handled_at IS NOT NULL",
                "DELETE FROM auth_sends WHERE sent_at < $1",
                "DELETE FROM auth_codes WHERE expires_at < $1",
                # Unsent notices (sent_at NULL) are never older than anything.
                "DELETE FROM notices WHERE sent_at < $1",
                # Failed items wait for an operator, untold ones for the user to hear of them.
                f"DELETE FROM outbox WHERE state = '{OUTBOX_DONE}' AND told AND finished_at < $1",
            )
            return sum([_rows_changed(await conn.execute(sql, older_than)) for sql in statements])

        return await self._write(delete)

    async def close(self) -> None:
        """Commit every queued step, let calls in flight end, then close the pool. Calling it
        again does nothing; any other call afterwards raises StorageClosed."""
        # One closing task whoever calls: a close() cancelled half way cannot leave the storage
        # half closed, since the next call waits for the same task.
        if self._closer is None:
            self._closing = True
            self._closer = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closer)

    async def _close(self) -> None:
        while self._flusher is not None:
            await asyncio.wait({self._flusher})
        await self._idle.wait()
        self._closed = True
        await self._locks.close()
        try:
            await asyncio.wait_for(self._pool.close(), self._close_timeout)
        except TimeoutError:
            log.warning("PostgreSQL pool did not close within %.0f s; terminating it", self._close_timeout)
            self._pool.terminate()
