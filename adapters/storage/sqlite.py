"""SQLite storage: the embedded default (WAL, one connection on the event loop's thread).

The calls and the group commit are the storage core's (core.py); what is SQLite's is how they
run. One connection, used on the event loop's own thread: a call's statements, however many,
run at once, and so does a whole group-commit batch — all its version-checked session writes
and inbox marks plus one COMMIT — so the batch grows with the load while each step costs one
write:

- a failed version check answers False to that caller only; an exception rolls the whole batch
  back and is raised to every caller in it;
- a step's outbox items, its "told" marks and its follow-up replies are written inside the
  step's savepoint, after its version check and inbox mark: a refused step leaves none of them.

Why on the loop's thread: in WAL mode with synchronous=NORMAL a commit writes to the WAL and
does not wait for the disk (tens of microseconds), less than handing the work to a thread and
back costs when both want the GIL (bench/sqlite_hops.py). What waits for the disk is SQLite's
automatic checkpoint (every 1000 WAL pages, a few hundred steps: the pages copied into the
database file and fsynced, a millisecond or two on the loop). A checkpoint on a thread of its own
was tried: with the loop writing all the while it never caught up with the WAL's end, so the WAL
was never restarted and grew without bound (52 MB after 3 000 steps). Upkeep that may touch many
rows (prune) deletes in bounded chunks, the loop running between them.

One process owns an SQLite file, so sessions may be cached in process (shared = False), peer
locks are the engine's own, and bindings are cached here.

synchronous=NORMAL in WAL mode keeps every commit across a process crash (kill -9 included: the
WAL is in the operating system's hands once the commit returns); an OS crash or power loss may
drop the commits since the last checkpoint (pass synchronous="FULL" to fsync every commit, on a
thread of its own, where that matters more than speed).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar, cast
from urllib.parse import unquote

from adapters.storage.core import CommitStats, Fetch, Kind, Query, Script, SqlStorage, StepResult, StorageClosed
from adapters.storage.dialect import SQLITE
from adapters.storage.rows import StepRow, outbox_item
from adapters.storage.schema import NEWER_SCHEMA, SCHEMA_MIGRATIONS, migrations
from adapters.storage.sql import Sql
from adapters.storage.sqlite_worker import SqliteWorker
from engine.ports import Binding, Forgotten, OutboxItem, StepCommit

__all__ = [
    "MIGRATIONS",
    "CommitStats",
    "SqliteStorage",
    "StorageClosed",
    "open_sqlite",
    "sqlite_path_from_url",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

MIGRATIONS: Final = migrations(SQLITE)
SQL: Final = Sql(SQLITE)

_URL_PREFIX: Final = "sqlite:///"
_URL_FORMS: Final = "sqlite:///relative.db, sqlite:////absolute/path.db or sqlite:///:memory:"

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
    "INSERT INTO inbox (event_id, peer, received_at, handled_at, replies, version, handled_by)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (event_id) DO UPDATE SET handled_at = excluded.handled_at, body = NULL,"
    " replies = excluded.replies, peer = coalesce(inbox.peer, excluded.peer), version = excluded.version,"
    " handled_by = excluded.handled_by"
    " WHERE inbox.handled_at IS NULL"
)
PRUNE_CHUNK: Final = 2000


def _chunked(delete: str) -> str:
    """DELETE FROM t WHERE … as the same delete of at most PRUNE_CHUNK rows."""
    table, _, where = delete.removeprefix("DELETE FROM ").partition(" WHERE ")
    return f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where} LIMIT {PRUNE_CHUNK})"


_PRUNE_CHUNKS: Final = tuple(_chunked(statement) for statement in SQL.prune)
_PRUNE_SESSIONS: Final = _chunked(SQL.prune_sessions)
_PRUNE_CODES: Final = _chunked(SQL.prune_codes)


def _single_change(sql: str, *args: Any) -> Script[int]:
    return int((yield Query(sql, args, Fetch.CHANGED)))


_TAKE: Final = "UPDATE outbox SET attempts = ?, next_at = ?, updated_at = ?, held = 1, held_by = ? WHERE id = ?"


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
    """Open (creating if needed) the database at path, or ":memory:", and migrate its schema.

    NORMAL: the connection runs on the event loop's thread. FULL: every commit waits for the disk,
    so the connection runs on a thread of its own (sqlite_worker.py)."""
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    memory = str(path) == ":memory:"
    if not memory:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; each call below states its own.
    db: SqliteRunner = (await SqliteWorker.open(path, isolation_level=None) if synchronous == "FULL"
                        else LoopConnection(sqlite3.connect(path, isolation_level=None, timeout=0),
                                            busy_timeout_ms / 1000))
    storage = SqliteStorage(db, max_batch=max_batch)
    try:
        # On the loop's thread SQLite never waits itself (LoopConnection waits asynchronously).
        await storage._run(lambda conn: _prepare(conn, synchronous, 0 if isinstance(db, LoopConnection)
                                                 else busy_timeout_ms))
    except BaseException:
        await db.close()
        raise
    return storage


class SqliteRunner(Protocol):
    """Where the connection's work runs: the loop's thread (LoopConnection) or a thread of its own."""

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def close(self) -> None: ...


class LoopConnection:
    """The connection used on the event loop's thread: a call runs where it is made.

    SQLite's own busy wait would sleep on the loop's thread while another process holds the
    write lock (`supportbot outbox retry` beside the bot, an admin's sqlite3 shell): every user
    would wait. So the connection's busy timeout is 0, and a call that found the database busy
    before it began a transaction (BEGIN IMMEDIATE, or a read) is tried again after an
    asynchronous pause, for as long as the busy timeout allows; the loop runs meanwhile."""

    def __init__(self, conn: sqlite3.Connection, busy_timeout: float = 5.0) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._busy_timeout = busy_timeout

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Still a point where other tasks run, as a hop to a thread was: a task making storage
        # calls one after another must not keep the others waiting, and none may rely on it.
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._busy_timeout
        pause = 0.001
        while True:
            if self._conn is None:
                raise ValueError("SQLite connection closed")
            try:
                return fn(self._conn)
            except sqlite3.OperationalError as exc:
                # Busy before anything was written (no transaction open): nothing to undo.
                if not _busy(exc) or self._conn.in_transaction or loop.time() + pause > give_up_at:
                    raise
            await asyncio.sleep(pause)
            pause = min(2 * pause, 0.05)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY, or one of its extended codes: another connection holds the lock."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


def _prepare(conn: sqlite3.Connection, synchronous: str, busy_timeout_ms: int) -> None:
    conn.execute("PRAGMA journal_mode = WAL")  # answers "memory" for :memory:, which is fine
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    _migrate(conn)


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(SQLITE.sql(SCHEMA_MIGRATIONS))
    for version, statements in MIGRATIONS:
        # IMMEDIATE: two processes starting together apply each migration once.
        with _transaction(conn):
            done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,))
            if done.fetchone() is None:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                             (version, time.time()))
    newest = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
    known = MIGRATIONS[-1][0]
    if newest is not None and newest > known:
        raise RuntimeError(NEWER_SCHEMA.format(newest=newest, known=known))


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


def _drive(conn: sqlite3.Connection, script: Script[T]) -> T:
    """Run a core script to its end on this thread."""
    try:
        query = next(script)
        while True:
            query = script.send(_execute(conn, query))
    except StopIteration as done:
        return cast(T, done.value)


def _execute(conn: sqlite3.Connection, query: Query) -> Any:
    sql, args, fetch = query
    if fetch is Fetch.MANY:
        conn.executemany(sql, args)
        return None
    cursor = conn.execute(sql, args)
    if fetch is Fetch.CHANGED:
        return cursor.rowcount
    if fetch is Fetch.ROWS:
        return cursor.fetchall()
    found = cursor.fetchone()
    if fetch is Fetch.ROW or found is None:
        return found
    return found[0]


class SqliteStorage(SqlStorage):
    """The Storage port on one SQLite connection; see the module docstring.

    Make one with open_sqlite, which tunes and migrates the database first.
    """

    sql = SQL
    backend = "SQLite"
    shared = False  # one process per file

    def __init__(self, db: SqliteRunner, *, max_batch: int = 1000,
                 binding_cache_size: int = 10_000, binding_ttl: float = 60.0) -> None:
        super().__init__(max_batch=max_batch)
        self._db = db
        self._bindings: OrderedDict[str, tuple[float, Binding | None]] = OrderedDict()
        self._binding_cache_size = binding_cache_size
        self._binding_ttl = binding_ttl
        self._closed = False

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) where the connection runs: however many statements, at once."""
        if self._closed:
            raise StorageClosed("SQLite storage is closed")
        return await self._db.run(fn)

    async def _script(self, script: Callable[[], Script[T]], kind: Kind) -> T:
        if kind is Kind.READ:
            return await self._run(lambda conn: _drive(conn, script()))

        def write(conn: sqlite3.Connection) -> T:
            with _transaction(conn):
                return _drive(conn, script())

        return await self._run(write)

    async def _write_batch(self, batch: Sequence[StepRow]) -> list[StepResult]:
        return await self._run(partial(self._write_steps, steps=batch, received_at=time.time()))

    def _write_steps(self, conn: sqlite3.Connection, steps: Sequence[StepRow], received_at: float) -> list[StepResult]:
        """One group commit: every step's version-checked write, then one COMMIT. A batch of one
        (users stepping one after another) needs no savepoint: the transaction is its own."""
        if len(steps) == 1:
            conn.execute("BEGIN IMMEDIATE")
            try:
                ok = self._write_step(conn, steps[0], received_at)
                conn.execute("COMMIT" if ok else "ROLLBACK")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return [ok]
        results: list[StepResult] = []
        with _transaction(conn):
            for step in steps:
                conn.execute("SAVEPOINT step")  # each step stands or falls alone within the batch
                ok = self._write_step(conn, step, received_at)
                conn.execute("RELEASE step" if ok else "ROLLBACK TO step")
                if not ok:
                    conn.execute("RELEASE step")
                results.append(ok)
        return results

    def _write_step(self, conn: sqlite3.Connection, step: StepRow, received_at: float) -> bool:
        """A step's writes; False (for the caller to undo them) if it must not stand."""
        peer, state, slots, flow, updated_at, expected, event_id, replies = step[:8]
        if expected == 0:
            cur = conn.execute(_INSERT_SESSION, (peer, state, slots, flow, updated_at))
        else:
            cur = conn.execute(_UPDATE_SESSION, (state, slots, flow, updated_at, expected + 1, peer, expected))
        ok = cur.rowcount == 1
        if ok and event_id is not None:
            marked = conn.execute(_MARK_HANDLED, (event_id, peer, received_at, received_at, replies,
                                                  expected + 1, self.process))
            ok = marked.rowcount == 1
        if ok and step.has_rest:
            ok = _drive(conn, self._step_rest(step))
        return ok

    # ----------------------------------------------------------------- bindings, cached

    async def commit_step(self, step: StepCommit) -> bool:
        sign_in = step.sign_in
        if sign_in is None or not sign_in.binding_changed:
            return await super().commit_step(step)
        self._bindings.pop(sign_in.peer, None)  # forgotten first: a step that fails must not leave it cached
        ok = await super().commit_step(step)
        if ok:
            self._remember_binding(sign_in.peer, sign_in.binding)
        return ok

    async def get_binding(self, peer: str) -> Binding | None:
        # One process owns an SQLite file and binding changes go through this object, so a
        # read-through cache saves a hop on every ticket step; the TTL bounds how long a change
        # made some other way (an admin's SQL) goes unseen.
        cached = self._bindings.get(peer)
        if cached is not None and time.monotonic() - cached[0] < self._binding_ttl:
            self._bindings.move_to_end(peer)
            return cached[1]
        binding = await super().get_binding(peer)
        self._remember_binding(peer, binding)
        return binding

    def _remember_binding(self, peer: str, binding: Binding | None) -> None:
        self._bindings[peer] = (time.monotonic(), binding)
        self._bindings.move_to_end(peer)
        while len(self._bindings) > self._binding_cache_size:
            self._bindings.popitem(last=False)

    async def put_binding(self, binding: Binding) -> None:
        self._bindings.pop(binding.peer, None)  # forgotten first: a failed write must not leave it cached
        await super().put_binding(binding)
        self._remember_binding(binding.peer, binding)

    async def delete_binding(self, peer: str) -> None:
        self._bindings.pop(peer, None)
        await super().delete_binding(peer)
        self._remember_binding(peer, None)

    async def forget(self, *, peer: str | None = None, email: str | None = None, force: bool = False,
                     keep_session: bool = False, keep_send_log: bool = False) -> Forgotten:
        found = await super().forget(peer=peer, email=email, force=force, keep_session=keep_session,
                                     keep_send_log=keep_send_log)
        for forgotten in found.peers:  # cached bindings of this process go with the rows
            self._bindings.pop(forgotten, None)
        return found

    # ----------------------------------------------------------------- one process at a time

    @asynccontextmanager
    async def peer_lock(self, peer: str) -> AsyncIterator[None]:
        # One process per SQLite file: the engine's in-process lock is all it takes.
        yield

    async def prune(self, older_than: float, *, sessions_before: float | None = None,
                    codes_before: float | None = None) -> int:
        """The core's prune, in chunks of PRUNE_CHUNK rows, each its own transaction, the event
        loop running in between: a first prune after a long time must not stall every user."""
        deleted = 0
        chunks = [(statement, older_than) for statement in _PRUNE_CHUNKS]
        if sessions_before is not None:
            chunks.append((_PRUNE_SESSIONS, sessions_before))
        if codes_before is not None:
            chunks.append((_PRUNE_CODES, codes_before))
        for statement, before in chunks:
            while True:
                count = await self._script(partial(_single_change, statement, before), Kind.WRITE)
                deleted += count
                if count < PRUNE_CHUNK:
                    break
                await asyncio.sleep(0)
        return deleted

    async def outbox_take(self, now: float, leases: Mapping[str, float], limit: int = 100) -> list[OutboxItem]:
        longest = max(leases.values(), default=0.0)

        def take(conn: sqlite3.Connection) -> list[OutboxItem]:
            # One writer at a time (BEGIN IMMEDIATE): nobody else can take these meanwhile.
            with _transaction(conn):
                items = [outbox_item(r) for r in conn.execute(SQL.outbox_due, (now, limit)).fetchall()]
                for item in items:
                    item.attempts += 1
                    item.next_at = now + leases.get(item.kind, longest)
                    item.updated_at = now
                    item.held = True
                conn.executemany(_TAKE, [(i.attempts, i.next_at, i.updated_at, self.process, i.id) for i in items])
            return items

        return await self._run(take)

    async def close(self) -> None:
        """Commit every queued step, then close the connection. Calling it again does nothing."""
        if self._closing:
            return
        self._closing = True
        await self._drain()
        self._closed = True
        await self._db.close()
