"""SQLite storage: the embedded default (aiosqlite, WAL).

The hot path is `commit_step`. The engine keeps sessions cached in process, so a step costs one
write and nothing else; this adapter makes that write one hop into aiosqlite's worker thread and
commits the steps of concurrent peers together (group commit):

- `commit_step` queues (row, future) and, if no write is in flight, starts a flusher task;
- the flusher takes everything queued, runs all the version-checked upserts and inbox inserts
  plus one COMMIT in a single call on the worker thread, then resolves each caller's future;
- steps that arrive meanwhile wait for the next round, so the batch grows with the load;
- a failed version check answers False to that caller only; an exception rolls the whole batch
  back and is raised to every caller in it;
- a future is resolved only after COMMIT returned, so no reply is sent for an uncommitted step.

A step's outbox items, its "told" marks and its follow-up replies are written inside the step's
savepoint, after its version check and inbox mark: a refused step leaves none of them behind.

synchronous=NORMAL in WAL mode keeps every commit across a process crash; an OS crash or power
loss may drop the last few commits (pass synchronous="FULL" where that matters more than speed).
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast
from urllib.parse import unquote

import aiosqlite

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
    "CommitStats",
    "SqliteStorage",
    "StorageClosed",
    "open_sqlite",
    "sqlite_path_from_url",
]

T = TypeVar("T")

# Versioned schema changes, applied in order at start, each once (recorded in schema_migrations).
# Append only: never edit a released entry. Statements are idempotent (IF NOT EXISTS) so a
# database whose bookkeeping was lost still migrates cleanly.
MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = (
    (
        1,
        (
            """CREATE TABLE IF NOT EXISTS sessions (
                peer TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                slots TEXT NOT NULL,
                flow_version TEXT NOT NULL,
                version INTEGER NOT NULL,
                updated_at REAL NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS bindings (
                peer TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                caller_id TEXT NOT NULL,
                name TEXT NOT NULL,
                bound_at REAL NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS bindings_email ON bindings (email)",
            """CREATE TABLE IF NOT EXISTS auth_codes (
                peer TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                code_hash BLOB NOT NULL,
                salt BLOB NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE IF NOT EXISTS auth_sends (
                peer TEXT NOT NULL,
                email TEXT NOT NULL,
                sent_at REAL NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS auth_sends_peer ON auth_sends (peer, sent_at)",
            "CREATE INDEX IF NOT EXISTS auth_sends_email ON auth_sends (email, sent_at)",
            "CREATE INDEX IF NOT EXISTS auth_sends_sent_at ON auth_sends (sent_at)",
            # Channel events: recorded when received (with the raw event, for a callback that
            # was answered before it was handled) and marked handled by the step's commit.
            # seq orders pending events as they arrived (timestamps can tie).
            """CREATE TABLE IF NOT EXISTS inbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL UNIQUE,
                peer TEXT,
                body TEXT,
                received_at REAL NOT NULL,
                handled_at REAL,
                replies TEXT,
                sent_at REAL
            )""",
            "CREATE INDEX IF NOT EXISTS inbox_received_at ON inbox (received_at)",
            "CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (seq) WHERE handled_at IS NULL",
            "CREATE INDEX IF NOT EXISTS inbox_unsent ON inbox (seq) WHERE replies IS NOT NULL",
            # Small named positions that must survive a restart (the long-poll ts).
            """CREATE TABLE IF NOT EXISTS cursors (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at REAL NOT NULL
            )""",
        ),
    ),
    (
        2,
        (
            # SimpleOne work committed with the step that decided it. seq is the order of
            # insertion (an INTEGER PRIMARY KEY, so VACUUM keeps it; created_at can tie).
            # finished_at is set when the item became done or failed, in the engine's clock.
            """CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                peer TEXT NOT NULL,
                kind TEXT NOT NULL,
                payload TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at REAL NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                finished_at REAL,
                last_error TEXT NOT NULL DEFAULT '',
                progress TEXT NOT NULL DEFAULT '{}',
                result TEXT,
                told INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at) WHERE state = 'pending'",
            "CREATE INDEX IF NOT EXISTS outbox_untold ON outbox (finished_at)"
            " WHERE told = 0 AND state IN ('done', 'failed')",
            # Messages sent unasked; id makes each once-only, seq keeps their order.
            """CREATE TABLE IF NOT EXISTS notices (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                peer TEXT NOT NULL,
                text TEXT NOT NULL,
                created_at REAL NOT NULL,
                sent_at REAL
            )""",
            "CREATE INDEX IF NOT EXISTS notices_unsent ON notices (seq) WHERE sent_at IS NULL",
            # Tickets followed for status notices, scanned in pages by their key.
            """CREATE TABLE IF NOT EXISTS ticket_watch (
                table_name TEXT NOT NULL,
                sys_id TEXT NOT NULL,
                number TEXT NOT NULL,
                peer TEXT NOT NULL,
                state TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                active INTEGER NOT NULL,
                added_at REAL NOT NULL,
                PRIMARY KEY (table_name, sys_id)
            )""",
        ),
    ),
    (
        3,
        (
            # The record an item writes to: items on one record go in order (the due query
            # looks for an older pending one); and when an admin's retry restarted the clock.
            "ALTER TABLE outbox ADD COLUMN record TEXT",
            "ALTER TABLE outbox ADD COLUMN retried_at REAL",
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
                until REAL NOT NULL
            )""",
            # The step that last wrote a sign-in code (PendingCode.step), and whether it was used.
            "ALTER TABLE auth_codes ADD COLUMN step INTEGER NOT NULL DEFAULT -1",
            "ALTER TABLE auth_codes ADD COLUMN used INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE auth_codes ADD COLUMN mailed INTEGER NOT NULL DEFAULT 0",
            # An item in a worker's hands (OutboxItem.held): an admin's retry leaves it alone.
            "ALTER TABLE outbox ADD COLUMN held INTEGER NOT NULL DEFAULT 0",
            # The session version the event's step made: kept replies a later step has
            # overtaken are resent without their (stale) keyboard.
            "ALTER TABLE inbox ADD COLUMN version INTEGER",
        ),
    ),
)

_URL_PREFIX: Final = "sqlite:///"
_URL_FORMS: Final = "sqlite:///relative.db, sqlite:////absolute/path.db or sqlite:///:memory:"

_SELECT_SESSION: Final = (
    "SELECT peer, state, slots, flow_version, updated_at, version FROM sessions WHERE peer = ?"
)
_INSERT_SESSION: Final = (
    "INSERT INTO sessions (peer, state, slots, flow_version, updated_at, version)"
    " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (peer) DO NOTHING"
)
_UPDATE_SESSION: Final = (
    "UPDATE sessions SET state = ?, slots = ?, flow_version = ?, updated_at = ?, version = ?"
    " WHERE peer = ? AND version = ?"
)
# The step marks its event handled, whether or not it was recorded on receipt (long poll events
# are not) — unless it is handled already: then nothing changes, and the step is undone. The
# engine checks before it steps; this makes "handled once" hold even when two writers race.
_MARK_HANDLED: Final = (
    "INSERT INTO inbox (event_id, peer, received_at, handled_at, replies, version) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (event_id) DO UPDATE SET handled_at = excluded.handled_at, body = NULL,"
    " replies = excluded.replies, peer = coalesce(inbox.peer, excluded.peer), version = excluded.version"
    " WHERE inbox.handled_at IS NULL"
)

_OUTBOX_COLUMNS: Final = (
    "id, peer, kind, payload, state, attempts, next_at, created_at, updated_at, last_error, progress,"
    " result, told, record, retried_at, held"
)
_INSERT_OUTBOX: Final = (
    f"INSERT INTO outbox ({_OUTBOX_COLUMNS}, finished_at) VALUES ({', '.join('?' * 17)})"
)
# An outcome written again (a worker that ran twice) adds its follow-ups once, if their ids are
# derived from the item's; a step's items are new by construction, so a clash there is an error.
_INSERT_FOLLOW_UP: Final = _INSERT_OUTBOX.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
_SELECT_OUTBOX: Final = f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
# Due pending items, oldest first, leaving out those behind an older pending one on their record.
_OUTBOX_DUE: Final = (
    # INDEXED BY: the planner would scan the whole table (finished items included).
    f"SELECT {_OUTBOX_COLUMNS} FROM outbox AS o INDEXED BY outbox_due"
    f" WHERE state = '{OUTBOX_PENDING}' AND next_at <= ?"
    " AND (record IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS e WHERE e.record = o.record"
    f" AND e.state = '{OUTBOX_PENDING}' AND e.seq < o.seq))"
    " ORDER BY seq LIMIT ?"
)
_INSERT_NOTICE: Final = "INSERT OR IGNORE INTO notices (id, peer, text, created_at) VALUES (?, ?, ?, ?)"
# A ticket followed already keeps what was last seen of it; it goes to the chat that follows it
# now (its owner signed in there), so a chat they left hears no more of it.
_INSERT_WATCH: Final = (
    "INSERT INTO ticket_watch"
    " (table_name, sys_id, number, peer, state, updated_at, active, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (table_name, sys_id) DO UPDATE SET peer = excluded.peer"
)
_WATCH_COLUMNS: Final = "table_name, sys_id, number, peer, state, updated_at, active"
# Whether a later step of the peer has committed since these kept replies' step.
_OVERTAKEN: Final = "EXISTS (SELECT 1 FROM sessions AS s WHERE s.peer = i.peer AND s.version > i.version)"
# Taken when free, run out, or held by the same holder already (a renewal).
_ACQUIRE_LEASE: Final = (
    "INSERT INTO leases (name, holder, until) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
    " SET holder = excluded.holder, until = excluded.until WHERE leases.holder = excluded.holder OR leases.until <= ?"
)
# A follow-up step's replies replace the earlier event's only while those are kept unsent.
_REPLACE_REPLIES: Final = "UPDATE inbox SET replies = ?, version = ? WHERE event_id = ? AND replies IS NOT NULL"

class StorageClosed(RuntimeError):
    """The storage was closed; no more calls are accepted."""


@dataclass(frozen=True, slots=True)
class CommitStats:
    """Committed batches and the steps in them, for benchmarks and tests."""

    batches: int
    steps: int

    @property
    def mean_batch(self) -> float:
        return self.steps / self.batches if self.batches else 0.0


def sqlite_path_from_url(url: str) -> str:
    """The database path in a sqlite:/// URL; relative paths are relative to the working dir."""
    if url[: len(_URL_PREFIX)].lower() != _URL_PREFIX:
        raise ValueError(f"not a SQLite URL: {url!r}; expected {_URL_FORMS}")
    path = url[len(_URL_PREFIX) :]
    if not path:
        raise ValueError(f"SQLite URL {url!r} names no database file; expected {_URL_FORMS}")
    if "?" in path or "#" in path:
        raise ValueError(f"SQLite URL {url!r}: query strings and fragments are not supported")
    return unquote(path)


async def open_sqlite(
    path: str | Path,
    *,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    busy_timeout_ms: int = 5000,
    max_batch: int = 1000,
) -> SqliteStorage:
    """Open (creating if needed) the database at path, or ":memory:", and migrate its schema."""
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; each call below states its own.
    db = await aiosqlite.connect(path, isolation_level=None)
    storage = SqliteStorage(db, max_batch=max_batch)
    try:
        await storage._run(lambda conn: _prepare(conn, synchronous, busy_timeout_ms))
    except BaseException:
        await db.close()
        raise
    return storage


def _prepare(conn: sqlite3.Connection, synchronous: str, busy_timeout_ms: int) -> None:
    conn.execute("PRAGMA journal_mode = WAL")  # answers "memory" for :memory:, which is fine
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    _migrate(conn)


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    for version, statements in MIGRATIONS:
        # IMMEDIATE: two processes starting together apply each migration once.
        with _transaction(conn):
            done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,))
            if done.fetchone() is None:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )
    newest = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
    known = MIGRATIONS[-1][0]
    if newest is not None and newest > known:
        raise RuntimeError(
            f"database schema version {newest} is newer than this program knows ({known});"
            " upgrade the program instead of running an older one on this database"
        )


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT; ROLLBACK if anything fails, COMMIT included (worker thread only)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _write_steps(conn: sqlite3.Connection, rows: Sequence[_StepRow], received_at: float) -> list[bool]:
    """One group commit: every step's version-checked write, then one COMMIT."""
    results: list[bool] = []
    with _transaction(conn):
        for (peer, state, slots, flow_version, updated_at, expected, event_id, replies, outbox, reply_of,
             outcomes) in rows:
            conn.execute("SAVEPOINT step")  # each step stands or falls alone within the batch
            if expected == 0:
                cur = conn.execute(_INSERT_SESSION, (peer, state, slots, flow_version, updated_at))
            else:
                cur = conn.execute(
                    _UPDATE_SESSION,
                    (state, slots, flow_version, updated_at, expected + 1, peer, expected),
                )
            ok = cur.rowcount == 1
            if ok and event_id is not None:
                marked = conn.execute(_MARK_HANDLED, (event_id, peer, received_at, received_at, replies, expected + 1))
                ok = marked.rowcount == 1
            if ok:
                if outbox:  # most steps queue nothing: no statement for them at all
                    conn.executemany(_INSERT_OUTBOX, outbox)
                # An outcome recorded meanwhile (the worker stopped waiting for this step) means
                # it was told already: the step would tell it twice, so it fails as a whole.
                ok = all(_apply_outcome(conn, outcome) for outcome in outcomes)
            if ok:
                # Already sent (or never kept) is no failure: the replies then go out live only.
                if reply_of is not None and replies is not None:
                    conn.execute(_REPLACE_REPLIES, (replies, expected + 1, reply_of))
            conn.execute("RELEASE step" if ok else "ROLLBACK TO step")
            if not ok:
                conn.execute("RELEASE step")
            results.append(ok)
    return results



def _apply_outcome(conn: sqlite3.Connection, rows: _OutcomeRows) -> bool:
    """Pending only: an item finished by another attempt, or dropped by an admin meanwhile, is
    left as it is and nothing follows from this outcome."""
    update, notices, follow_ups, watch = rows
    changed = conn.execute(
        "UPDATE outbox SET state = ?, result = ?, progress = ?, attempts = ?, last_error = ?, held = 0,"
        " told = max(told, ?), updated_at = ?, finished_at = ?"
        f" WHERE id = ? AND state = '{OUTBOX_PENDING}'",
        update,
    ).rowcount == 1
    if changed:
        conn.executemany(_INSERT_NOTICE, notices)
        conn.executemany(_INSERT_FOLLOW_UP, follow_ups)
        conn.executemany(_INSERT_WATCH, watch)
    return changed










class SqliteStorage:
    """The Storage port on one SQLite connection; see the module docstring for the write path.

    Make one with open_sqlite, which tunes and migrates the database first.
    """

    shared = False  # one process per file

    def __init__(self, db: aiosqlite.Connection, *, max_batch: int = 1000,
                 binding_cache_size: int = 10_000, binding_ttl: float = 60.0) -> None:
        self._db = db
        self._bindings: OrderedDict[str, tuple[float, Binding | None]] = OrderedDict()
        self._binding_cache_size = binding_cache_size
        self._binding_ttl = binding_ttl
        self._max_batch = max(1, max_batch)
        self._pending: list[tuple[_StepRow, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._batches = 0
        self._steps = 0

    @property
    def commit_stats(self) -> CommitStats:
        return CommitStats(self._batches, self._steps)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) on aiosqlite's worker thread: one hop, however many statements.

        aiosqlite's public API costs a hop per statement, fetch and commit; its private
        Connection._execute is the only way to run a whole batch in one. Every use of
        aiosqlite's internals is in this method, so a change there breaks only here.
        """
        if self._closed:
            raise StorageClosed("SQLite storage is closed")
        db = self._db
        result = await db._execute(lambda: fn(db._conn))  # type: ignore[no-untyped-call]
        return cast(T, result)

    # ----------------------------------------------------------------- sessions

    async def load_session(self, peer: str) -> Session | None:
        row = await self._run(lambda conn: conn.execute(_SELECT_SESSION, (peer,)).fetchone())
        if row is None:
            return None
        peer_, state, slots, flow_version, updated_at, version = row
        return Session(peer_, state, json.loads(slots), flow_version, updated_at, version)

    async def commit_step(self, step: StepCommit) -> bool:
        if self._closing:
            raise StorageClosed("SQLite storage is closed")
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
                write = partial(_write_steps, rows=[row for row, _ in batch], received_at=time.time())
                try:
                    results = await self._run(write)
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self._batches += 1
                self._steps += len(batch)
                for (_, future), ok in zip(batch, results, strict=True):
                    if not future.done():  # the caller may have been cancelled meanwhile
                        future.set_result(ok)
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
        # One process owns an SQLite file and binding changes go through this object, so a
        # read-through cache saves a hop on every ticket step; the TTL bounds how long a change
        # made some other way (an admin's SQL) goes unseen.
        cached = self._bindings.get(peer)
        if cached is not None and time.monotonic() - cached[0] < self._binding_ttl:
            self._bindings.move_to_end(peer)
            return cached[1]
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT peer, email, caller_id, name, bound_at FROM bindings WHERE peer = ?", (peer,)
            ).fetchone()
        )
        binding = None if row is None else Binding(*row)
        self._remember_binding(peer, binding)
        return binding

    def _remember_binding(self, peer: str, binding: Binding | None) -> None:
        self._bindings[peer] = (time.monotonic(), binding)
        self._bindings.move_to_end(peer)
        while len(self._bindings) > self._binding_cache_size:
            self._bindings.popitem(last=False)

    async def put_binding(self, binding: Binding) -> None:
        b = binding
        self._bindings.pop(b.peer, None)  # forgotten first: a failed write must not leave it cached
        await self._run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO bindings (peer, email, caller_id, name, bound_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (b.peer, b.email, b.caller_id, b.name, b.bound_at),
            )
        )
        self._remember_binding(b.peer, b)

    async def delete_binding(self, peer: str) -> None:
        self._bindings.pop(peer, None)
        await self._run(lambda conn: conn.execute("DELETE FROM bindings WHERE peer = ?", (peer,)))
        self._remember_binding(peer, None)

    # ----------------------------------------------------------------- sign-in codes

    async def put_code(self, code: PendingCode) -> None:
        c = code
        await self._run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO auth_codes"
                " (peer, email, code_hash, salt, created_at, expires_at, attempts, step, used, mailed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (c.peer, c.email, c.code_hash, c.salt, c.created_at, c.expires_at, c.attempts, c.step, c.used,
                 c.mailed),
            )
        )

    async def get_code(self, peer: str) -> PendingCode | None:
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT peer, email, code_hash, salt, created_at, expires_at, attempts, step, used, mailed"
                " FROM auth_codes WHERE peer = ?",
                (peer,),
            ).fetchone()
        )
        if row is None:
            return None
        peer_, email, code_hash, salt, created_at, expires_at, attempts, step, used, mailed = row
        return PendingCode(peer_, email, bytes(code_hash), bytes(salt), created_at, expires_at, attempts, step,
                           bool(used), bool(mailed))

    async def add_code_attempt(self, peer: str) -> int:
        row = await self._run(
            lambda conn: conn.execute(
                "UPDATE auth_codes SET attempts = attempts + 1 WHERE peer = ? RETURNING attempts", (peer,)
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    async def delete_code(self, peer: str) -> None:
        await self._run(lambda conn: conn.execute("DELETE FROM auth_codes WHERE peer = ?", (peer,)))

    async def record_code_sent(self, peer: str, email: str, at: float) -> None:
        await self._run(
            lambda conn: conn.execute(
                "INSERT INTO auth_sends (peer, email, sent_at) VALUES (?, ?, ?)", (peer, email, at)
            )
        )

    async def code_send_stats(self, peer: str, email: str, since: float) -> SendStats:
        """Sends at or after since: by this peer, to this email, by the pair, the pair's latest."""

        def query(conn: sqlite3.Connection) -> SendStats:
            (by_peer,) = conn.execute(
                "SELECT count(*) FROM auth_sends WHERE peer = ? AND sent_at >= ?", (peer, since)
            ).fetchone()
            by_email, by_pair, last_pair = conn.execute(
                "SELECT count(*), sum(peer = ?), max(CASE WHEN peer = ? THEN sent_at END)"
                " FROM auth_sends WHERE email = ? AND sent_at >= ?",
                (peer, peer, email, since),
            ).fetchone()
            return SendStats(int(by_peer), int(by_email), int(by_pair or 0), last_pair)

        return await self._run(query)

    # ----------------------------------------------------------------- inbox and upkeep

    async def seen_event(self, event_id: str) -> bool:
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT 1 FROM inbox WHERE event_id = ? AND handled_at IS NOT NULL", (event_id,)
            ).fetchone()
        )
        return row is not None

    async def seen_events(self, event_ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return set()

        def query(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(ids), 500):  # below SQLite's bound-parameter limit
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(
                    row[0]
                    for row in conn.execute(
                        f"SELECT event_id FROM inbox WHERE handled_at IS NOT NULL AND event_id IN ({marks})",
                        chunk,
                    )
                )
            return found

        return await self._run(query)

    async def inbox_add(self, event_id: str, peer: str, body: str) -> bool:
        def insert(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                cur = conn.execute(
                    "INSERT OR IGNORE INTO inbox (event_id, peer, body, received_at) VALUES (?, ?, ?, ?)",
                    (event_id, peer, body, time.time()),
                )
            return cur.rowcount == 1

        return await self._run(insert)

    async def inbox_pending(self, limit: int = 1000, received_before: float = math.inf) -> list[InboxEvent]:
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT event_id, peer, body, received_at FROM inbox WHERE handled_at IS NULL"
                " AND received_at < ? ORDER BY seq LIMIT ?",
                (received_before, limit),
            ).fetchall()
        )
        return [InboxEvent(e, p or "", b or "", r) for e, p, b, r in rows]

    async def inbox_mark_handled(self, event_ids: Sequence[str]) -> None:
        ids = list(event_ids)

        def mark(conn: sqlite3.Connection) -> None:
            now = time.time()
            with _transaction(conn):
                conn.executemany(
                    "UPDATE inbox SET handled_at = ?, body = NULL WHERE event_id = ? AND handled_at IS NULL",
                    [(now, i) for i in ids],
                )

        if ids:
            await self._run(mark)

    async def replies_unsent(self, limit: int = 1000, handled_before: float = math.inf) -> list[UnsentReplies]:
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT event_id, peer, replies, {_OVERTAKEN} FROM inbox AS i"
                " WHERE replies IS NOT NULL AND handled_at < ? ORDER BY seq LIMIT ?",
                (handled_before, limit),
            ).fetchall()
        )
        return [UnsentReplies(e, p or "", r, bool(o)) for e, p, r, o in rows]

    async def replies_sent(self, event_ids: Sequence[str]) -> None:
        ids = list(event_ids)

        def mark(conn: sqlite3.Connection) -> None:
            now = time.time()
            with _transaction(conn):
                conn.executemany("UPDATE inbox SET sent_at = ?, replies = NULL WHERE event_id = ?",
                                 [(now, i) for i in ids])

        if ids:
            await self._run(mark)

    # ----------------------------------------------------------------- one process at a time

    @asynccontextmanager
    async def peer_lock(self, peer: str) -> AsyncIterator[None]:
        # One process per SQLite file: the engine's in-process lock is all it takes.
        yield

    async def lease_acquire(self, name: str, holder: str, now: float, until: float) -> bool:
        def acquire(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                return conn.execute(_ACQUIRE_LEASE, (name, holder, until, now)).rowcount == 1

        return await self._run(acquire)

    async def lease_release(self, name: str, holder: str) -> None:
        def release(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

        await self._run(release)

    async def get_cursor(self, name: str) -> str | None:
        row = await self._run(
            lambda conn: conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        )
        return None if row is None else str(row[0])

    async def put_cursor(self, name: str, value: str) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    (name, value, time.time()),
                )

        await self._run(upsert)

    # ----------------------------------------------------------------- outbox

    async def outbox_due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        rows = await self._run(lambda conn: conn.execute(_OUTBOX_DUE, (now, limit)).fetchall())
        return [_outbox_item(r) for r in rows]

    async def outbox_take(self, now: float, leases: Mapping[str, float], limit: int = 100) -> list[OutboxItem]:
        longest = max(leases.values(), default=0.0)

        def take(conn: sqlite3.Connection) -> list[OutboxItem]:
            # One writer at a time (BEGIN IMMEDIATE): nobody else can take these meanwhile.
            with _transaction(conn):
                items = [_outbox_item(r) for r in conn.execute(_OUTBOX_DUE, (now, limit)).fetchall()]
                for item in items:
                    item.attempts += 1
                    item.next_at = now + leases.get(item.kind, longest)
                    item.updated_at = now
                    item.held = True
                conn.executemany("UPDATE outbox SET attempts = ?, next_at = ?, updated_at = ?, held = 1 WHERE id = ?",
                                 [(i.attempts, i.next_at, i.updated_at, i.id) for i in items])
            return items

        return await self._run(take)

    async def outbox_get(self, item_id: str) -> OutboxItem | None:
        row = await self._run(lambda conn: conn.execute(f"{_SELECT_OUTBOX} WHERE id = ?", (item_id,)).fetchone())
        return None if row is None else _outbox_item(row)

    async def outbox_save(self, item: OutboxItem) -> None:
        i = item
        values = (i.attempts, i.next_at, i.updated_at, i.last_error, _json(i.progress), i.held, i.id)

        def save(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                # Pending only: an item finished, retried or dropped meanwhile is not written back.
                conn.execute(
                    "UPDATE outbox SET attempts = ?, next_at = ?, updated_at = ?, last_error = ?, progress = ?,"
                    f" held = ? WHERE id = ? AND state = '{OUTBOX_PENDING}'",
                    values,
                )

        await self._run(save)

    async def outbox_lease(self, item_id: str, held_until: float, until: float, attempts: int = 0) -> bool:
        def lease(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                return conn.execute(
                    "UPDATE outbox SET next_at = ?, attempts = max(0, attempts + ?), held = ?"
                    f" WHERE id = ? AND state = '{OUTBOX_PENDING}' AND next_at = ?",
                    (until, attempts, attempts >= 0, item_id, held_until),
                ).rowcount == 1

        return await self._run(lease)

    async def outbox_finish(self, outcome: OutboxOutcome) -> bool:
        rows = _encode_outcome(outcome)

        def finish(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                return _apply_outcome(conn, rows)

        return await self._run(finish)

    async def outbox_list(self, states: Sequence[str] = (), limit: int = 100) -> list[OutboxItem]:
        wanted = list(dict.fromkeys(states))
        where = f" WHERE state IN ({','.join('?' * len(wanted))})" if wanted else ""
        rows = await self._run(
            lambda conn: conn.execute(f"{_SELECT_OUTBOX}{where} ORDER BY seq LIMIT ?", (*wanted, limit)).fetchall()
        )
        return [_outbox_item(r) for r in rows]

    async def outbox_untold(self, finished_before: float, limit: int = 100) -> list[OutboxItem]:
        # The WHERE repeats the partial index's terms word for word, so SQLite uses it.
        rows = await self._run(
            lambda conn: conn.execute(
                f"{_SELECT_OUTBOX} WHERE told = 0 AND state IN ('{OUTBOX_DONE}', '{OUTBOX_FAILED}')"
                " AND finished_at <= ? ORDER BY finished_at, seq LIMIT ?",
                (finished_before, limit),
            ).fetchall()
        )
        return [_outbox_item(r) for r in rows]

    async def outbox_tell(self, item_id: str, notice: Notice | None) -> bool:
        def tell(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                # The told flag is the once-only guard: whoever flips it tells, nobody else.
                changed = conn.execute("UPDATE outbox SET told = 1 WHERE id = ? AND told = 0", (item_id,)).rowcount
                if changed == 1 and notice is not None:
                    conn.execute(_INSERT_NOTICE, _notice_row(notice))
            return changed == 1

        return await self._run(tell)

    async def outbox_retry(self, item_id: str, now: float) -> bool:
        def retry(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                # progress, attempts and last_error stay: the retry goes on from what was done
                # (attempts tell the worker an earlier try may have got through), and the last
                # error is worth seeing until a new attempt replaces it. retried_at restarts the
                # give-up clock.
                return conn.execute(
                    f"UPDATE outbox SET state = '{OUTBOX_PENDING}', next_at = ?, updated_at = ?, retried_at = ?,"
                    " finished_at = NULL, told = 0, result = NULL, held = 0"
                    f" WHERE id = ? AND (state = '{OUTBOX_FAILED}'"
                    f" OR state = '{OUTBOX_PENDING}' AND (held = 0 OR next_at <= ?))",
                    (now, now, now, item_id, now),
                ).rowcount == 1

        return await self._run(retry)

    async def outbox_drop(self, item_id: str) -> OutboxItem | None:
        def drop(conn: sqlite3.Connection) -> Any:
            with _transaction(conn):
                return conn.execute(
                    f"DELETE FROM outbox WHERE id = ? AND state IN ('{OUTBOX_PENDING}', '{OUTBOX_FAILED}')"
                    f" RETURNING {_OUTBOX_COLUMNS}",
                    (item_id,),
                ).fetchone()

        row = await self._run(drop)
        return None if row is None else _outbox_item(row)

    # ----------------------------------------------------------------- notices

    async def notices_add(self, notices: Sequence[Notice]) -> None:
        rows = [_notice_row(n) for n in notices]

        def add(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(_INSERT_NOTICE, rows)

        if rows:
            await self._run(add)

    async def notices_unsent(self, limit: int = 100) -> list[Notice]:
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT id, peer, text, created_at FROM notices WHERE sent_at IS NULL ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        )
        return [Notice(*r) for r in rows]

    async def notices_sent(self, notice_ids: Sequence[str]) -> None:
        ids = list(notice_ids)

        def mark(conn: sqlite3.Connection) -> None:
            now = time.time()
            with _transaction(conn):
                # The first sending counts: a resend does not push back its pruning.
                conn.executemany("UPDATE notices SET sent_at = ? WHERE id = ? AND sent_at IS NULL",
                                 [(now, i) for i in ids])

        if ids:
            await self._run(mark)

    # ----------------------------------------------------------------- watched tickets

    async def watch_add(self, tickets: Sequence[WatchedTicket]) -> None:
        now = time.time()
        rows = [_watch_row(t, now) for t in tickets]

        def add(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(_INSERT_WATCH, rows)

        if rows:
            await self._run(add)

    async def watch_list(self, after: tuple[str, str] = ("", ""), limit: int = 500) -> list[WatchedTicket]:
        # A row value comparison walks the primary key from the last page's end (SQLite ≥ 3.15).
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_WATCH_COLUMNS} FROM ticket_watch WHERE (table_name, sys_id) > (?, ?)"
                " ORDER BY table_name, sys_id LIMIT ?",
                (after[0], after[1], limit),
            ).fetchall()
        )
        return [WatchedTicket(t, s, n, p, st, u, bool(a)) for t, s, n, p, st, u, a in rows]

    async def watch_update(self, seen: Sequence[WatchedTicket], notices: Sequence[Notice]) -> None:
        # An UPDATE, not an upsert: a ticket dropped while it was being looked at stays dropped.
        updates = [(t.number, t.state, t.updated_at, int(t.active), t.table, t.sys_id) for t in seen]
        rows = [_notice_row(n) for n in notices]

        def update(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(
                    "UPDATE ticket_watch SET number = ?, state = ?, updated_at = ?, active = ?"
                    " WHERE table_name = ? AND sys_id = ?",
                    updates,
                )
                conn.executemany(_INSERT_NOTICE, rows)

        if updates or rows:
            await self._run(update)

    async def watch_drop(self, keys: Sequence[tuple[str, str]]) -> None:
        rows = [(table, sys_id) for table, sys_id in keys]

        def drop(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany("DELETE FROM ticket_watch WHERE table_name = ? AND sys_id = ?", rows)

        if rows:
            await self._run(drop)

    # ----------------------------------------------------------------- upkeep

    async def prune(self, older_than: float) -> int:
        """Delete what is done with and older than the given time: handled inbox events, code
        sends, expired codes, sent notices, and outbox items done and told.

        Keeps the tables bounded; run it periodically with a horizon longer than the channel
        can replay events (VK: hours) and the longest send-rate window. Returns rows deleted.
        """

        def delete(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                # Handled events only: one received but not yet handled is work still to do.
                n = conn.execute(
                    "DELETE FROM inbox WHERE received_at < ? AND handled_at IS NOT NULL", (older_than,)
                ).rowcount
                n += conn.execute("DELETE FROM auth_sends WHERE sent_at < ?", (older_than,)).rowcount
                n += conn.execute("DELETE FROM auth_codes WHERE expires_at < ?", (older_than,)).rowcount
                # Unsent notices (sent_at NULL) are never older than anything.
                n += conn.execute("DELETE FROM notices WHERE sent_at < ?", (older_than,)).rowcount
                # Failed items wait for an operator, untold ones for the user to hear of them.
                n += conn.execute(
                    f"DELETE FROM outbox WHERE state = '{OUTBOX_DONE}' AND told = 1 AND finished_at < ?",
                    (older_than,),
                ).rowcount
            return n

        return await self._run(delete)

    async def close(self) -> None:
        """Commit every queued step, then close the connection. Calling it again does nothing."""
        if self._closing:
            return
        self._closing = True
        while self._flusher is not None:
            # asyncio.wait, not await: cancelling close() must not cancel the flusher.
            await asyncio.wait({self._flusher})
        self._closed = True
        await self._db.close()
