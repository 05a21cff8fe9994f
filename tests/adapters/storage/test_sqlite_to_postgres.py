"""`supportbot migrate --from-sqlite`: an embedded deployment copied into PostgreSQL, whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.storage.postgres import open_postgres
from adapters.storage.sqlite import open_sqlite
from adapters.storage.sqlite_to_postgres import TargetNotEmpty, copy_sqlite_to_postgres
from engine.ports import (
    Binding,
    Notice,
    OutboxItem,
    OutboxOutcome,
    PendingCode,
    Session,
    SignInWrites,
    StepCommit,
    WatchedTicket,
)
from engine.replies import Button

NOW = 1_900_000_000.0


@pytest.fixture
def target(scratch_postgres: str) -> str:
    return scratch_postgres


async def embedded(path: Path) -> None:
    """A small deployment in use: sessions, a sign-in, codes, events, outbox work, notices."""
    db = await open_sqlite(path)
    created = OutboxItem("ob-done", "vk:1", "ticket.create", {"table": "itsm_incident"}, NOW, next_at=NOW)
    waiting = OutboxItem("ob-wait", "vk:1", "ticket.comment", {"text": "ещё"}, NOW, next_at=NOW + 60,
                         attempts=2, record="itsm_incident/7", last_error="HTTP 503")
    slots = {"description": "Не печатает принтер 🖨", "files": []}
    assert await db.commit_step(StepCommit(Session("vk:1", "create_ticket.queued", slots, "v1", NOW), 0,
                                           event_id="ev-1", replies='[{"t":"Заявка принята"}]',
                                           outbox=[created, waiting]))
    created.state, created.told, created.updated_at = "done", True, NOW + 1
    created.result = {"event": "created", "vars": {"ticket": {"number": "INC0000001"}}}
    await db.outbox_finish(OutboxOutcome(created, watch=[WatchedTicket("itsm_incident", "7", "INC0000001",
                                                                       "vk:1", "-2", "2026-01-01 10:00:00")]))
    await db.put_binding(Binding("vk:1", "a@ranepa.ru", "caller-1", "Анна", NOW))
    code = PendingCode("vk:2", "b@ranepa.ru", b"\x00hash\xff", b"salt", NOW, NOW + 600, 1)
    assert await db.commit_step(StepCommit(Session("vk:2", "auth.code", {}, "v1", NOW), 0, sign_in=SignInWrites(
        "vk:2", code_changed=True, code=code), counts=["hint_helped"]))
    assert await db.reserve_send("vk:2", "b@ranepa.ru", NOW, NOW - 3600, peer_cap=5, others_cap=10)
    assert await db.inbox_add("ev-2", "vk:3", '{"type":"message_new"}')
    await db.notices_add([Notice("n-1", "vk:1", "Заявка INC0000001: новый статус — В работе.", NOW,
                                 ((Button("Ответить", "answer", number="INC0000001"),),))])
    await db.watch_update([WatchedTicket("itsm_incident", "7", "INC0000001", "vk:1", "-2", "2026-01-01 10:00:00",
                                         comment_after="000000000000000042", asked_at=NOW)], [])
    await db.put_cursor("longpoll:515", "1234")
    await db.close()


async def test_everything_is_copied_and_works_on_postgres(tmp_path: Path, target: str) -> None:
    source = tmp_path / "supportbot.db"
    await embedded(source)
    copied = await copy_sqlite_to_postgres(source, target)
    assert copied == {"sessions": 2, "bindings": 1, "auth_codes": 1, "auth_sends": 1, "auth_owners": 1, "inbox": 2,
                      "cursors": 1, "outbox": 2, "notices": 1, "counters": 1, "ticket_watch": 1}
    pg = await open_postgres(target)
    try:
        session = await pg.load_session("vk:1")
        assert session is not None and session.slots["description"] == "Не печатает принтер 🖨"
        assert session.version == 1
        assert await pg.get_binding("vk:1") == Binding("vk:1", "a@ranepa.ru", "caller-1", "Анна", NOW)
        code = await pg.get_code("vk:2")
        assert code is not None and code.code_hash == b"\x00hash\xff" and code.attempts == 1
        assert (await pg.code_send_stats("vk:2", "b@ranepa.ru", NOW - 1)).by_pair == 1
        assert [(c.name, c.count) for c in await pg.counts()] == [("hint_helped", 1)]
        assert [e.event_id for e in await pg.inbox_pending()] == ["ev-2"]
        assert [(u.event_id, u.replies) for u in await pg.replies_unsent()] == [("ev-1", '[{"t":"Заявка принята"}]')]
        items = {i.id: i for i in await pg.outbox_list()}
        assert items["ob-done"].state == "done" and items["ob-done"].told is True
        assert (items["ob-wait"].record, items["ob-wait"].attempts) == ("itsm_incident/7", 2)
        assert [i.id for i in await pg.outbox_due(NOW + 120)] == ["ob-wait"]
        assert [(n.id, n.buttons[0][0].payload) for n in await pg.notices_unsent()] == [
            ("n-1", '{"e":"answer","n":"INC0000001"}')]
        # The journal cursor and the question asked go along: nothing is told twice, nor lost.
        assert [(w.number, w.active, w.comment_after, w.asked_at) for w in await pg.watch_list()] == [
            ("INC0000001", True, "000000000000000042", NOW)]
        assert await pg.get_cursor("longpoll:515") == "1234"
        # The bot goes on there: new rows come after the copied ones.
        assert await pg.inbox_add("ev-3", "vk:3", "{}")
        assert [e.event_id for e in await pg.inbox_pending()] == ["ev-2", "ev-3"]
        assert await pg.commit_step(StepCommit(Session("vk:1", "main.menu", {}, "v1", NOW + 5), 1))
    finally:
        await pg.close()


async def test_a_database_in_use_is_not_copied_into(tmp_path: Path, target: str) -> None:
    source = tmp_path / "supportbot.db"
    await embedded(source)
    pg = await open_postgres(target)
    assert await pg.commit_step(StepCommit(Session("vk:9", "main.menu", {}, "v1", NOW), 0))
    await pg.close()
    with pytest.raises(TargetNotEmpty, match="already has sessions"):
        await copy_sqlite_to_postgres(source, target)
    pg = await open_postgres(target)
    try:
        assert await pg.get_binding("vk:1") is None  # nothing half-copied
    finally:
        await pg.close()


async def test_a_missing_source_is_named(tmp_path: Path, target: str) -> None:
    with pytest.raises(FileNotFoundError, match="no SQLite database"):
        await copy_sqlite_to_postgres(tmp_path / "nope.db", target)


async def test_every_column_of_the_schema_is_copied_or_left_out_on_purpose(tmp_path: Path) -> None:
    """A column a migration adds must be copied too (or be named in NOT_COPIED with its reason):
    journal cursors, notice buttons and the like were once left behind."""
    import sqlite3

    from adapters.storage.sqlite_to_postgres import NOT_COPIED, TABLES

    await (await open_sqlite(tmp_path / "schema.db")).close()
    conn = sqlite3.connect(tmp_path / "schema.db")
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        schema = {name: {r[1] for r in conn.execute(f"PRAGMA table_info({name})")} for name in names}
    finally:
        conn.close()
    copied = {t.name: set(t.columns) for t in TABLES}
    for name, columns in schema.items():
        if name in ("leases", "schema_migrations") or name.startswith("sqlite_"):
            continue  # the processes' own, and the schema's
        assert name in copied, f"table {name} is not copied"
        left = columns - copied[name] - NOT_COPIED.get(name, frozenset())
        assert not left, f"{name}: {sorted(left)} are neither copied nor left out on purpose"
