"""The status watcher against the SimpleOne emulator over HTTP, the real client and SQLite."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from adapters.simpleone.client import SimpleOneClient
from adapters.storage.sqlite import SqliteStorage
from emulators.simpleone.server import RunningEmulator
from emulators.simpleone.state import ManualClock
from engine.flows.model import FlowSet
from engine.flows.source import StaticFlows
from engine.flows.templates import parse
from engine.ports import Binding, Notice, WatchedTicket
from engine.replies import Button
from engine.work.leases import JobLease
from engine.work.status_watch import StatusWatcher, parse_updated_at
from tests.engine.work.watching import DAY, INC, PEER, REQ, CrashingStorage, new_ticket, record, watched


async def follow(storage: SqliteStorage, emulator: RunningEmulator, table: str, sys_id: str, *,
                 peer: str = PEER, fresh: bool = False) -> WatchedTicket:
    """Follow a ticket as last seen now, or (fresh) as the bot just created it: no state yet."""
    r = record(emulator, table, sys_id)
    watched = (WatchedTicket(table, sys_id, r["number"], peer, "", "") if fresh
               else WatchedTicket(table, sys_id, r["number"], peer, r["state"], r["sys_updated_at"]))
    await storage.watch_add([watched])
    return watched


def change(emulator: RunningEmulator, clock: ManualClock, table: str, sys_id: str, **fields: str) -> None:
    """An agent's edit a minute later (sys_updated_at has one-second resolution)."""
    clock.advance(60)
    for name, value in fields.items():
        emulator.state.set_field(table, sys_id, name, value)


def status_id(table: str, sys_id: str, updated_at: str, state: str) -> str:
    return f"status:{table}:{sys_id}:{updated_at}:{state}"


# --------------------------------------------------------------------------- notices


async def test_state_change_is_told_once_with_the_yaml_label(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    other = new_ticket(emulator, subject="Нет доступа к почте")
    await follow(storage, emulator, INC, sys_id)
    await follow(storage, emulator, INC, other, peer="vk:200")
    watcher = make_watcher()
    assert await watcher.run_once() == 0

    change(emulator, clock, INC, sys_id, state="2")
    updated = record(emulator, INC, sys_id)["sys_updated_at"]
    assert updated == "2025-01-15 09:01:00"
    assert await watcher.run_once() == 1
    number = record(emulator, INC, sys_id)["number"]
    assert await storage.notices_unsent() == [Notice(
        status_id(INC, sys_id, updated, "2"), PEER,
        f"Заявка {number} «Не печатает принтер»: новый статус — «В работе».", clock.now.timestamp(),
        ((Button("Открыть заявку", "by_number", number=number),),))]
    rows = await watched(storage)
    # No journal entries yet: its comments are read from the first from now on ("").
    assert rows[(INC, sys_id)] == WatchedTicket(INC, sys_id, number, PEER, "2", updated, True, "")
    assert rows[(INC, other)].state == "-2"

    # Another round sees nothing new.
    assert await watcher.run_once() == 0
    assert len(await storage.notices_unsent()) == 1


async def test_each_change_is_its_own_notice(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator, REQ, subject="Нужен ноутбук")
    await follow(storage, emulator, REQ, sys_id)
    watcher = make_watcher()
    change(emulator, clock, REQ, sys_id, state="2")
    assert await watcher.run_once() == 1
    change(emulator, clock, REQ, sys_id, state="5")
    assert await watcher.run_once() == 1
    texts = [n.text.rsplit("— ", 1)[1] for n in await storage.notices_unsent()]
    assert texts == ["«В работе».", "«Внешняя обработка»."]


async def test_first_sight_of_a_created_ticket_records_without_a_notice(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    change(emulator, clock, INC, sys_id, state="0")  # assigned before the bot first looked
    await follow(storage, emulator, INC, sys_id, fresh=True)
    watcher = make_watcher()
    assert await watcher.run_once() == 0
    assert await storage.notices_unsent() == []
    row = (await watched(storage))[(INC, sys_id)]
    assert (row.state, row.updated_at) == ("0", "2025-01-15 09:01:00")

    change(emulator, clock, INC, sys_id, state="2")
    assert await watcher.run_once() == 1
    assert (await storage.notices_unsent())[0].text.endswith("новый статус — «В работе».")


async def test_an_update_without_a_state_change_is_recorded_silently(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    change(emulator, clock, INC, sys_id, additional_comments="Проверьте кабель")
    watcher = make_watcher()
    assert await watcher.run_once() == 0
    assert await storage.notices_unsent() == []
    row = (await watched(storage))[(INC, sys_id)]
    assert (row.state, row.updated_at) == ("-2", "2025-01-15 09:01:00")


class Reloadable:
    """Flows as a hot reload holds them: `current` is replaced while the watcher runs."""

    def __init__(self, flow_set: FlowSet) -> None:
        self.current = flow_set


async def test_texts_come_from_the_flows_of_the_round(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, client: SimpleOneClient,
        flow_set: FlowSet) -> None:
    flows = Reloadable(flow_set)
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    watcher = StatusWatcher(storage, client, flows, clock=lambda: clock.now.timestamp())
    notices = {**flow_set.bot.notices, "status_changed": parse("{ticket.number}: {ticket.status} ({ticket.table})")}
    flows.current = replace(flow_set, bot=replace(flow_set.bot, notices=notices))  # a hot reload
    change(emulator, clock, INC, sys_id, state="4")
    assert await watcher.run_once() == 1
    number = record(emulator, INC, sys_id)["number"]
    # The state's label is SimpleOne's own (its sys_choice), the flows having no override of "4".
    assert [n.text for n in await storage.notices_unsent()] == [f"{number}: Отложен (itsm_incident)"]


async def test_a_label_in_the_flows_overrides_simpleones_and_the_fallback_stands_in_for_it(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, client: SimpleOneClient,
        flow_set: FlowSet) -> None:
    flows = Reloadable(flow_set)
    notices = {**flow_set.bot.notices, "status_changed": parse("{ticket.number}: {ticket.status}")}
    # Every state is told as status_changed here (none waits for the user or asks to confirm).
    tickets = replace(flow_set.tickets, status_labels={"itsm_incident": {"4": "На паузе"}},
                      status_fallback={"default": {"2": "В работе (fallback)", "4": "Отложена (fallback)"}},
                      finished_states=frozenset(), waiting_states=frozenset())
    flows.current = replace(flow_set, bot=replace(flow_set.bot, notices=notices), tickets=tickets)
    first, second = new_ticket(emulator), new_ticket(emulator)
    await follow(storage, emulator, INC, first, peer=PEER)
    await follow(storage, emulator, INC, second, peer="vk:200")
    watcher = StatusWatcher(storage, client, flows, clock=lambda: clock.now.timestamp())
    change(emulator, clock, INC, first, state="4")
    change(emulator, clock, INC, second, state="7")
    assert await watcher.run_once() == 2
    one, two = record(emulator, INC, first)["number"], record(emulator, INC, second)["number"]
    assert sorted(n.text for n in await storage.notices_unsent()) == [f"{one}: На паузе", f"{two}: Выполнен"]
    # SimpleOne cannot be asked for its labels now: the fallback is shown, the override still wins.
    client.forget_state_labels()
    emulator.faults.fail_next(3, status=403, method="GET", path_prefix="/rest/v1/table/sys_choice")
    change(emulator, clock, INC, second, state="2")
    change(emulator, clock, INC, first, state="-2")
    assert await watcher.run_once() == 2
    texts = {n.text for n in await storage.notices_unsent()} - {f"{one}: На паузе", f"{two}: Выполнен"}
    assert texts == {f"{one}: -2", f"{two}: В работе (fallback)"}  # -2 has no label anywhere: the code


# --------------------------------------------------------------------------- crashes and outages


async def test_a_round_that_crashes_before_the_commit_is_told_once_later(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    before = await follow(storage, emulator, INC, sys_id)
    change(emulator, clock, INC, sys_id, state="2")
    crashing = CrashingStorage(storage)
    watcher = make_watcher(crashing)
    with pytest.raises(RuntimeError, match="killed"):
        await watcher.run_once()
    assert await storage.notices_unsent() == []
    assert (await watched(storage))[(INC, sys_id)] == before

    assert await watcher.run_once() == 1
    assert await watcher.run_once() == 0
    notices = await storage.notices_unsent()
    assert [n.id for n in notices] == [status_id(INC, sys_id, "2025-01-15 09:01:00", "2")]


async def test_seeing_the_same_change_again_reuses_the_notice_id(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    before = await follow(storage, emulator, INC, sys_id)
    change(emulator, clock, INC, sys_id, state="2")
    watcher = make_watcher()
    assert await watcher.run_once() == 1
    # As if the record had been restored from before the round: the change is seen again.
    await storage.watch_drop([(INC, sys_id)])
    await storage.watch_add([before])
    assert await watcher.run_once() == 1
    assert len(await storage.notices_unsent()) == 1


async def test_the_loop_survives_a_failed_round(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    change(emulator, clock, INC, sys_id, state="2")
    watcher = make_watcher(CrashingStorage(storage, crashes=2), interval=0.01)
    task = asyncio.create_task(watcher.run())
    try:
        for _ in range(500):  # up to ~5 s
            if await storage.notices_unsent():
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(await storage.notices_unsent()) == 1
    failures = [r for r in caplog.records if r.name == "engine.work.status_watch" and r.levelno == logging.ERROR]
    assert len(failures) == 2


async def test_an_outage_changes_nothing_and_the_change_is_told_after_it(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    ids = [new_ticket(emulator) for _ in range(4)]
    gone = new_ticket(emulator, REQ)
    for sys_id in ids:
        await follow(storage, emulator, INC, sys_id)
    await follow(storage, emulator, REQ, gone)
    before = await watched(storage)
    change(emulator, clock, INC, ids[0], state="2")
    emulator.state.delete(REQ, gone)
    emulator.faults.outage = True
    watcher = make_watcher(page=2)
    caplog.set_level(logging.WARNING, logger="engine.work.status_watch")

    assert await watcher.run_once() == 0
    assert await storage.notices_unsent() == []
    assert await watched(storage) == before  # the deleted one too: a failed call is no answer
    assert watcher.last_error is not None
    warnings = [r for r in caplog.records if r.name == "engine.work.status_watch"]
    assert [r.levelno for r in warnings] == [logging.WARNING]

    emulator.faults.outage = False
    assert await watcher.run_once() == 1
    assert watcher.last_error is None
    assert [n.id for n in await storage.notices_unsent()] == [status_id(INC, ids[0], "2025-01-15 09:01:00", "2")]
    assert (REQ, gone) not in await watched(storage)


async def test_a_refused_read_skips_those_tickets_only(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    inc = new_ticket(emulator)
    req = new_ticket(emulator, REQ)
    await follow(storage, emulator, INC, inc)
    await follow(storage, emulator, REQ, req)
    change(emulator, clock, INC, inc, state="2")
    emulator.state.delete(REQ, req)
    emulator.faults.fail_next(1, status=403, method="GET", path_prefix=f"/rest/v1/table/{REQ}")
    watcher = make_watcher()
    assert await watcher.run_once() == 1  # the incidents were read
    assert watcher.last_error is not None and watcher.last_error.startswith(f"{REQ}: ")
    assert (REQ, req) in await watched(storage)  # refused is not missing
    assert await watcher.run_once() == 0
    assert list(await watched(storage)) == [(INC, inc)]


# --------------------------------------------------------------------------- forgetting


async def test_closed_tickets_are_dropped_after_the_horizon(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    change(emulator, clock, INC, sys_id, state="10", active="0")
    watcher = make_watcher(forget_closed_after=7 * DAY)
    assert await watcher.run_once() == 1
    assert (await storage.notices_unsent())[0].text.endswith("новый статус — «Закрыт».")  # SimpleOne's own label
    row = (await watched(storage))[(INC, sys_id)]
    assert (row.state, row.active) == ("10", False)

    clock.advance(7 * DAY - 61)
    assert await watcher.run_once() == 0
    assert (INC, sys_id) in await watched(storage)
    clock.advance(61)  # exactly 7 days after it was closed
    assert await watcher.run_once() == 0
    assert await watched(storage) == {}


async def test_a_ticket_closed_long_ago_is_told_and_dropped_in_one_round(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    change(emulator, clock, INC, sys_id, state="10", active="0")
    clock.advance(8 * DAY)  # the bot was down all that time
    watcher = make_watcher()
    assert await watcher.run_once() == 1
    assert (await storage.notices_unsent())[0].text.endswith("новый статус — «Закрыт».")
    assert await watched(storage) == {}


async def test_a_reopened_ticket_is_kept(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    watcher = make_watcher(forget_closed_after=DAY)
    change(emulator, clock, INC, sys_id, state="7", active="0")
    assert await watcher.run_once() == 1
    change(emulator, clock, INC, sys_id, state="2", active="1")
    clock.advance(2 * DAY)
    assert await watcher.run_once() == 1
    assert (await watched(storage))[(INC, sys_id)].active is True


async def test_deleted_tickets_are_dropped(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    kept = new_ticket(emulator)
    deleted = new_ticket(emulator)
    await follow(storage, emulator, INC, kept)
    await follow(storage, emulator, INC, deleted)
    emulator.state.delete(INC, deleted)
    watcher = make_watcher()
    assert await watcher.run_once() == 0
    assert list(await watched(storage)) == [(INC, kept)]
    assert await storage.notices_unsent() == []


async def test_a_bulk_read_that_leaves_out_existing_tickets_drops_nothing(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, client: SimpleOneClient,
        flow_set: FlowSet) -> None:
    class BlindBulk:
        """The real client, but its bulk read answers "none of them" (a query read wrongly)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        async def get_tickets(self, table: str, sys_ids: Sequence[str]) -> list[Any]:
            return []

    first, second = new_ticket(emulator), new_ticket(emulator)
    await follow(storage, emulator, INC, first)
    await follow(storage, emulator, INC, second)
    change(emulator, clock, INC, first, state="2")
    watcher = StatusWatcher(storage, BlindBulk(), StaticFlows(flow_set), clock=lambda: clock.now.timestamp())
    assert await watcher.run_once() == 1  # the one read on its own is still told
    assert set(await watched(storage)) == {(INC, first), (INC, second)}
    assert watcher.last_error == f"{INC}: the bulk read left out {first}, which exists; not trusting it this round"


# --------------------------------------------------------------------------- paging


async def test_every_page_and_table_is_checked_with_one_call_each(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    tickets = [(INC, new_ticket(emulator, INC, f"Инцидент {n}")) for n in range(4)]
    tickets += [(REQ, new_ticket(emulator, REQ, f"Запрос {n}")) for n in range(3)]
    for n, (table, sys_id) in enumerate(tickets):
        await follow(storage, emulator, table, sys_id, peer=f"vk:{n}")
        await storage.put_binding(Binding(f"vk:{n}", f"u{n}@ranepa.ru", "caller-1", "U", 0.0))
    clock.advance(60)
    for table, sys_id in tickets:
        emulator.state.set_field(table, sys_id, "state", "2")
    emulator.state.request_log.clear()
    watcher = make_watcher(page=3)

    assert await watcher.run_once() == 7
    notices = await storage.notices_unsent()
    assert sorted(n.peer for n in notices) == [f"vk:{n}" for n in range(7)]
    assert {n.id for n in notices} == {status_id(t, s, "2025-01-15 09:01:00", "2") for t, s in tickets}
    assert {w.state for w in (await watched(storage)).values()} == {"2"}
    # Pages (by table, sys_id): 3 incidents | 1 incident + 2 requests | 1 request.
    reads = [e.path for e in emulator.state.request_log if e.method == "GET"]
    # The notices' state labels cost one read per table for the whole round (cached after it);
    # the journal one read per page and table (no entries yet), and each state change one more
    # (whether the bot's own account made it: the history's author).
    journal = "/rest/v1/table/sys_activity_feed_item"
    assert [p for p in reads if p.endswith(("/itsm_incident", "/itsm_request"))] == [
        f"/rest/v1/table/{t}" for t in (INC, INC, REQ, REQ)]
    assert reads.count(journal) == 4 + 7
    assert reads.count("/rest/v1/table/sys_choice") == 2


def test_parse_updated_at() -> None:
    assert parse_updated_at("2025-01-15 09:00:00") == 1736931600.0
    assert parse_updated_at("15.01.2025 09:00") is None
    assert parse_updated_at("") is None


async def test_a_peer_that_signed_out_or_changed_hands_hears_nothing(
        storage: SqliteStorage, emulator: RunningEmulator, clock: ManualClock, make_watcher: Any) -> None:
    mine, other = new_ticket(emulator), new_ticket(emulator, subject="Не работает почта")
    await follow(storage, emulator, INC, mine)
    await follow(storage, emulator, INC, other, peer="vk:200")
    await storage.delete_binding(PEER)  # signed out
    await storage.put_binding(Binding("vk:200", "new@ranepa.ru", "caller-2", "New", 0.0))  # someone else now
    change(emulator, clock, INC, mine, state="2")
    change(emulator, clock, INC, other, state="2")
    assert await make_watcher().run_once() == 0
    assert await storage.notices_unsent() == []
    # Someone else's chat now: no longer followed. Signed out: followed, the change seen, untold.
    assert {k[1]: w.state for k, w in (await watched(storage)).items()} == {mine: "2"}
    await storage.put_binding(Binding(PEER, "back@ranepa.ru", "caller-1", "Back", 0.0))
    change(emulator, clock, INC, mine, state="3")
    assert await make_watcher().run_once() == 1  # signed back in: told again


# --------------------------------------------------------------------------- push (pokes)


class OtherHolds:
    """Shared storage whose status_watch lease another worker holds."""

    shared = True
    process = "this-worker"

    async def lease_acquire(self, name: str, holder: str, now: float, until: float) -> bool:
        return False

    async def lease_release(self, name: str, holder: str) -> None:
        return None


async def running(watcher: StatusWatcher) -> asyncio.Task[None]:
    """The watcher's loop, started and past its first (normal) round."""
    task = asyncio.create_task(watcher.run())
    for _ in range(500):
        if watcher.rounds:
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("the first round never finished")


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def told(storage: SqliteStorage, count: int = 1, within: float = 5.0) -> float:
    """Seconds until `count` notices are stored (failing after `within`)."""
    start = time.monotonic()
    while len(await storage.notices_unsent()) < count:
        assert time.monotonic() - start < within, "not told in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_a_poked_ticket_is_told_within_about_a_second_not_after_the_interval(
        emulator: RunningEmulator, storage: SqliteStorage, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    watcher = make_watcher(interval=3600)  # the next normal round is an hour away
    task = await running(watcher)
    try:
        emulator.state.act_as_agent("comment", sys_id, "Какой у вас кабинет?")
        assert await storage.watch_poke(INC, sys_id)
        waited = await told(storage)
    finally:
        await stopped(task)
    # One look a second (POKE_EVERY): told at the first look after the poke.
    assert waited < 2.0
    (notice,) = await storage.notices_unsent()
    assert "Какой у вас кабинет?" in notice.text and notice.peer == PEER
    assert (watcher.rounds, watcher.poked_rounds) == (1, 1)
    assert await storage.watch_poked() == []


async def test_a_poke_for_an_unknown_ticket_changes_nothing(
        emulator: RunningEmulator, storage: SqliteStorage, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    stranger = new_ticket(emulator, subject="Чужая заявка")  # exists in SimpleOne, not followed
    await follow(storage, emulator, INC, sys_id)
    watcher = make_watcher(interval=3600, poke_every=0.01)
    task = await running(watcher)
    before = await watched(storage)  # after the first round (which set the journal cursor)
    try:
        emulator.state.act_as_agent("comment", stranger, "Чужой комментарий")
        emulator.state.request_log.clear()
        assert not await storage.watch_poke(INC, stranger)
        assert not await storage.watch_poke(REQ, sys_id)  # a followed id under another table
        assert not await storage.watch_poke(INC, "1" * 18)
        await asyncio.sleep(0.2)  # some twenty looks
    finally:
        await stopped(task)
    assert watcher.poked_rounds == 0
    assert emulator.state.request_log == []  # SimpleOne was not even asked
    assert await storage.notices_unsent() == []
    assert await watched(storage) == before


async def test_duplicate_pokes_make_one_round_and_one_notice(
        emulator: RunningEmulator, storage: SqliteStorage, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    watcher = make_watcher()
    assert await watcher.run_once() == 0  # the cursor is set: comments from now on are news
    emulator.state.act_as_agent("comment", sys_id, "Перезагрузите компьютер")
    for _ in range(3):  # the rule fires on the ticket and on the journal entry; SimpleOne resends
        assert await storage.watch_poke(INC, sys_id)
    emulator.state.request_log.clear()
    assert await watcher.run_poked() == 1
    assert await watcher.run_poked() == 0  # nothing poked: not even a round
    assert watcher.poked_rounds == 1
    reads = len(emulator.state.request_log)
    # The same event again after it was handled: a round that finds nothing new.
    assert await storage.watch_poke(INC, sys_id)
    assert await watcher.run_poked() == 0
    assert watcher.poked_rounds == 2
    assert 0 < len(emulator.state.request_log) - reads <= reads  # the same reads (labels cached)
    assert len(await storage.notices_unsent()) == 1


class PokedDuringTheRound:
    """SQLite where, after the round's reads and before its write, an agent comments again and
    SimpleOne's event for it arrives (a second poke)."""

    def __init__(self, inner: SqliteStorage, emulator: RunningEmulator, sys_id: str) -> None:
        self.inner = inner
        self.emulator = emulator
        self.sys_id = sys_id
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def watch_update(self, seen: Sequence[WatchedTicket], notices: Sequence[Notice], **poked: Any) -> None:
        if self.armed:
            self.armed = False
            self.emulator.state.act_as_agent("comment", self.sys_id, "И ещё: какой этаж?")
            assert await self.inner.watch_poke(INC, self.sys_id)
        await self.inner.watch_update(seen, notices, **poked)


async def test_a_poke_that_arrives_during_a_round_gets_a_round_of_its_own(
        emulator: RunningEmulator, storage: SqliteStorage, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    watcher = make_watcher(PokedDuringTheRound(storage, emulator, sys_id))
    assert await watcher.run_once() == 0  # the cursor is set: comments from now on are news
    emulator.state.act_as_agent("comment", sys_id, "Какой кабинет?")
    await storage.watch_poke(INC, sys_id)
    store = watcher.storage
    assert isinstance(store, PokedDuringTheRound)
    store.armed = True
    assert await watcher.run_poked() == 1
    # The comment made after this round's read was not told by it; its poke is still there.
    assert len(await storage.watch_poked()) == 1
    assert await watcher.run_poked() == 1
    assert await storage.watch_poked() == []
    texts = [n.text for n in await storage.notices_unsent()]
    assert ["Какой кабинет?" in texts[0], "какой этаж?" in texts[1]] == [True, True]


async def test_only_the_lease_holder_looks_at_pokes(
        emulator: RunningEmulator, storage: SqliteStorage, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    lease = JobLease(OtherHolds(), "status_watch", ttl=60)
    watcher = make_watcher(interval=3600, poke_every=0.01, lease=lease)
    task = asyncio.create_task(watcher.run())
    try:
        emulator.state.act_as_agent("comment", sys_id, "Какой кабинет?")
        assert await storage.watch_poke(INC, sys_id)
        await asyncio.sleep(0.2)
    finally:
        await stopped(task)
    assert (watcher.rounds, watcher.poked_rounds) == (0, 0)
    assert await storage.notices_unsent() == []
    assert len(await storage.watch_poked()) == 1  # left for the worker that holds the lease


async def test_a_poked_round_during_an_outage_waits_for_the_normal_round(
        emulator: RunningEmulator, storage: SqliteStorage, make_watcher: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, INC, sys_id)
    watcher = make_watcher()
    await watcher.run_once()
    emulator.state.act_as_agent("comment", sys_id, "Какой кабинет?")
    await storage.watch_poke(INC, sys_id)
    emulator.faults.outage = True
    caplog.set_level(logging.WARNING, logger="engine.work.status_watch")
    assert await watcher.run_poked() == 0
    # Not tried again every second against an outage: the poke is answered, polling takes over.
    assert await storage.watch_poked() == []
    assert [r.levelno for r in caplog.records if r.name == "engine.work.status_watch"] == [logging.WARNING]
    emulator.faults.outage = False
    assert await watcher.run_once() == 1
