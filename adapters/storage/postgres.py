"""PostgreSQL storage (asyncpg): the backend for several workers on one database.

It behaves as SqliteStorage does (tests/contract is the judge): the calls and the group commit
are the storage core's (core.py). What is particular to it:

Write path. `commit_step` commits the steps of concurrent peers together, as SQLite does: the
calls queue, one flusher task per process writes everything queued in one statement, a call of
the server-side function sb_commit_steps in autocommit (pg_step_commit.py): each step in a block
of its own (a refused or failing step stands or falls alone), and each caller is answered only
after the statement returned, committed. A batch carrying a value that call cannot (a NUL in a
session's text, a lone surrogate) is written the savepoint way instead: one transaction, a
SAVEPOINT per step, a step's session write and inbox mark in one statement, its outbox items,
outcomes and follow-up replies after it. Unlike SQLite, a step
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
- a step batch's one statement, always: it records its token first, so if the first call
  committed the second is answered with its results and writes nothing (and if the first is
  still running, the second waits for it on the token's key);
- a failure to get a connection at all (refused, too many clients, the server starting), and a
  deadlock or serialization failure (rolled back by the server), always.
A statement timeout (command_timeout) is raised, never retried. After a network partition the
old backend may hold its locks until the server notices the connection is gone; the retry waits
for them (bounded by command_timeout).

Sessions are not cached (another worker may step a session meanwhile): the peer lock's round
trip reads the session after taking the lock (pg_peer_locks.py), and the step's load_session
takes that row, once.

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar, cast

import asyncpg  # type: ignore[import-untyped]

from adapters.storage.core import (
    CommitStats,
    Fetch,
    Kind,
    Query,
    Script,
    SqlStorage,
    StepResult,
    StorageClosed,
    q_changed,
)
from adapters.storage.dialect import POSTGRESQL
from adapters.storage.pg_peer_locks import UNREAD, AdvisoryPeerLocks
from adapters.storage.pg_presence import Presence
from adapters.storage.pg_step_commit import COMMIT_CALL, PRUNE_BATCHES, commit_args, new_token, step_results
from adapters.storage.rows import StepRow, outbox_item
from adapters.storage.schema import NEWER_SCHEMA, SCHEMA_MIGRATIONS, migrations
from adapters.storage.sql import OUTBOX_COLUMNS, OUTBOX_DUE, Sql
from engine.ports import Binding, Forgotten, OutboxItem, Session, StepCommit
from engine.work.leases import process_holder

__all__ = [
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "OPEN_ERRORS",
    "CommitStats",
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

MIGRATIONS: Final = migrations(POSTGRESQL)
SQL: Final = Sql(POSTGRESQL)

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
    e, at, replies, by = (f"${first + n}" for n in range(4))
    return (
        f"WITH s AS ({session_sql})"
        f" INSERT INTO inbox AS i (event_id, peer, received_at, handled_at, replies, version, handled_by)"
        f" SELECT {e}, s.peer, {at}, {at}, {replies}, s.version, {by} FROM s"
        " ON CONFLICT (event_id) DO UPDATE SET handled_at = excluded.handled_at, body = NULL,"
        " replies = excluded.replies, peer = coalesce(i.peer, excluded.peer), version = excluded.version,"
        " handled_by = excluded.handled_by"
        " WHERE i.handled_at IS NULL RETURNING 1"
    )


_INSERT_SESSION_MARK: Final = _with_mark(_INSERT_SESSION, 6)
_UPDATE_SESSION_MARK: Final = _with_mark(_UPDATE_SESSION, 7)

# Claims what the due query picks, at once: rows another worker is claiming are skipped, not
# waited for. $3 maps kinds to lease seconds, $4 is the lease of any other kind.
_DUE_IDS: Final = POSTGRESQL.sql(OUTBOX_DUE.replace(", ".join(f"o.{c}" for c in OUTBOX_COLUMNS.split(", ")), "o.id"))
_OUTBOX_TAKE: Final = (
    "WITH due AS (" + _DUE_IDS + " FOR UPDATE OF o SKIP LOCKED)"
    " UPDATE outbox AS u SET attempts = u.attempts + 1, updated_at = $1, held = TRUE, held_by = $5,"
    " next_at = $1 + coalesce(($3::jsonb ->> u.kind)::double precision, $4)"
    " FROM due WHERE u.id = due.id RETURNING u.seq, " + ", ".join("u." + c for c in OUTBOX_COLUMNS.split(", "))
)


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
    process: str | None = None,
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

    def connect(purpose: str) -> Callable[[], Awaitable[Any]]:
        async def connect() -> Any:
            return await asyncpg.connect(url, timeout=command_timeout,
                                         server_settings={"application_name": f"{application_name} {purpose}",
                                                          **_KEEPALIVES})
        return connect

    process = process or process_holder()
    presence = Presence(connect("presence"), process)
    try:
        await presence.start()
    except BaseException:
        pool.terminate()
        raise
    return PostgresStorage(pool, max_batch=max_batch, close_timeout=command_timeout,
                           locks=AdvisoryPeerLocks(connect("peer locks"), shards=lock_connections,
                                                   read_sessions=True),
                           presence=presence)


async def _keep_session(conn: Any) -> None:
    return None


async def _migrate(conn: Any) -> None:
    async with conn.transaction():
        # Taken before anything is read: the first worker migrates, the others wait and then
        # find every version applied. The lock ends with the transaction.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        # DDL only when something is missing: a role without CREATE can run a migrated database.
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            await conn.execute(POSTGRESQL.sql(SCHEMA_MIGRATIONS))
        applied = {int(r[0]) for r in await conn.fetch("SELECT version FROM schema_migrations")}
        known = MIGRATIONS[-1][0]
        newest = max(applied, default=0)
        if newest > known:
            raise SchemaTooNew(NEWER_SCHEMA.format(newest=newest, known=known))
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

    def __init__(self, result: StepResult) -> None:
        super().__init__("step not written")
        self.result = result


async def _drive(conn: Any, script: Script[T]) -> T:
    """Run a core script to its end on this connection, one statement after another."""
    try:
        query = next(script)
        while True:
            query = script.send(await _execute(conn, query))
    except StopIteration as done:
        return cast(T, done.value)


async def _execute(conn: Any, query: Query) -> Any:
    sql, args, fetch = query
    if fetch is Fetch.MANY:
        await conn.executemany(sql, args)
        return None
    if fetch is Fetch.CHANGED:
        return _rows_changed(await conn.execute(sql, *args))
    if fetch is Fetch.ROWS:
        return await conn.fetch(sql, *args)
    if fetch is Fetch.ROW:
        return await conn.fetchrow(sql, *args)
    return await conn.fetchval(sql, *args)


class PostgresStorage(SqlStorage):
    """The Storage port on an asyncpg pool; see the module docstring for the write path and
    the retry rule. Make one with open_postgres, which migrates the database first."""

    sql = SQL
    backend = "PostgreSQL"
    peer_order = True
    shared = True  # several worker processes on one database

    def __init__(self, pool: Any, *, locks: AdvisoryPeerLocks, presence: Presence, max_batch: int = 1000,
                 close_timeout: float = 30.0) -> None:
        super().__init__(max_batch=max_batch, process=presence.name)
        self._pool = pool
        self._locks = locks
        self._presence = presence
        self._close_timeout = close_timeout
        self._calls = 0  # calls in flight, waited for by close()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closer: asyncio.Future[None] | None = None
        self._closed = False
        # Sessions read with their peer's lock, for the step's load_session (peer_lock).
        self._fresh: dict[str, tuple[Any, ...] | None] = {}
        # Bindings read with their peer's lock, good while it is held: under it only the peer's
        # own steps change the binding, and a step that does is committed through this object.
        self._bound: dict[str, Binding | None] = {}

    async def _script(self, script: Callable[[], Script[T]], kind: Kind) -> T:
        return await self._call(lambda conn: _drive(conn, script()), transaction=kind in (Kind.PUT_TX, Kind.WRITE),
                                repeatable=kind is not Kind.WRITE)


    # ----------------------------------------------------------------- running calls

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


    async def _write_batch(self, batch: Sequence[StepRow]) -> list[StepResult]:
        """The batch in one statement (pg_step_commit.py): sent again after a lost connection
        with the same token, so a first call that committed is answered, never applied twice.
        A value the call cannot carry (a NUL or a lone surrogate in a session's text, a float
        JSON cannot write) fails the whole call before anything is written: such a batch is
        written the savepoint way, where each step stands or falls alone."""
        try:
            args = (new_token(), self.process, time.time(), *commit_args(batch))
        except ValueError:
            return await self._write_batch_savepoints(batch)
        try:
            answers = await self._call(lambda conn: conn.fetchval(COMMIT_CALL, *args), transaction=False,
                                       repeatable=True)
        except _STEP_ERRORS as exc:
            log.debug("PostgreSQL step batch written the savepoint way (%s: %s)", type(exc).__name__, exc)
            return await self._write_batch_savepoints(batch)
        return step_results(answers)

    async def _write_batch_savepoints(self, batch: Sequence[StepRow]) -> list[StepResult]:
        async def write(conn: Any) -> list[StepResult]:
            return await self._write_steps(conn, batch, time.time())

        try:
            return await self._call(write, transaction=True, repeatable=False)
        except _Undone as undone:  # a batch of one, refused or failing: rolled back whole
            return [undone.result]

    async def _write_steps(self, conn: Any, steps: Sequence[StepRow], received_at: float) -> list[StepResult]:
        """One group commit's statements, inside the caller's transaction: a savepoint per step.
        A batch of one (users stepping one after another) needs none: the transaction is its
        savepoint, rolled back by raising _Undone — one round trip less."""
        if len(steps) == 1:
            only = await self._try_step(conn, steps[0], received_at)
            if only is not True:
                raise _Undone(only)
            return [True]
        results: list[StepResult] = []
        kept = True  # whether the last step was kept (its savepoint must move on past it)
        for n, step in enumerate(steps):
            # The savepoint marks the state after the last kept step: a refused step rolls back
            # to it (and leaves it in place for the next), a kept one moves it on.
            if n == 0:
                await conn.execute("SAVEPOINT step")
            elif kept:
                await conn.execute("RELEASE SAVEPOINT step; SAVEPOINT step")
            result = await self._try_step(conn, step, received_at)
            kept = result is True
            if not kept:
                await conn.execute("ROLLBACK TO SAVEPOINT step")
            results.append(result)
        return results

    async def _try_step(self, conn: Any, step: StepRow, received_at: float) -> StepResult:
        try:
            return await self._write_step(conn, step, received_at)
        except _STEP_ERRORS as exc:
            return exc

    async def _write_step(self, conn: Any, step: StepRow, received_at: float) -> bool:
        peer, state, slots, flow_version, updated_at, expected, event_id, replies = step[:8]
        session: tuple[Any, ...] = (peer, state, slots, flow_version, updated_at)
        if expected != 0:
            session += (expected,)
        if event_id is None:
            sql = _INSERT_SESSION if expected == 0 else _UPDATE_SESSION
            written = await conn.fetchval(sql, *session)
        else:
            sql = _INSERT_SESSION_MARK if expected == 0 else _UPDATE_SESSION_MARK
            written = await conn.fetchval(sql, *session, event_id, received_at, replies, self.process)
        if written is None:
            return False
        if step.has_rest:
            return await _drive(conn, self._step_rest(step))
        return True

    # ----------------------------------------------------------------- one process at a time

    @asynccontextmanager
    async def peer_lock(self, peer: str) -> AsyncIterator[None]:
        """The peer's lock across processes; its round trip also reads the peer's session, which
        the step's load_session then takes instead of a read of its own, and the peer's binding,
        which get_binding answers from while the lock is held."""
        async with self._locks.hold(peer) as read:
            if read is not UNREAD:
                self._fresh[peer] = read.session
                self._bound[peer] = None if read.binding is None else Binding(*read.binding)
            try:
                yield
            finally:
                self._fresh.pop(peer, None)
                self._bound.pop(peer, None)

    async def get_binding(self, peer: str) -> Binding | None:
        if peer in self._bound:
            return self._bound[peer]
        return await super().get_binding(peer)

    async def put_binding(self, binding: Binding) -> None:
        self._bound.pop(binding.peer, None)  # read again: an admin's change may come some other way too
        await super().put_binding(binding)

    async def delete_binding(self, peer: str) -> None:
        self._bound.pop(peer, None)
        await super().delete_binding(peer)

    async def load_session(self, peer: str) -> Session | None:
        """The session read with the peer's lock, once (a second load, e.g. after the step
        committed, reads afresh); else a read of its own."""
        found = self._fresh.pop(peer, UNREAD)
        if found is UNREAD:
            return await super().load_session(peer)
        if found is None:
            return None
        peer_, state, slots, flow_version, updated_at, version = found
        return Session(peer_, state, json.loads(slots), flow_version, updated_at, version)

    async def commit_step(self, step: StepCommit) -> bool:
        peer = step.session.peer
        self._fresh.pop(peer, None)  # what was read with the lock is older than this step
        sign_in = step.sign_in
        if sign_in is not None and sign_in.binding_changed:
            self._bound.pop(sign_in.peer, None)  # forgotten first: a step that fails must not leave it
        ok = False
        try:
            ok = await super().commit_step(step)
        finally:
            if not ok:
                # Refused (another writer stepped the peer: the lock was lost with its connection)
                # or failed: the redo reads the session afresh, and the binding with it.
                self._bound.pop(peer, None)
        return ok

    async def forget(self, *, peer: str | None = None, email: str | None = None, force: bool = False,
                     keep_session: bool = False, keep_send_log: bool = False) -> Forgotten:
        found = await super().forget(peer=peer, email=email, force=force, keep_session=keep_session,
                                     keep_send_log=keep_send_log)
        for forgotten in found.peers:  # what was read with a lock is older than this
            self._fresh.pop(forgotten, None)
            self._bound.pop(forgotten, None)
        return found

    async def prune(self, older_than: float, *, sessions_before: float | None = None,
                    codes_before: float | None = None) -> int:
        """SqlStorage.prune, and the tokens of old step batches (not counted: bookkeeping)."""
        deleted = await super().prune(older_than, sessions_before=sessions_before, codes_before=codes_before)
        await self._do(q_changed(PRUNE_BATCHES), Kind.PUT)
        return deleted

    async def outbox_take(self, now: float, leases: Mapping[str, float], limit: int = 100) -> list[OutboxItem]:
        longest = max(leases.values(), default=0.0)
        found = await self._call(lambda conn: conn.fetch(_OUTBOX_TAKE, now, limit, json.dumps(dict(leases)), longest,
                                                         self.process),
                                 transaction=True, repeatable=False)
        return [outbox_item(r[1:]) for r in sorted(found, key=lambda r: r[0])]

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
        await self._drain()
        await self._idle.wait()
        self._closed = True
        await self._locks.close()
        try:
            await asyncio.wait_for(self._pool.close(), self._close_timeout)
        except TimeoutError:
            log.warning("PostgreSQL pool did not close within %.0f s; terminating it", self._close_timeout)
            self._pool.terminate()
        await self._presence.close()  # last: what is still held is others' from now on
