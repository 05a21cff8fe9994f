"""Agents' comments relayed by the ticket watcher: against the SimpleOne emulator over HTTP (the
journal kept as an instance keeps it), the real client, SQLite, and PostgreSQL with two workers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from adapters.simpleone.client import SimpleOneClient
from adapters.storage.postgres import open_postgres
from adapters.storage.sqlite import SqliteStorage
from emulators.simpleone.server import RunningEmulator
from emulators.simpleone.state import ManualClock
from engine.ports import Binding, Notice, WatchedTicket
from engine.work.status_watch import JOURNAL_LIMIT, MAX_COMMENTS
from tests.engine.work.watching import INC, PEER, CrashingStorage, new_ticket, record, watched
from tests.postgres_db import scratch_database


async def follow(storage: Any, emulator: RunningEmulator, sys_id: str, *, cursor: str | None = "",
                 peer: str = PEER) -> None:
    """Follow a ticket as the bot does: created by it (cursor "": everything on it is news), or
    followed from a list (None: what is on it already is not)."""
    r = record(emulator, INC, sys_id)
    await storage.watch_add([WatchedTicket(INC, sys_id, r["number"], peer, r["state"], r["sys_updated_at"],
                                           comment_after=cursor)])


def agent(emulator: RunningEmulator, clock: ManualClock, sys_id: str, action: str, value: str) -> None:
    clock.advance(30)
    emulator.state.act_as_agent(action, sys_id, value)


def bot_comment(emulator: RunningEmulator, clock: ManualClock, sys_id: str, text: str) -> None:
    """A comment the bot wrote for the user (its own account)."""
    clock.advance(30)
    emulator.state.act_as_agent("comment", sys_id, text, author="bot")


async def unsent(storage: Any) -> list[Notice]:
    return list(await storage.notices_unsent(1000))


def texts(notices: Sequence[Notice]) -> list[str]:
    return [n.text for n in notices]


async def test_an_agents_comment_is_told_once_with_buttons_naming_its_ticket(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator, subject="Не работает Wi-Fi")
    await follow(storage, emulator, sys_id)
    watcher = make_watcher()
    assert await watcher.run_once() == 0
    agent(emulator, clock, sys_id, "comment", "Уточните номер комнаты, пожалуйста.")
    assert await watcher.run_once() == 1
    number = record(emulator, INC, sys_id)["number"]
    [notice] = await unsent(storage)
    assert notice.peer == PEER
    assert notice.text == f"Сообщение по заявке {number} «Не работает Wi-Fi»:\nУточните номер комнаты, пожалуйста."
    assert [[(b.label, b.event, b.number) for b in row] for row in notice.buttons] == [
        [("Ответить", "notice_answer", number), ("Открыть заявку", "by_number", number)]]
    assert notice.id.startswith(f"comment:{INC}:{sys_id}:")
    # Told: the ticket is asked; another round tells nothing again.
    row = (await watched(storage))[(INC, sys_id)]
    assert row.asked_at == clock.now.timestamp() and row.comment_after
    assert await watcher.run_once() == 0
    assert len(await unsent(storage)) == 1


async def test_a_work_note_never_reaches_the_user_nor_do_the_bots_own_comments(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, sys_id)
    watcher = make_watcher()
    agent(emulator, clock, sys_id, "note", "ВНУТРЕННЕЕ: пользователь в чёрном списке")
    bot_comment(emulator, clock, sys_id, "Кабинет 305\n\n(добавлено через бот ВКонтакте)")
    assert await watcher.run_once() == 0
    agent(emulator, clock, sys_id, "note", "ВНУТРЕННЕЕ: ещё одна заметка")
    agent(emulator, clock, sys_id, "comment", "Спасибо, мастер придёт в 15:00.")
    assert await watcher.run_once() == 1
    assert texts(await unsent(storage)) == [
        f"Сообщение по заявке {record(emulator, INC, sys_id)['number']} «Не печатает принтер»:\n"
        "Спасибо, мастер придёт в 15:00."]
    assert not any("ВНУТРЕННЕЕ" in t for t in texts(await unsent(storage)))


async def test_a_ticket_followed_from_a_list_tells_only_what_comes_after(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    agent(emulator, clock, sys_id, "comment", "Старое сообщение, уже прочитанное на портале")
    await follow(storage, emulator, sys_id, cursor=None)
    watcher = make_watcher()
    assert await watcher.run_once() == 0
    assert (await watched(storage))[(INC, sys_id)].comment_after  # the cursor is set at first sight
    agent(emulator, clock, sys_id, "comment", "Новое сообщение")
    assert await watcher.run_once() == 1
    assert texts(await unsent(storage))[0].endswith("Новое сообщение")


async def test_a_crash_between_reading_and_telling_tells_each_comment_once(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, sys_id)
    agent(emulator, clock, sys_id, "comment", "Первое")
    crashing = make_watcher(CrashingStorage(storage, crashes=2))
    for _ in range(2):
        try:
            await crashing.run_once()
        except RuntimeError:
            pass  # killed before the commit: neither the cursor nor the notice were written
    assert await unsent(storage) == []
    agent(emulator, clock, sys_id, "comment", "Второе")
    assert await crashing.run_once() == 2
    assert await make_watcher().run_once() == 0
    assert [t.rsplit("\n", 1)[1] for t in texts(await unsent(storage))] == ["Первое", "Второе"]


async def test_many_new_comments_are_told_in_order_the_oldest_counted(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any,
        flow_set: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, sys_id)
    for n in range(MAX_COMMENTS + 3):
        agent(emulator, clock, sys_id, "comment", f"Сообщение {n}")
    assert await make_watcher().run_once() == MAX_COMMENTS + 1  # and the one that counts the rest
    told = await unsent(storage)
    assert told[0].text.endswith("ещё 3 сообщения от специалиста — они в заявке.")
    assert [t.rsplit(" ", 1)[1] for t in texts(told[1:])] == [str(n) for n in range(3, MAX_COMMENTS + 3)]


async def test_information_needed_carries_the_question_and_resolved_asks_to_confirm(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, sys_id)
    watcher = make_watcher()
    assert await watcher.run_once() == 0
    agent(emulator, clock, sys_id, "comment", "Пришлите скриншот ошибки.")
    agent(emulator, clock, sys_id, "state", "3")
    assert await watcher.run_once() == 1  # one notice: the state and the question in it
    [waiting] = await unsent(storage)
    assert "специалисту нужна информация от вас" in waiting.text and "Пришлите скриншот ошибки." in waiting.text
    assert [b.label for row in waiting.buttons for b in row] == ["Ответить", "Открыть заявку"]
    await storage.notices_sent([waiting.id])

    # The user answered (the bot's comment is the last word): resolved quotes no stale question.
    bot_comment(emulator, clock, sys_id, "Скриншот приложил\n\n(добавлено через бот ВКонтакте)")
    agent(emulator, clock, sys_id, "state", "7")
    assert await watcher.run_once() == 1
    [resolved] = await unsent(storage)
    assert resolved.text.endswith("выполнена.\nПроблема решена?")
    assert [b.event for row in resolved.buttons for b in row] == ["notice_solved", "notice_not_solved"]


async def test_a_signed_out_chat_hears_nothing_and_is_not_told_later(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, sys_id, peer="vk:300")  # nobody signed in there
    agent(emulator, clock, sys_id, "comment", "Вопрос, который некому прочитать")
    watcher = make_watcher()
    assert await watcher.run_once() == 0
    await storage.put_binding(Binding("vk:300", "u@ranepa.ru", "caller-1", "U", 0.0))
    assert await watcher.run_once() == 0  # seen while signed out: it stays in the ticket
    row = (await watched(storage))[(INC, sys_id)]
    assert row.asked_at == 0.0


async def test_a_quiet_ticket_does_not_hold_the_journal_query_back(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    quiet, busy = new_ticket(emulator), new_ticket(emulator)
    await follow(storage, emulator, quiet)
    await follow(storage, emulator, busy)
    watcher = make_watcher()
    agent(emulator, clock, busy, "comment", "Первое")
    assert await watcher.run_once() == 1
    agent(emulator, clock, busy, "comment", "Второе")
    emulator.state.request_log.clear()
    assert await watcher.run_once() == 1
    rows = await watched(storage)
    # Both cursors moved to the newest entry read: the next query starts there for both.
    assert rows[(INC, quiet)].comment_after == rows[(INC, busy)].comment_after
    feed = [e for e in emulator.state.request_log if e.path.endswith("/sys_activity_feed_item")]
    assert len(feed) == 1


async def test_two_workers_on_postgresql_tell_each_comment_once(
        emulator: RunningEmulator, client: SimpleOneClient, clock: ManualClock, flow_set: Any) -> None:
    from engine.flows.source import StaticFlows
    from engine.work.status_watch import StatusWatcher

    async with scratch_database() as dsn:
        first, second = await open_postgres(dsn), await open_postgres(dsn)
        try:
            await first.put_binding(Binding(PEER, "u@ranepa.ru", "caller-1", "U", 0.0))
            tickets = [new_ticket(emulator, subject=f"Заявка {n}") for n in range(5)]
            for sys_id in tickets:
                await follow(first, emulator, sys_id)
            for n, sys_id in enumerate(tickets):
                agent(emulator, clock, sys_id, "comment", f"Вопрос {n}")
            watchers = [StatusWatcher(s, client, StaticFlows(flow_set), clock=lambda: clock.now.timestamp(), page=2)
                        for s in (first, second)]
            # Both poll at once (as if the lease had been lost in between): still once each.
            await asyncio.gather(*(w.run_once() for w in watchers), *(w.run_once() for w in watchers))
            told = await first.notices_unsent(1000)
            assert sorted(t.text.rsplit("\n", 1)[1] for t in told) == [f"Вопрос {n}" for n in range(5)]
            assert len({n.id for n in told}) == 5
        finally:
            await first.close()
            await second.close()


async def test_a_long_history_of_a_ticket_followed_later_is_never_news(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    for n in range(JOURNAL_LIMIT + 5):  # more than one journal page
        emulator.state.act_as_agent("comment", sys_id, f"Давнее сообщение {n}")
    await follow(storage, emulator, sys_id, cursor=None)
    watcher = make_watcher()
    assert await watcher.run_once() == 0
    assert await watcher.run_once() == 0
    agent(emulator, clock, sys_id, "comment", "Новое")
    assert await watcher.run_once() == 1
    assert texts(await unsent(storage))[0].endswith("Новое")


async def test_the_users_own_state_change_is_not_told_back_even_before_its_record_catches_up(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, sys_id)
    watcher = make_watcher()
    agent(emulator, clock, sys_id, "state", "7")
    assert await watcher.run_once() == 1  # the agent's: told
    await storage.notices_sent([n.id for n in await unsent(storage)])
    # The user's confirm (the bot's account writes state and comment in one PATCH), seen by the
    # watcher before the outbox has recorded the ticket as the move left it.
    clock.advance(30)
    emulator.state.update(INC, sys_id, {"state": "10", "additional_comments": "Пользователь подтвердил"},
                          author="bot")
    assert await watcher.run_once() == 0
    assert (await watched(storage))[(INC, sys_id)].state == "10"
    agent(emulator, clock, sys_id, "state", "2")  # an agent reopens it: told
    assert await watcher.run_once() == 1


async def test_a_backlog_on_a_followed_ticket_is_not_skipped_when_a_new_ticket_reads_further(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    """Found by review: a full page for the known tickets and a later mark for a new one must not
    move the known tickets' cursors past what their own query read."""
    a = new_ticket(emulator, subject="A")
    await follow(storage, emulator, a)
    watcher = make_watcher()
    agent(emulator, clock, a, "comment", "первое")
    assert await watcher.run_once() == 1
    for n in range(JOURNAL_LIMIT + 10):  # a backlog longer than one page (the bot was down)
        emulator.state.act_as_agent("comment", a, f"A{n}")
    b = new_ticket(emulator, subject="B")
    await follow(storage, emulator, b)  # created by the bot: "" (everything is news)
    agent(emulator, clock, b, "comment", "B0")
    for _ in range(3):
        await watcher.run_once()
    told = texts(await unsent(storage))
    assert any(t.endswith("\nA209") for t in told), told[-4:]  # the newest of the backlog is told
    assert any(t.endswith("\nB0") for t in told)


async def test_an_agent_whose_login_is_the_users_name_before_at_is_still_an_agent(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, sys_id)  # PEER is signed in as 100@ranepa.ru
    clock.advance(30)
    emulator.state.act_as_agent("comment", sys_id, "Перезагрузите роутер", author="100")
    assert await make_watcher().run_once() == 1


async def test_the_users_own_comment_written_in_the_portal_is_not_an_agents_message(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, sys_id)  # PEER is signed in as 100@ranepa.ru
    clock.advance(30)
    emulator.state.act_as_agent("comment", sys_id, "Дополняю: ошибка 0x80070035", author="100@ranepa.ru")
    agent(emulator, clock, sys_id, "comment", "Спасибо, смотрим.")
    assert await make_watcher().run_once() == 1
    assert texts(await unsent(storage))[0].endswith("Спасибо, смотрим.")
    assert (await watched(storage))[(INC, sys_id)].asked_at > 0


async def test_an_agents_comment_of_a_picture_alone_says_there_is_one_to_look_at(
        emulator: RunningEmulator, storage: SqliteStorage, clock: ManualClock, make_watcher: Any) -> None:
    sys_id = new_ticket(emulator)
    await follow(storage, emulator, sys_id)
    agent(emulator, clock, sys_id, "comment", '<p><img src="/sys_attachment/42/screenshot.png"></p>')
    assert await make_watcher().run_once() == 1
    (told,) = await unsent(storage)
    assert told.text.endswith("Специалист прислал изображение — его можно посмотреть в заявке на портале поддержки.")
    assert "<img" not in told.text and "screenshot.png" not in told.text
