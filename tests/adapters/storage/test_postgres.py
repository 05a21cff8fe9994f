"""What is particular to PostgresStorage; the Storage behaviour itself is in tests/contract.

Every test but the URL checks needs a server: SUPPORTBOT_TEST_POSTGRES_URL (see tests/postgres_db.py;
skipped without it, failed in CI). Each gets a fresh database, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from adapters.storage import postgres
from adapters.storage.postgres import (
    MIGRATION_LOCK,
    MIGRATIONS,
    PostgresStorage,
    SchemaTooNew,
    StorageClosed,
    open_postgres,
    postgres_dsn_from_url,
)
from engine.ports import Binding, Notice, OutboxItem, Session, SignInWrites, StepCommit, WatchedTicket
from tests.postgres_db import create_scratch_database, drop_database, postgres_admin_url

# The application_name of the storages under test: how their backends are found to be killed.
APP = "supportbot-under-test"


def step(peer: str, expected: int = 0, **kw: Any) -> StepCommit:
    state = kw.pop("state", "s")
    return StepCommit(Session(peer, state, kw.pop("slots", {}), "v1", 1.0), expected, **kw)


async def open_storage(dsn: str, **kw: Any) -> PostgresStorage:
    return await open_postgres(dsn, application_name=APP, **kw)


@pytest.fixture
def admin_url() -> str:
    return postgres_admin_url()


@pytest.fixture
async def dsn(admin_url: str) -> AsyncIterator[str]:
    url = await create_scratch_database(admin_url)
    yield url
    await drop_database(admin_url, url)


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Any]:
    """The test's own connection to the scratch database: to look, lock and kill."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "test-observer"})
    yield conn
    await conn.close()


@pytest.fixture
async def storage(dsn: str) -> AsyncIterator[PostgresStorage]:
    opened = await open_storage(dsn)
    yield opened
    await opened.close()


async def app_backends(db: Any, *, waiting_on_lock: bool = False) -> list[int]:
    query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1"
    if waiting_on_lock:
        query += " AND wait_event_type = 'Lock'"
    # Activity is read once per transaction unless asked afresh (the caller may hold a lock in one).
    await db.execute("SELECT pg_stat_clear_snapshot()")
    return [r[0] for r in await db.fetch(query, APP)]


async def kill_backends(db: Any, *, waiting_on_lock: bool = False) -> int:
    pids = await app_backends(db, waiting_on_lock=waiting_on_lock)
    await db.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
    return len(pids)


async def until(condition: Any) -> None:
    """Wait until the async condition holds (polling), failing after 5 s."""
    for _ in range(250):
        if await condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"{condition.__name__} did not come true within 5 s")


async def blocked_on_lock(db: Any) -> None:
    async def blocked() -> bool:
        return bool(await app_backends(db, waiting_on_lock=True))

    await until(blocked)


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1:5432/postgres", "postgres://u:p@db.example/bot?sslmode=require",
     "PostgreSQL://localhost/bot", "postgresql:///bot?host=/run/postgresql"],
)
def test_postgres_urls_are_taken_as_they_are(url: str) -> None:
    assert postgres_dsn_from_url(url) == url


@pytest.mark.parametrize("url", ["sqlite:///bot.db", "postgresql:/bot", "mysql://localhost/bot", "", "localhost"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        postgres_dsn_from_url(url)


async def test_open_checks_the_url() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        await open_postgres("sqlite:///bot.db")


# --------------------------------------------------------------------------- migrations


async def test_a_fresh_database_is_migrated(storage: PostgresStorage, db: Any) -> None:
    versions = [r[0] for r in await db.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [v for v, _ in MIGRATIONS]
    tables = {r[0] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"sessions", "bindings", "auth_codes", "auth_sends", "auth_owners", "inbox", "cursors", "schema_migrations",
            "outbox", "notices", "ticket_watch", "counters"} <= tables


async def test_workers_starting_together_migrate_once(dsn: str, db: Any) -> None:
    opened = await asyncio.gather(*(open_storage(dsn) for _ in range(5)))
    try:
        rows = await db.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == [v for v, _ in MIGRATIONS]
        # Every one of them works on the one schema.
        assert await asyncio.gather(*(s.commit_step(step(f"vk:{i}")) for i, s in enumerate(opened))) == [True] * 5
        assert await db.fetchval("SELECT count(*) FROM sessions") == 5
    finally:
        await asyncio.gather(*(s.close() for s in opened))
    # Opening again applies nothing.
    await (await open_storage(dsn)).close()
    assert await db.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version") == rows


async def test_migrating_waits_for_the_advisory_lock(dsn: str, db: Any) -> None:
    await db.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)  # another worker migrating
    opening = asyncio.create_task(open_storage(dsn))
    await asyncio.sleep(0.3)
    assert not opening.done()
    assert await db.fetchval("SELECT to_regclass('schema_migrations')") is None
    await db.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    await (await opening).close()
    assert await db.fetchval("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)


async def test_a_newer_schema_is_refused(dsn: str, db: Any) -> None:
    await (await open_storage(dsn)).close()
    await db.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    with pytest.raises(SchemaTooNew, match="newer than this program knows"):
        await open_storage(dsn)
    assert isinstance(SchemaTooNew("x"), RuntimeError)  # as SQLite's refusal

    async def pool_gone() -> bool:
        return not await app_backends(db)

    await until(pool_gone)  # the refused open left no connection behind


async def test_a_database_at_schema_1_is_upgraded_keeping_its_data(dsn: str, db: Any) -> None:
    # As a release with schema 1 left it.
    await db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
    version, statements = MIGRATIONS[0]
    for statement in statements:
        await db.execute(statement)
    await db.execute("INSERT INTO schema_migrations VALUES ($1, 0)", version)
    await db.execute("INSERT INTO sessions VALUES ('vk:1', 'menu', '{}', 'v1', 1, 1.0)")
    storage = await open_storage(dsn)
    try:
        assert (await storage.load_session("vk:1")) == Session("vk:1", "menu", {}, "v1", 1.0, 1)
        item = OutboxItem("ob-1", "vk:1", "ticket.create", {"a": 1}, 1.0, record="itsm_incident/1")
        assert await storage.commit_step(step("vk:1", 1, outbox=[item]))
        assert await storage.outbox_get("ob-1") == item
    finally:
        await storage.close()
    assert [r[0] for r in await db.fetch("SELECT version FROM schema_migrations ORDER BY 1")] == [*dict(MIGRATIONS)]


# --------------------------------------------------------------------------- lost connections


async def test_reads_recover_when_idle_connections_are_killed(dsn: str, db: Any) -> None:
    storage = await open_storage(dsn, min_size=8, max_size=8)
    try:
        assert await storage.commit_step(step("vk:1", state="kept"))
        await asyncio.gather(*(storage.load_session("vk:1") for _ in range(8)))  # every pooled connection used
        assert await kill_backends(db) == 8
        # The pool hands out connections that died meanwhile (more than there are retries).
        for _ in range(8):
            loaded = await storage.load_session("vk:1")
            assert loaded is not None and loaded.state == "kept"
        assert await storage.seen_event("e") is False
        assert await storage.get_binding("vk:1") is None
        # Writes too: a transaction that broke before its COMMIT is tried again.
        await asyncio.gather(*(storage.load_session("vk:1") for _ in range(8)))
        assert await kill_backends(db) == 8
        assert await storage.inbox_add("ev-1", "vk:1", "{}") is True
        assert await storage.commit_step(step("vk:1", 1, event_id="ev-1")) is True
        assert await storage.outbox_retry("ob-none", 0.0) is False
        assert await storage.seen_event("ev-1")
    finally:
        await storage.close()


async def test_a_read_killed_mid_query_is_tried_again(storage: PostgresStorage, db: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    assert await storage.commit_step(step("vk:1", state="kept"))
    async with db.transaction():
        await db.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        with caplog.at_level(logging.WARNING, logger="adapters.storage.postgres"):
            reading = asyncio.create_task(storage.load_session("vk:1"))
            await blocked_on_lock(db)
            assert await kill_backends(db, waiting_on_lock=True) == 1
            await blocked_on_lock(db)  # tried again, on a new connection
    loaded = await reading
    assert loaded is not None and loaded.state == "kept"
    assert "trying again" in caplog.text


async def test_a_write_killed_before_its_commit_is_tried_again_once(storage: PostgresStorage, db: Any) -> None:
    async with db.transaction():
        await db.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        writing = asyncio.create_task(storage.commit_step(step("vk:1", event_id="ev-1", state="once")))
        await blocked_on_lock(db)
        assert await kill_backends(db, waiting_on_lock=True) == 1
        await blocked_on_lock(db)
    # Had the first try committed, the second would have found ev-1 handled and answered False.
    assert await writing is True
    loaded = await storage.load_session("vk:1")
    assert loaded is not None and (loaded.state, loaded.version) == ("once", 1)
    assert await storage.seen_event("ev-1")


async def test_a_claim_killed_before_its_commit_counts_one_attempt(storage: PostgresStorage, db: Any) -> None:
    item = OutboxItem("ob-1", "vk:1", "ticket.create", {}, 1.0, next_at=1.0)
    assert await storage.commit_step(step("vk:1", outbox=[item]))
    async with db.transaction():
        await db.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        claiming = asyncio.create_task(storage.outbox_take(5.0, {"ticket.create": 5.0}))
        await blocked_on_lock(db)
        assert await kill_backends(db, waiting_on_lock=True) == 1
    assert [i.id for i in await claiming] == ["ob-1"]
    claimed = await storage.outbox_get("ob-1")
    assert claimed is not None and (claimed.attempts, claimed.next_at) == (1, 10.0)


class FlakyPool:
    """Stands in for the storage's pool: fails the next acquisitions (no connection could be
    made), loses the answer to the next COMMITs (after they committed), or rolls the next
    transactions back as a deadlock would."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.refuse = 0
        self.lose_commit = 0
        self.deadlock = 0
        self.lose_answer = 0  # of the next fetchval: a statement run in autocommit that committed
        self.acquired = 0

    async def acquire(self) -> Any:
        self.acquired += 1
        if self.refuse:
            self.refuse -= 1
            raise ConnectionRefusedError("injected: connection refused")
        return FlakyConnection(await self.pool.acquire(), self)

    async def release(self, conn: FlakyConnection) -> None:
        await self.pool.release(conn.inner)

    async def expire_connections(self) -> None:
        await self.pool.expire_connections()

    async def close(self) -> None:
        await self.pool.close()

    def terminate(self) -> None:
        self.pool.terminate()


class FlakyConnection:
    def __init__(self, inner: Any, pool: FlakyPool) -> None:
        self.inner = inner
        self.pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transaction(self) -> FlakyTransaction:
        return FlakyTransaction(self.inner.transaction(), self.pool)

    async def fetchval(self, *args: Any) -> Any:
        answer = await self.inner.fetchval(*args)
        if self.pool.lose_answer:
            self.pool.lose_answer -= 1
            raise asyncpg.exceptions.ConnectionDoesNotExistError("injected: the answer lost")
        return answer


class FlakyTransaction:
    def __init__(self, inner: Any, pool: FlakyPool) -> None:
        self.inner = inner
        self.pool = pool

    async def __aenter__(self) -> None:
        await self.inner.__aenter__()

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None and self.pool.deadlock:
            self.pool.deadlock -= 1
            await self.inner.__aexit__(RuntimeError, RuntimeError(), None)  # rolled back
            raise asyncpg.exceptions.DeadlockDetectedError("injected: deadlock detected")
        await self.inner.__aexit__(kind, exc, tb)
        if kind is None and self.pool.lose_commit:
            self.pool.lose_commit -= 1
            raise asyncpg.exceptions.ConnectionDoesNotExistError("injected: COMMIT's answer lost")


@pytest.fixture
def flaky(storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch) -> FlakyPool:
    monkeypatch.setattr(postgres, "_RETRY_DELAYS", (0.0, 0.0, 0.0))
    pool = FlakyPool(storage._pool)
    storage._pool = pool
    return pool


async def test_a_write_whose_commit_answer_was_lost_is_not_tried_again(storage: PostgresStorage,
                                                                        flaky: FlakyPool) -> None:
    flaky.lose_commit = 1
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
        await storage.inbox_add("ev-1", "vk:1", "{}")
    assert flaky.acquired == 1
    # It did commit: a second try would have answered "a duplicate" and the event been dropped.
    assert [e.event_id for e in await storage.inbox_pending()] == ["ev-1"]


async def test_a_step_whose_answer_was_lost_is_answered_once_written(storage: PostgresStorage,
                                                                      flaky: FlakyPool) -> None:
    # The step's one statement committed and its answer was lost: sent again with the same
    # token, it is answered as the first call was, and nothing is written twice.
    flaky.lose_answer = 1
    assert await storage.commit_step(step("vk:1", event_id="ev-1")) is True
    assert flaky.acquired == 2
    loaded = await storage.load_session("vk:1")
    assert loaded is not None and loaded.version == 1
    # A refused step's answer likewise: refused again, not written by the second call.
    flaky.lose_answer = 1
    assert await storage.commit_step(step("vk:1", 0, event_id="ev-2", state="late")) is False
    assert flaky.acquired == 5  # the first step twice, the load, this step twice
    assert not await storage.seen_event("ev-2")


async def test_a_repeatable_write_whose_commit_answer_was_lost_is_tried_again(storage: PostgresStorage,
                                                                               flaky: FlakyPool) -> None:
    flaky.lose_commit = 1
    await storage.notices_add([Notice("n-1", "vk:1", "text", 1.0)])
    assert flaky.acquired == 2
    assert [n.id for n in await storage.notices_unsent()] == ["n-1"]


async def test_writes_wait_for_a_connection(storage: PostgresStorage, flaky: FlakyPool) -> None:
    flaky.refuse = 3  # the server restarting: nothing was sent, so even a step is tried again
    assert await storage.commit_step(step("vk:1", event_id="ev-1")) is True
    assert flaky.acquired == 4
    flaky.refuse = 4  # one more than the retries
    with pytest.raises(ConnectionRefusedError):
        await storage.inbox_add("ev-2", "vk:1", "{}")
    assert await storage.inbox_pending() == []


async def test_a_deadlocked_transaction_is_tried_again(storage: PostgresStorage, flaky: FlakyPool) -> None:
    flaky.deadlock = 2
    assert await storage.commit_step(step("vk:1", event_id="ev-1")) is True
    assert await storage.outbox_retry("ob-none", 0.0) is False
    assert flaky.acquired == 4


# --------------------------------------------------------------------------- close


async def test_close_ends_the_pool_and_refuses_later_calls(dsn: str, db: Any) -> None:
    storage = await open_storage(dsn, min_size=2)
    assert await app_backends(db)
    await storage.close()
    await storage.close()  # twice is fine
    with pytest.raises(StorageClosed):
        await storage.load_session("vk:1")
    with pytest.raises(StorageClosed):
        await storage.commit_step(step("vk:1"))
    with pytest.raises(StorageClosed):
        await storage.put_cursor("c", "1")

    async def pool_gone() -> bool:
        return not await app_backends(db)

    await until(pool_gone)


async def test_close_lets_calls_in_flight_end(storage: PostgresStorage, db: Any) -> None:
    assert await storage.commit_step(step("vk:1", state="kept"))
    async with db.transaction():
        await db.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        reading = asyncio.create_task(storage.load_session("vk:1"))
        await blocked_on_lock(db)
        closing = asyncio.create_task(storage.close())
        await asyncio.sleep(0.2)
        assert not closing.done()
    loaded = await reading
    assert loaded is not None and loaded.state == "kept"
    await closing


# --------------------------------------------------------------------------- the write path


async def test_concurrent_steps_share_transactions(storage: PostgresStorage) -> None:
    results = await asyncio.gather(*(storage.commit_step(step(f"vk:{i}", event_id=f"ev-{i}")) for i in range(200)))
    assert all(results)
    assert (storage.commit_stats.batches, storage.commit_stats.steps) == (1, 200)


async def test_batches_are_capped(dsn: str) -> None:
    storage = await open_storage(dsn, max_batch=10)
    try:
        assert all(await asyncio.gather(*(storage.commit_step(step(f"vk:{i}")) for i in range(35))))
        assert storage.commit_stats.batches == 4  # 10 + 10 + 10 + 5
    finally:
        await storage.close()


async def test_a_step_whose_own_data_fails_fails_alone(storage: PostgresStorage) -> None:
    item = OutboxItem("ob-1", "vk:1", "ticket.create", {}, 1.0)
    assert await storage.commit_step(step("vk:1", outbox=[item]))
    results = await asyncio.gather(
        storage.commit_step(step("vk:2", event_id="ev-2")),
        storage.commit_step(step("vk:3", event_id="ev-3", outbox=[item])),  # its id exists
        storage.commit_step(step("vk:4", state="nul\x00")),  # text PostgreSQL refuses
        storage.commit_step(step("vk:5", event_id="ev-5")),
        # An event id too long (and too random to compress) for its index.
        storage.commit_step(step("vk:6", event_id=secrets.token_hex(4500))),
        return_exceptions=True,
    )
    assert results[0] is True and results[3] is True
    assert isinstance(results[1], asyncpg.UniqueViolationError)
    assert isinstance(results[2], asyncpg.DataError)
    assert isinstance(results[4], asyncpg.exceptions.ProgramLimitExceededError)
    assert storage.commit_stats.batches == 2  # one batch for the five
    assert await storage.load_session("vk:3") is None and not await storage.seen_event("ev-3")
    assert [await storage.seen_event(e) for e in ("ev-2", "ev-3", "ev-5")] == [True, False, True]


async def test_two_workers_racing_for_one_peer_have_one_winner(dsn: str) -> None:
    a, b = await open_storage(dsn), await open_storage(dsn)
    try:
        results = await asyncio.gather(*(w.commit_step(step("vk:1", event_id=f"ev-{n}", state=f"w{n}"))
                                         for n, w in enumerate([a, b] * 5)))
        assert results.count(True) == 1
        loaded = await b.load_session("vk:1")
        assert loaded is not None and (loaded.state, loaded.version) == (f"w{results.index(True)}", 1)
        # The same event reaching both workers is handled once (here by two peers' steps, so
        # only the inbox can tell them apart).
        both = await asyncio.gather(a.commit_step(step("vk:2", event_id="ev-x")),
                                    b.commit_step(step("vk:3", event_id="ev-x")))
        assert sorted(both) == [False, True]
        assert sum([await a.load_session(p) is not None for p in ("vk:1", "vk:2", "vk:3")]) == 2
    finally:
        await a.close()
        await b.close()


async def test_two_workers_batches_in_opposite_orders_all_commit(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.storage.postgres")
    a, b = await open_storage(dsn), await open_storage(dsn)
    try:
        peers = [f"vk:{i:03d}" for i in range(100)]
        for rnd in range(3):
            # Each peer gets a step from both workers, queued in opposite orders.
            results = await asyncio.gather(
                asyncio.gather(*(a.commit_step(step(p, rnd, state="a")) for p in peers)),
                asyncio.gather(*(b.commit_step(step(p, rnd, state="b")) for p in reversed(peers))),
            )
            for n in range(len(peers)):
                assert results[0][n] != results[1][len(peers) - 1 - n]  # one winner per peer
        assert all([await a.load_session(p) is not None for p in peers])
        # Each batch locks its sessions in peer order, so the two never wait on each other in a cycle.
        assert "Deadlock" not in caplog.text
    finally:
        await a.close()
        await b.close()


# --------------------------------------------------------------------------- storage format


async def test_json_is_stored_as_written(storage: PostgresStorage, db: Any) -> None:
    item = OutboxItem("ob-1", "vk:1", "ticket.create", {"тема": "принтер", "n": [1, 2]}, 1.0,
                      progress={"файлы": ["a"]})
    slots = {"nul": "a\x00b", "b": 1, "a": 2}  # escaped as \u0000, which jsonb would refuse
    assert await storage.commit_step(step("vk:1", outbox=[item], slots=slots))
    row = await db.fetchrow("SELECT payload, progress, result, told, finished_at FROM outbox")
    assert tuple(row) == ('{"тема":"принтер","n":[1,2]}', '{"файлы":["a"]}', None, False, None)
    assert await db.fetchval("SELECT slots FROM sessions") == '{"nul":"a\\u0000b","b":1,"a":2}'
    loaded = await storage.load_session("vk:1")
    assert loaded is not None and loaded.slots == slots


async def test_watched_tickets_page_in_code_point_order_whatever_the_locale(admin_url: str) -> None:
    try:
        dsn = await create_scratch_database(
            admin_url, options="TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
    except asyncpg.PostgresError as exc:
        pytest.skip(f"this server cannot make an ICU en-US database: {exc}")
    try:
        storage = await open_storage(dsn)
        try:
            keys = [("t", s) for s in ("b", "B", "a-c", "ab", "A", "_z")]
            await storage.watch_add([WatchedTicket(t, s, "N", "vk:1", "new", "") for t, s in keys])
            assert [(w.table, w.sys_id) for w in await storage.watch_list()] == sorted(keys)
            page = await storage.watch_list(("t", "B"), limit=2)
            assert [w.sys_id for w in page] == ["_z", "a-c"]
        finally:
            await storage.close()
    finally:
        await drop_database(admin_url, dsn)


@pytest.mark.parametrize(
    ("sql", "args", "index"),
    [
        (postgres.SQL.outbox_due, (1.0, 10), "outbox_due"),
        (postgres.SQL.outbox_untold, (1.0, 10), "outbox_untold"),
        ("SELECT id FROM notices WHERE sent_at IS NULL ORDER BY seq LIMIT 10", (), "notices_unsent"),
        ("SELECT event_id FROM inbox WHERE handled_at IS NULL ORDER BY seq LIMIT 10", (), "inbox_pending"),
        ("SELECT sys_id FROM ticket_watch WHERE (table_name, sys_id) > ($1, $2) ORDER BY table_name, sys_id"
         " LIMIT 10", ("", ""), "ticket_watch_pkey"),
    ],
    ids=["outbox_due", "outbox_untold", "notices_unsent", "inbox_pending", "watch_list"],
)
async def test_polling_queries_can_use_their_indexes(storage: PostgresStorage, db: Any, sql: str,
                                                     args: tuple[Any, ...], index: str) -> None:
    # Polled every few seconds: a full scan of a grown table would cost on every round. With
    # empty tables the planner prefers scans, so they are priced out here.
    await db.execute("SET enable_seqscan = off")
    await db.execute("ANALYZE")
    plan = "\n".join(r[0] for r in await db.fetch(f"EXPLAIN {sql}", *args))
    assert f" {index}" in plan, plan


async def test_a_cancelled_close_still_closes(dsn: str) -> None:
    storage = await open_storage(dsn)
    assert await storage.commit_step(step("vk:1"))
    closing = asyncio.create_task(storage.close())
    await asyncio.sleep(0)
    closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)
    await storage.close()  # waits for the same closing, which the cancel did not stop
    with pytest.raises(StorageClosed):
        await storage.load_session("vk:1")


# --------------------------------------------------------------------------- peer locks across processes


async def test_a_peer_locked_by_one_worker_waits_in_another_while_other_peers_go_on(dsn: str) -> None:
    one, two = await open_storage(dsn), await open_storage(dsn)
    try:
        order: list[str] = []
        released = asyncio.Event()

        async def second() -> None:
            async with two.peer_lock("vk:1"):
                order.append("two has vk:1")

        async with one.peer_lock("vk:1"):
            waiting = asyncio.create_task(second())
            async with two.peer_lock("vk:2"):  # another peer: not held up
                order.append("two has vk:2")
            await asyncio.sleep(0.2)
            assert not waiting.done()
            order.append("one lets vk:1 go")
            released.set()
        await asyncio.wait_for(waiting, 5)
        assert order == ["two has vk:2", "one lets vk:1 go", "two has vk:1"]
    finally:
        await one.close()
        await two.close()


async def test_steps_of_one_peer_never_overlap_across_workers(dsn: str) -> None:
    workers = [await open_storage(dsn) for _ in range(3)]
    try:
        inside: dict[str, int] = {}
        overlaps = 0
        entered = 0

        async def work(storage: PostgresStorage, peer: str) -> None:
            nonlocal overlaps, entered
            async with storage.peer_lock(peer):
                inside[peer] = inside.get(peer, 0) + 1
                entered += 1
                overlaps += inside[peer] > 1
                await asyncio.sleep(0.002)
                inside[peer] -= 1

        # Each worker stands for a process: within one, the engine never asks twice for a peer.
        async def worker(storage: PostgresStorage, peer: str) -> None:
            for _ in range(10):
                await work(storage, peer)

        await asyncio.gather(*(worker(w, f"vk:{p}") for w in workers for p in range(40)))
        assert (entered, overlaps) == (3 * 40 * 10, 0)
    finally:
        for w in workers:
            await w.close()


async def test_a_lost_lock_connection_frees_its_peers_and_a_new_one_takes_over(dsn: str, db: Any) -> None:
    one, two = await open_storage(dsn), await open_storage(dsn)
    try:
        async with one.peer_lock("vk:1"):
            pids = [r[0] for r in await db.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1", f"{APP} peer locks")]
            assert pids
            await db.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
            # The server dropped the lock with its connection: another worker gets the peer.
            async with asyncio.timeout(5), two.peer_lock("vk:1"):
                pass
        async with asyncio.timeout(5), one.peer_lock("vk:1"):  # and the first connects again
            pass
    finally:
        await one.close()
        await two.close()


async def test_a_peer_held_too_long_elsewhere_fails_the_wait(dsn: str) -> None:
    from adapters.storage.pg_peer_locks import AdvisoryPeerLocks, PeerLockTimeout

    one = await open_storage(dsn)
    locks = AdvisoryPeerLocks(lambda: asyncpg.connect(dsn), wait_limit=0.3)
    try:
        async with one.peer_lock("vk:1"):
            with pytest.raises(PeerLockTimeout):
                async with locks.hold("vk:1"):
                    pass
        async with asyncio.timeout(5), locks.hold("vk:1"):
            pass
    finally:
        await locks.close()
        await one.close()


async def test_a_wait_given_up_leaves_no_lock_behind(dsn: str) -> None:
    one, two = await open_storage(dsn), await open_storage(dsn)
    try:
        async with one.peer_lock("vk:1"):
            waiting = asyncio.create_task(two.peer_lock("vk:1").__aenter__())
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        async with asyncio.timeout(5), one.peer_lock("vk:1"):
            pass
    finally:
        await one.close()
        await two.close()


# --------------------------------------------------------------------------- round trips


class Counted:
    """A connection that counts its round trips: each statement sent, and a transaction's BEGIN
    and COMMIT (or ROLLBACK)."""

    def __init__(self, inner: Any, counter: list[int]) -> None:
        self.inner = inner
        self.counter = counter

    def __getattr__(self, name: str) -> Any:
        if name in ("fetch", "fetchval", "fetchrow", "execute", "executemany"):
            self.counter[0] += 1
        return getattr(self.inner, name)

    def transaction(self) -> Any:
        self.counter[0] += 2
        return self.inner.transaction()


class CountingPool:
    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.counter = [0]

    @property
    def trips(self) -> int:
        return self.counter[0]

    async def acquire(self) -> Counted:
        return Counted(await self.pool.acquire(), self.counter)

    async def release(self, conn: Counted) -> None:
        await self.pool.release(conn.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


def count_lock_trips(storage: PostgresStorage) -> list[int]:
    counter = [0]
    for shard in storage._locks._shards:
        connect = shard._connect

        async def counted(connect: Any = connect) -> Counted:
            return Counted(await connect(), counter)

        shard._connect = counted
        shard._conn = None  # the next round connects through the counter
    return counter


async def test_a_step_is_one_round_trip_for_lock_and_session_and_one_for_its_commit(storage: PostgresStorage) -> None:
    item = OutboxItem("ob-1", "vk:1", "ticket.create", {"n": 1}, 1.0, next_at=1.0)
    assert await storage.commit_step(step("vk:1", state="a", slots={"k": "v"}))
    pool = CountingPool(storage._pool)
    storage._pool = pool
    lock_trips = count_lock_trips(storage)
    async with storage.peer_lock("vk:1"):
        assert lock_trips[0] == 1
        loaded = await storage.load_session("vk:1")
        assert loaded is not None and (loaded.state, loaded.slots, loaded.version) == ("a", {"k": "v"}, 1)
        assert pool.trips == 0  # read with the lock
        # A plain step, then one with more to write (an outbox item, a counter, kept replies).
        assert await storage.commit_step(step("vk:1", 1, state="b", event_id="ev-1", replies="[]"))
        assert pool.trips == 1
        assert await storage.commit_step(step("vk:1", 2, state="c", event_id="ev-2", replies="[]", outbox=[item],
                                              counts=["hint"]))
        assert pool.trips == 2
        # A second load (after the step committed) reads afresh.
        again = await storage.load_session("vk:1")
        assert again is not None and (again.state, again.version) == ("c", 3)
        assert pool.trips == 3
    # A batch of many steps is one round trip too.
    assert all(await asyncio.gather(*(storage.commit_step(step(f"vk:{n}", event_id=f"ev-b{n}"))
                                      for n in range(10, 30))))
    assert pool.trips == 4
    # No session yet: known from the lock's round trip too.
    async with storage.peer_lock("vk:new"):
        assert await storage.load_session("vk:new") is None
    assert pool.trips == 4


async def test_the_binding_is_read_with_the_lock_and_follows_the_steps_own_change(storage: PostgresStorage) -> None:
    bound = Binding("vk:1", "a@ranepa.ru", "caller-1", "Анна", 5.0)
    await storage.put_binding(bound)
    pool = CountingPool(storage._pool)
    storage._pool = pool
    async with storage.peer_lock("vk:1"):
        assert await storage.get_binding("vk:1") == bound
        assert await storage.get_binding("vk:1") == bound  # as often as a step asks
        assert pool.trips == 0  # read with the lock
        # The step signs the peer out: from its commit on, the binding is read afresh.
        signed_out = SignInWrites("vk:1", binding_changed=True, binding=None)
        assert await storage.commit_step(StepCommit(Session("vk:1", "s", {}, "v1", 1.0), 0, sign_in=signed_out))
        assert await storage.get_binding("vk:1") is None
        assert pool.trips == 2
    # Without the lock, a read of its own.
    assert await storage.get_binding("vk:1") is None
    assert pool.trips == 3
    async with storage.peer_lock("vk:none"):
        assert await storage.get_binding("vk:none") is None
    assert pool.trips == 3
    # A refused commit (another writer stepped the peer meanwhile: the lock was lost) forgets
    # what the lock read: the redo reads the binding afresh.
    async with storage.peer_lock("vk:1"):
        assert await storage.get_binding("vk:1") is None
        assert pool.trips == 3
        assert not await storage.commit_step(StepCommit(Session("vk:1", "s", {}, "v1", 1.0), 7))
        assert pool.trips == 4
        assert await storage.get_binding("vk:1") is None
        assert pool.trips == 5


async def test_the_session_read_with_the_lock_is_what_the_last_holder_committed(dsn: str) -> None:
    a, b = await open_storage(dsn), await open_storage(dsn)
    try:
        for n in range(20):
            holder = (a, b)[n % 2]
            async with holder.peer_lock("vk:1"):
                loaded = await holder.load_session("vk:1")
                assert (loaded.version if loaded is not None else 0) == n
                assert await holder.commit_step(step("vk:1", n, state=f"s{n}"))
    finally:
        await a.close()
        await b.close()


async def test_steps_own_errors_in_one_statement_fail_alone(storage: PostgresStorage) -> None:
    item = OutboxItem("ob-1", "vk:1", "ticket.create", {}, 1.0)
    assert await storage.commit_step(step("vk:1", outbox=[item]))
    assert await storage.commit_step(step("vk:7", event_id="ev-7"))
    pool = CountingPool(storage._pool)
    storage._pool = pool
    results = await asyncio.gather(
        storage.commit_step(step("vk:2", event_id="ev-2")),
        storage.commit_step(step("vk:3", event_id="ev-3", outbox=[item])),  # its id exists
        storage.commit_step(step("vk:4", event_id="ev-4", replies="[]", counts=["c"],
                                 outbox=[OutboxItem("ob-4", "vk:4", "k", {"nul": "a\x00b"}, 1.0)])),
        storage.commit_step(step("vk:5", event_id="ev-7")),  # handled already: refused
        storage.commit_step(step("vk:6", event_id=secrets.token_hex(4500))),  # too long for its index
        return_exceptions=True,
    )
    assert pool.trips == 1  # no fallback: every value could be sent
    assert results[0] is True and results[2] is True and results[3] is False
    assert isinstance(results[1], asyncpg.UniqueViolationError)
    assert isinstance(results[4], asyncpg.exceptions.ProgramLimitExceededError)
    assert await storage.load_session("vk:3") is None and await storage.load_session("vk:5") is None
    assert [await storage.seen_event(e) for e in ("ev-2", "ev-3", "ev-4")] == [True, False, True]
    four = await storage.outbox_get("ob-4")
    assert four is not None and four.payload == {"nul": "a\x00b"}
    assert [(c.name, c.count) for c in await storage.counts()] == [("c", 1)]


async def test_a_step_error_whose_answer_was_lost_is_raised_again(storage: PostgresStorage,
                                                                  flaky: FlakyPool) -> None:
    item = OutboxItem("ob-1", "vk:1", "ticket.create", {}, 1.0)
    assert await storage.commit_step(step("vk:1", outbox=[item]))
    flaky.lose_answer = 1
    with pytest.raises(asyncpg.UniqueViolationError):
        await storage.commit_step(step("vk:2", outbox=[item]))
    assert flaky.acquired == 3  # the first step, then the step twice
    assert await storage.load_session("vk:2") is None
