"""What is particular to SqliteStorage; the Storage behaviour itself is in tests/contract."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.storage.sqlite import MIGRATIONS, SqliteStorage, StorageClosed, open_sqlite, sqlite_path_from_url
from engine.ports import OutboxItem, Session, StepCommit


def step(peer: str, expected: int = 0, slots: dict[str, object] | None = None) -> StepCommit:
    return StepCommit(Session(peer, "s", slots or {}, "v1", 1.0), expected)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    opened = await open_sqlite(tmp_path / "bot.db")
    yield opened
    await opened.close()


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///supportbot.db", "supportbot.db"),
        ("sqlite:///data/bot.db", "data/bot.db"),
        ("sqlite:////var/lib/supportbot/bot.db", "/var/lib/supportbot/bot.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLite:///x.db", "x.db"),
        ("sqlite:///my%20bot.db", "my bot.db"),
    ],
)
def test_url_to_path(url: str, path: str) -> None:
    assert sqlite_path_from_url(url) == path


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://localhost/bot", "not a SQLite URL"),
        ("sqlite://host/bot.db", "not a SQLite URL"),
        ("sqlite:bot.db", "not a SQLite URL"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///bot.db?mode=ro", "query strings"),
        ("", "not a SQLite URL"),
    ],
)
def test_bad_urls_say_what_is_expected(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        sqlite_path_from_url(url)
    assert "sqlite:///" in str(caught.value) or "query" in message


# --------------------------------------------------------------------------- opening and schema


async def test_file_database_is_tuned_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "bot.db"  # missing directories are created
    storage = await open_sqlite(path)
    await storage.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations")]
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert versions == [v for v, _ in MIGRATIONS]
    assert {"sessions", "bindings", "auth_codes", "auth_sends", "auth_owners", "inbox", "schema_migrations", "outbox",
            "notices", "ticket_watch", "counters"} <= tables


async def test_a_database_at_schema_1_is_upgraded_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as conn:  # as the previous release left it
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        version, statements = MIGRATIONS[0]
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        conn.execute("INSERT INTO sessions VALUES ('vk:1', 'menu', '{}', 'v1', 1, 1.0)")
    storage = await open_sqlite(path)
    try:
        assert (await storage.load_session("vk:1")).state == "menu"  # type: ignore[union-attr]
        item = OutboxItem("ob-1", "vk:1", "ticket.create", {"a": 1}, 1.0)
        assert await storage.commit_step(StepCommit(Session("vk:1", "s", {}, "v1", 2.0), 1, outbox=[item]))
        assert await storage.outbox_get("ob-1") == item
    finally:
        await storage.close()
    with sqlite3.connect(path) as conn:
        assert [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")] == [*dict(MIGRATIONS)]


@pytest.mark.parametrize(
    ("query", "index"),
    [
        # The statements the adapter runs (outbox_due, outbox_untold, notices_unsent, watch_list).
        ("SELECT id FROM outbox WHERE state = 'pending' AND next_at <= ? ORDER BY seq LIMIT 10", "outbox_due"),
        ("SELECT id FROM outbox WHERE told = 0 AND state IN ('done', 'failed') AND finished_at <= ?"
         " ORDER BY finished_at, seq LIMIT 10", "outbox_untold"),
        ("SELECT id FROM notices WHERE sent_at IS NULL ORDER BY seq LIMIT 10", "notices_unsent"),
        ("SELECT sys_id FROM ticket_watch WHERE (table_name, sys_id) > (?, ?) ORDER BY table_name, sys_id LIMIT 10",
         "sqlite_autoindex_ticket_watch_1"),
    ],
)
async def test_polling_queries_use_their_indexes(storage: SqliteStorage, query: str, index: str) -> None:
    # Polled every few seconds: a full scan of a grown table would cost on every round.
    args = (1.0,) * query.count("?")
    plan = await storage._run(lambda conn: conn.execute(f"EXPLAIN QUERY PLAN {query}", args).fetchall())
    assert any(f"INDEX {index}" in row[-1] for row in plan), plan  # covering or not


async def test_outbox_json_is_compact_unicode(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    storage = await open_sqlite(path)
    item = OutboxItem("ob-1", "vk:1", "ticket.create", {"тема": "принтер", "n": [1, 2]}, 1.0,
                      progress={"файлы": ["a"]})
    assert await storage.commit_step(StepCommit(Session("vk:1", "s", {}, "v1", 1.0), 0, outbox=[item]))
    await storage.close()
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT payload, progress, result, told, finished_at FROM outbox").fetchone()
    assert row == ('{"тема":"принтер","n":[1,2]}', '{"файлы":["a"]}', None, 0, None)


async def test_pragmas_of_the_connection(storage: SqliteStorage) -> None:
    async def pragma(name: str) -> object:
        return await storage._run(lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0])

    assert await pragma("synchronous") == 1  # NORMAL
    # On the loop's thread SQLite must not sleep on a lock: the connection waits asynchronously.
    assert await pragma("busy_timeout") == 0


async def test_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await (await open_sqlite(path)).close()
    with sqlite3.connect(path) as conn:
        first = conn.execute("SELECT applied_at FROM schema_migrations").fetchall()
    await (await open_sqlite(path)).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT applied_at FROM schema_migrations").fetchall() == first


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await (await open_sqlite(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    with pytest.raises(RuntimeError, match="newer"):
        await open_sqlite(path)


async def test_normal_runs_on_the_loop_thread_and_full_on_its_own(tmp_path: Path) -> None:
    normal = await open_sqlite(tmp_path / "normal.db")
    full = await open_sqlite(tmp_path / "full.db", synchronous="FULL")
    try:
        assert await normal._run(lambda conn: threading.get_ident()) == threading.get_ident()
        assert await full._run(lambda conn: threading.get_ident()) != threading.get_ident()
        assert await full._run(lambda conn: conn.execute("SELECT 41 + 1").fetchone()[0]) == 42
        assert await full.commit_step(step("vk:1"))
    finally:
        await normal.close()
        await full.close()


async def test_the_wal_is_checkpointed_and_stays_short(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    storage = await open_sqlite(path)
    try:
        big = {"text": "x" * 3000}  # about a page per step
        for n in range(3000):
            assert await storage.commit_step(step(f"vk:{n}", slots=big))
        # Checkpointed pages are reused: the WAL stays near SQLite's 1000 pages between two
        # checkpoints, not the 3 000+ pages of all the steps (4 KiB pages).
        assert (tmp_path / "bot.db-wal").stat().st_size < 1500 * 4096
    finally:
        await storage.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 3000


async def test_a_lock_held_by_another_process_keeps_no_one_else_waiting(tmp_path: Path) -> None:
    """Another connection (`supportbot outbox retry` beside the bot, an admin's shell) holds the
    write lock: the step waits for it without holding up the event loop, then commits."""
    path = tmp_path / "bot.db"
    storage = await open_sqlite(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def ticking() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(ticking())
        step_done = asyncio.create_task(storage.commit_step(step("vk:1")))
        await asyncio.sleep(0.1)
        assert not step_done.done() and ticks > 10  # the step waits; the loop runs on
        other.execute("COMMIT")
        assert await step_done
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
    finally:
        other.close()
        await storage.close()


async def test_a_lock_held_past_the_busy_timeout_fails_the_call(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    storage = await open_sqlite(path, busy_timeout_ms=100)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await storage.commit_step(step("vk:1"))
        other.execute("ROLLBACK")
        assert await storage.commit_step(step("vk:1"))  # and the storage goes on
    finally:
        other.close()
        await storage.close()


async def test_prune_deletes_in_chunks_and_all_of_them(storage: SqliteStorage) -> None:
    total = 2 * 2000 + 17  # two whole chunks and a part
    await storage._run(lambda conn: conn.executemany(
        "INSERT INTO inbox (event_id, peer, received_at, handled_at) VALUES (?, 'vk:1', 1.0, 2.0)",
        [(f"e{n}",) for n in range(total)]))
    await storage._run(lambda conn: conn.execute(
        "INSERT INTO inbox (event_id, peer, received_at) VALUES ('unhandled', 'vk:1', 1.0)"))
    assert await storage.prune(10.0) == total
    left = await storage._run(lambda conn: conn.execute("SELECT event_id FROM inbox").fetchall())
    assert left == [("unhandled",)]


# --------------------------------------------------------------------------- group commit


async def test_concurrent_steps_share_transactions(storage: SqliteStorage) -> None:
    results = await asyncio.gather(*(storage.commit_step(step(f"vk:{i}")) for i in range(200)))
    assert all(results)
    stats = storage.commit_stats
    assert stats.steps == 200
    # gather starts all 200 callers before the flusher task that the first one created.
    assert stats.batches == 1


async def test_sequential_steps_commit_one_by_one(storage: SqliteStorage) -> None:
    for v in range(5):
        assert await storage.commit_step(step("vk:1", v)) is True
    assert (storage.commit_stats.batches, storage.commit_stats.steps) == (5, 5)


async def test_batches_are_capped(tmp_path: Path) -> None:
    storage = await open_sqlite(tmp_path / "bot.db", max_batch=10)
    try:
        assert all(await asyncio.gather(*(storage.commit_step(step(f"vk:{i}")) for i in range(35))))
        assert storage.commit_stats.batches == 4  # 10 + 10 + 10 + 5
    finally:
        await storage.close()


async def test_a_failing_batch_fails_all_its_callers_and_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    storage = await open_sqlite(path)
    try:
        with sqlite3.connect(path) as conn:  # a fault inside the transaction, as a full disk would be
            conn.execute(
                "CREATE TRIGGER boom BEFORE INSERT ON sessions WHEN NEW.peer = 'vk:boom'"
                " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        peers = ["vk:1", "vk:2", "vk:boom", "vk:3"]
        results = await asyncio.gather(
            *(storage.commit_step(step(p)) for p in peers), return_exceptions=True
        )
        # All four were queued before the flusher ran, so they share the failing transaction.
        assert storage.commit_stats.batches == 0
        assert all(isinstance(r, sqlite3.IntegrityError) and "injected" in str(r) for r in results)
        # vk:1 and vk:2 were rolled back with it.
        assert [await storage.load_session(p) for p in peers] == [None] * 4
        # The storage is still usable, and the refused steps can be redone.
        assert await storage.commit_step(step("vk:2")) is True
    finally:
        await storage.close()


async def test_unserialisable_slots_fail_only_their_caller(storage: SqliteStorage) -> None:
    results = await asyncio.gather(
        storage.commit_step(step("vk:1")),
        storage.commit_step(step("vk:2", slots={"bad": object()})),
        storage.commit_step(step("vk:3")),
        return_exceptions=True,
    )
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], TypeError)
    assert [await storage.load_session(p) is not None for p in ("vk:1", "vk:2", "vk:3")] == [True, False, True]


async def test_an_unserialisable_outbox_payload_fails_only_its_caller(storage: SqliteStorage) -> None:
    bad = OutboxItem("ob-bad", "vk:2", "ticket.create", {"file": b"bytes"}, 1.0)
    results = await asyncio.gather(
        storage.commit_step(step("vk:1")),
        storage.commit_step(StepCommit(Session("vk:2", "s", {}, "v1", 1.0), 0, outbox=[bad])),
        return_exceptions=True,
    )
    assert results[0] is True
    assert isinstance(results[1], TypeError)
    assert [await storage.load_session(p) is not None for p in ("vk:1", "vk:2")] == [True, False]
    assert await storage.outbox_list() == []


async def test_a_cancelled_caller_does_not_disturb_the_batch(storage: SqliteStorage) -> None:
    tasks = [asyncio.create_task(storage.commit_step(step(f"vk:{i}"))) for i in range(10)]
    await asyncio.sleep(0)
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert [r for i, r in enumerate(done) if i != 3] == [True] * 9
    # The step was already queued, so it was written even though its caller left.
    assert all([await storage.load_session(f"vk:{i}") is not None for i in range(10)])


async def test_slots_are_stored_as_compact_unicode_json(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    storage = await open_sqlite(path)
    await storage.commit_step(step("vk:1", slots={"тема": "принтер", "n": [1, 2]}))
    await storage.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT slots FROM sessions").fetchone()[0] == '{"тема":"принтер","n":[1,2]}'


async def test_calls_after_close_are_refused(tmp_path: Path) -> None:
    storage = await open_sqlite(":memory:")
    await storage.close()
    with pytest.raises(StorageClosed):
        await storage.commit_step(step("vk:1"))
    with pytest.raises(StorageClosed):
        await storage.load_session("vk:1")


async def test_unknown_synchronous_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        await open_sqlite(":memory:", synchronous="OFF")  # type: ignore[arg-type]


async def test_a_database_at_schema_2_gains_the_outbox_record_order(tmp_path: Path) -> None:
    """Migration 3 adds columns to an outbox that already holds items."""
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    for version, statements in MIGRATIONS[:2]:
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
    conn.execute("INSERT INTO outbox (id, peer, kind, payload, state, next_at, created_at, updated_at)"
                 " VALUES ('old-1', 'vk:1', 'ticket.create', '{}', 'pending', 0, 0, 0)")
    conn.commit()
    conn.close()
    storage = await open_sqlite(path)
    try:
        (item,) = await storage.outbox_due(1.0)
        assert (item.id, item.record, item.retried_at) == ("old-1", None, None)
    finally:
        await storage.close()
