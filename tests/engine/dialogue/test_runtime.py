"""The engine's step: durability, ordering, dedupe, expiry, recovery, ownership."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from adapters.storage.sqlite import open_sqlite
from engine.actions import tickets as ticket_actions
from engine.actions.context import ActionContext
from engine.actions.sign_in_draft import SignInDraft
from engine.dialogue.runtime import Engine
from engine.flows.model import FlowSet
from engine.load import load_flow_set
from engine.ports import Incoming, IncomingFile, MailError, MailRecipientRefused, Session, StepCommit
from engine.replies import Reply
from engine.work.ticket_work import ticket_executors
from tests.conftest import Harness

MENU = "main.menu"


async def describe(harness: Harness, email: str, group: str, entry: str, text: str) -> None:
    """A signed-in user goes from the menu through the catalogue and types a description."""
    await harness.describe(email, text, group, entry)


async def comment_on_a_new_ticket(harness: Harness, email: str) -> None:
    """A signed-in user creates a ticket and opens «Дополнить заявку» on it, at the comment."""
    await describe(harness, email, "2", "5", "Не открывается сетевая папка бухгалтерии")
    await harness.press("Без файлов")
    await harness.press("Отправить")
    await harness.say("Главное меню")
    await harness.press("Дополнить заявку")
    await harness.say("1")


async def test_a_new_user_sees_the_menu_whatever_they_type(harness: Harness) -> None:
    reply = await harness.say("добрый день")
    assert "Главное меню" in reply.text
    assert "Создать заявку" in reply.labels()
    assert harness.state() == MENU


async def test_every_step_is_committed_before_the_reply_is_returned(harness: Harness, tmp_path: Path) -> None:
    await harness.sign_in("durable@ranepa.ru")
    await harness.say("Начать")
    await harness.press("Создать заявку")
    await harness.say("3")
    # Read the database through a second connection: the step is already there.
    other = await open_sqlite(tmp_path / "bot.db")
    try:
        stored = await other.load_session(harness.peer)
    finally:
        await other.close()
    assert stored is not None and stored.state == "create_ticket.choose_service"
    assert stored.slots["_pick"]["g"] == 2


async def test_a_restarted_engine_resumes_at_the_last_committed_step(harness: Harness, flow_set: FlowSet) -> None:
    await describe(harness, "resume@ranepa.ru", "5", "1", "Почта не синхронизируется на телефоне с утра")
    # A new engine over the same storage, as after a crash: the cache is empty.
    fresh = Engine(harness.engine.flows, harness.engine.services)
    reply = (await fresh.handle(harness.peer, Incoming()))[0]
    assert "Прикрепите скриншоты" in reply.text
    session = await harness.storage.load_session(harness.peer)
    assert session is not None and session.slots["description"].startswith("Почта не синхронизируется")


async def test_a_duplicate_event_is_handled_once(harness: Harness) -> None:
    first = await harness.engine.handle(harness.peer, Incoming(text="Помощь", event_id="vk:42"))
    again = await harness.engine.handle(harness.peer, Incoming(text="Помощь", event_id="vk:42"))
    assert len(first) == 1 and again == []
    assert await harness.storage.seen_event("vk:42")


async def test_a_duplicate_reaching_a_stale_copy_sends_no_second_letter(harness: Harness) -> None:
    """No read comes before a step: the commit refuses a handled event. A step that would act
    outside its commit (mail a sign-in code) first makes sure its event is new: here a second
    engine (another worker) still has the session at the address step when the event that
    mailed the code comes to it again."""
    other = Engine(harness.engine.flows, harness.engine.services)
    await harness.send(Incoming(text="Мои заявки", event_id="e1"))
    assert await other.sessions.load(harness.peer) is not None  # its copy: the address step
    typed = Incoming(text="dup@ranepa.ru", event_id="e2")
    assert "отправил код" in (await harness.send(typed)).text
    assert len(harness.mailer.messages) == 1
    entered = sum(other.entered.values())
    harness.now[0] += 120  # past the resend cooldown: the stale copy would mail a new code
    assert await other.handle(harness.peer, typed) == []
    assert len(harness.mailer.messages) == 1
    assert sum(other.entered.values()) == entered  # a step that never committed counts for nothing


async def test_a_refused_duplicate_leaves_no_file_behind(harness: Harness, tmp_path: Path) -> None:
    await harness.describe("files@ranepa.ru", "Не печатает принтер на третьем этаже")
    other = Engine(harness.engine.flows, harness.engine.services)
    assert await other.sessions.load(harness.peer) is not None  # its copy: before the file
    event = Incoming(text="", files=[IncomingFile("скрин.png", "image/png", b"x" * 100)], event_id="e-file")
    assert "скрин.png" in (await harness.send(event)).text
    spooled = [p for p in harness.world.spool_dir.rglob("*") if p.is_file()]
    assert len(spooled) == 1
    assert await other.handle(harness.peer, event) == []  # stored again, refused, removed
    assert [p for p in harness.world.spool_dir.rglob("*") if p.is_file()] == spooled


async def test_one_users_messages_are_handled_one_at_a_time_in_order(harness: Harness) -> None:
    await harness.sign_in("fast@ranepa.ru")
    await harness.say("Начать")
    order: list[str] = []
    original = harness.engine.handle

    async def recording(peer: str, incoming: Incoming) -> object:
        out = await original(peer, incoming)
        order.append(incoming.text)
        return out

    texts = ["Создать заявку", "2", "2", "Не могу войти в учётную запись сотрудника"]
    await asyncio.gather(*(recording(harness.peer, Incoming(text=t)) for t in texts))
    assert order == texts
    session = await harness.storage.load_session(harness.peer)
    assert session is not None and session.state == "create_ticket.attach"
    assert session.version == 5


async def test_an_idle_dialogue_keeps_its_draft_and_takes_the_message_that_woke_it(harness: Harness) -> None:
    await harness.sign_in("idle@ranepa.ru")
    await harness.say("Начать")
    await harness.press("Создать заявку")
    await harness.say("2")
    await harness.say("6")
    await harness.attach("a.png", text="Не запускается Word, пишет ошибку лицензии")
    harness.now[0] += 31 * 60
    reply = await harness.say("Готово")
    assert "давно не отвечали" in reply.text and "Проверьте заявку" in reply.text
    assert "Файлы: a.png" in reply.text and "ошибку лицензии" in reply.text
    session = await harness.storage.load_session(harness.peer)
    assert session is not None and session.slots["files"] and session.slots["user"]["email"] == "idle@ranepa.ru"


async def test_an_idle_dialogue_woken_by_what_does_not_fit_asks_to_go_on_or_start_again(harness: Harness) -> None:
    await harness.sign_in("idle2@ranepa.ru")
    await harness.say("Начать")
    await harness.press("Создать заявку")
    await harness.say("2")
    await harness.say("6")
    await harness.say("Не запускается Word, пишет ошибку лицензии")
    await harness.press("Без файлов")
    harness.now[0] += 31 * 60
    reply = await harness.say("абракадабра")
    assert "Продолжим с того места" in reply.text and reply.labels()[:2] == ["Продолжить", "Начать заново"]
    reply = await harness.press("Продолжить")
    assert "Проверьте заявку" in reply.text and "ошибку лицензии" in reply.text


async def test_a_new_users_first_message_about_a_problem_is_kept_while_they_sign_in(harness: Harness) -> None:
    reply = await harness.say("Здравствуйте, в общежитии не ловит вайфай")
    assert "корпоративной почте" in reply.text and "не понял" not in reply.text
    await harness.say("first@ranepa.ru")
    code = harness.mailer.messages[-1].body.split(": ")[1][:6]
    reply = await harness.say(code)
    assert "подходит по вашим словам" in reply.text and "Wi-Fi" in reply.labels()


async def test_a_step_that_vanished_in_a_reload_lands_in_the_menu(harness: Harness, flows: Path) -> None:
    await harness.sign_in("reload@ranepa.ru")
    await harness.say("Начать")
    await harness.press("Помощь")
    # The new flow set calls the help step main.assist: main.help is gone.
    main, bot = flows / "main.yaml", flows / "bot.yaml"
    main.write_text(main.read_text(encoding="utf-8").replace("\n  help:\n", "\n  assist:\n"), encoding="utf-8")
    bot.write_text(bot.read_text(encoding="utf-8").replace("help: {to: main.help,", "help: {to: main.assist,"),
                   encoding="utf-8")
    renamed = load_flow_set([flows]).flow_set
    assert renamed is not None and "main.help" not in renamed.states

    class Swapped:
        current = renamed

    harness.engine.flows = Swapped()
    reply = await harness.say("Создать заявку")
    assert "Бот обновился" in reply.text
    assert harness.state() == "create_ticket.choose_service"


async def test_a_failing_action_keeps_the_session_and_says_so(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    await describe(harness, "bug@ranepa.ru", "2", "1", "Не открывается личный кабинет сотрудника")
    await harness.press("Без файлов")

    async def broken(ctx: ActionContext) -> str:
        raise RuntimeError("a bug")

    info = harness.engine.registry.get("tickets.create")
    assert info is not None
    monkeypatch.setitem(harness.engine.registry._actions, "tickets.create", dataclasses.replace(info, fn=broken))
    reply = await harness.press("Отправить")
    assert "Что-то пошло не так" in reply.text
    assert "Отправить" in reply.labels()
    assert harness.state() == "create_ticket.confirm"
    monkeypatch.setitem(harness.engine.registry._actions, "tickets.create", info)
    reply = await harness.press("Отправить")
    assert "INC0000001" in reply.text


async def test_forged_or_stale_payloads_are_not_trusted(harness: Harness) -> None:
    await harness.sign_in("forger@ranepa.ru")
    await harness.say("Начать")
    reply = await harness.send(Incoming(payload='{"e":"pick","i":3}'))
    assert "кнопка уже не действует" in reply.text and harness.state() == MENU
    reply = await harness.send(Incoming(payload='{"e":"submit"}'))
    assert "кнопка уже не действует" in reply.text and harness.state() == MENU
    reply = await harness.send(Incoming(payload="{" * 5000))
    assert "кнопка уже не действует" in reply.text and harness.state() == MENU


async def test_a_ticket_of_another_caller_is_never_opened(harness: Harness) -> None:
    """Even with a forged session slot, ownership is checked against SimpleOne, by the outbox
    worker too before it writes."""
    world = harness.world
    victim = world.emulator.state.add_user("victim@ranepa.ru", "Вера", "Жертва")
    foreign = world.emulator.state.add_record("itsm_incident", {"caller": victim, "subject": "чужая"})
    await harness.sign_in("attacker@ranepa.ru")
    ctx = ActionContext(harness.peer, {"ticket": {"table": "itsm_incident", "sys_id": foreign, "number": "X"}},
                        harness.engine.flows.current, harness.engine.services,
                        SignInDraft(harness.storage, harness.peer))
    assert await ticket_actions.open_ticket(ctx) == "not_found"
    ctx.slots.update(comment="взлом")
    assert await ticket_actions.add_comment(ctx) == "queued"
    session = Session(harness.peer, "main.menu", {}, "v", harness.now[0])
    assert await harness.storage.commit_step(StepCommit(session, 0, outbox=ctx.outbox))
    await harness.outbox.drain()
    item = await harness.storage.outbox_get(ctx.outbox[0].id)
    assert item is not None and item.state == "failed" and (item.result or {}).get("event") == "not_found"
    assert world.emulator.state.journal("itsm_incident", foreign) == []
    notices = await harness.storage.notices_unsent()
    assert [n.peer for n in notices] == [harness.peer] and "добавить не удалось" in notices[0].text


async def test_the_machine_is_shared_and_never_grows_per_user(harness: Harness) -> None:
    from engine.dialogue.machine import machine_of

    machine = machine_of(harness.engine.flows.current).machine
    for n in range(50):
        await harness.say("Помощь", peer=f"test:{n}")
    assert machine.models == []
    assert len(harness.engine.locks) == 0


async def test_a_huge_message_is_answered_not_choked_on(harness: Harness) -> None:
    await harness.sign_in("huge@ranepa.ru")
    await harness.say("Начать")
    await harness.press("Создать заявку")
    await harness.say("1")
    await harness.say("1")
    reply = await harness.say("я" * 200_000)
    assert "слишком длинное: 200000 символов" in reply.text
    reply = await harness.say("Главное меню")
    assert harness.state() == MENU


async def test_a_timeout_answers_queued_and_the_number_comes_once(harness: Harness) -> None:
    from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig

    impatient = SimpleOneClient(SimpleOneConfig(harness.world.emulator.url, username="bot", password="bot-password",
                                                read_timeout=0.3))
    harness.engine.services.tickets = impatient
    harness.outbox.executors = ticket_executors(impatient, harness.world.spool, harness.engine.services.clock)
    try:
        await describe(harness, "slow@ranepa.ru", "2", "5", "Нет доступа к сетевой папке отдела кадров")
        await harness.press("Без файлов")
        harness.world.emulator.faults.hang_next(1, seconds=2, method="POST", path_prefix="/rest/v1/table/itsm_incident")
        reply = await harness.press("Отправить")
        assert "Заявка принята" in reply.text and "номер заявки придёт сообщением" in reply.text
        assert harness.state() == "create_ticket.queued"
        assert await harness.storage.notices_unsent() == []
        harness.now[0] += 60
        await harness.outbox.drain()
        notices = await harness.storage.notices_unsent()
        assert len(notices) == 1 and "под номером INC0000001" in notices[0].text
        assert len(harness.world.emulator.state.records("itsm_incident")) == 1
    finally:
        await impatient.close()


async def test_an_expired_simpleone_token_is_renewed_mid_dialogue(harness: Harness) -> None:
    await describe(harness, "token@ranepa.ru", "12", "1", "Не работает телефон в кабинете 512")
    await harness.press("Без файлов")
    harness.world.emulator.faults.expire_tokens()
    reply = await harness.press("Отправить")
    assert "INC0000001 создана" in reply.text


async def test_a_5xx_on_a_comment_keeps_the_text_and_adds_it_once(harness: Harness) -> None:
    await comment_on_a_new_ticket(harness, "comment@ranepa.ru")
    await harness.say("Папка \\\\fs01\\buh, ошибка 0x80070035")
    harness.world.emulator.faults.fail_next(1, method="PATCH")
    reply = await harness.press("Отправить")
    assert "Дополнение к заявке INC0000001 принято" in reply.text
    harness.now[0] += 60
    await harness.outbox.drain()
    notices = await harness.storage.notices_unsent()
    assert [n.text for n in notices] == ["Комментарий к заявке INC0000001 добавлен."]
    number = harness.world.emulator.state.records("itsm_incident")[0]["sys_id"]
    journal = harness.world.emulator.state.journal("itsm_incident", number)
    assert len(journal) == 1 and "0x80070035" in journal[0].text


async def test_codes_asked_for_by_someone_else_do_not_lock_an_address_out(harness: Harness) -> None:
    attacker = "test:attacker"
    await harness.say("Мои заявки", peer=attacker)
    for _ in range(6):
        await harness.say("victim@ranepa.ru", peer=attacker)
        await harness.send(Incoming(text="Другой адрес"), peer=attacker)
        harness.now[0] += 61
    assert len(harness.mailer.messages) == 5  # the attacker's own hourly cap
    await harness.say("Мои заявки")
    reply = await harness.say("victim@ranepa.ru")
    assert "отправил код на victim@ranepa.ru" in reply.text and "действует 10 мин" in reply.text
    code = harness.mailer.messages[-1].body.split(": ")[1][:6]
    reply = await harness.say(code)
    assert "вы вошли как victim@ranepa.ru" in reply.text


async def test_a_list_starts_at_its_first_page_again(harness: Harness) -> None:
    await harness.seed_tickets("many@ranepa.ru", 7)
    await harness.say("Начать")
    reply = await harness.press("Мои заявки")
    assert "1. INC" in reply.text and "Далее ▶" in reply.labels()
    reply = await harness.press("Далее ▶")
    assert "6. INC" in reply.text and "1. INC" not in reply.text
    await harness.say("Главное меню")
    reply = await harness.press("Мои заявки")
    assert "1. INC" in reply.text
    # Back from a ticket's details returns to the same page.
    await harness.press("Далее ▶")
    await harness.say("7")
    reply = await harness.press("К списку")
    assert "7. INC" in reply.text and "1. INC" not in reply.text


async def test_an_unclear_create_failure_never_makes_a_second_ticket(harness: Harness) -> None:
    state = harness.world.emulator.state
    await describe(harness, "unclear@ranepa.ru", "2", "8", "Не работает телефон, гудка нет с понедельника")
    await harness.press("Без файлов")
    # The create is performed, then answered 500: the look-up after it finds the ticket.
    harness.world.emulator.faults.fail_after_write(1, method="POST")
    reply = await harness.press("Отправить")
    assert "Заявка INC0000001 создана" in reply.text
    assert len(state.records("itsm_incident")) == 1
    harness.now[0] += 3600
    await harness.outbox.drain()
    assert len(state.records("itsm_incident")) == 1
    assert await harness.storage.notices_unsent() == []  # told in the answer, not again


async def test_a_failed_write_answers_plainly_and_saves_nothing(harness: Harness) -> None:
    await harness.say("Начать")

    async def broken(step: object) -> bool:
        raise OSError("database or disk is full")

    harness.storage.commit_step = broken  # type: ignore[method-assign]
    reply = await harness.press("Помощь")
    assert "Что-то пошло не так" in reply.text and reply.labels() == ["Главное меню"]


async def test_unicode_digits_in_a_list_are_not_numbers(harness: Harness) -> None:
    """Found by hypothesis: '²' passes str.isdigit but not int()."""
    await harness.sign_in("digits@ranepa.ru")
    await harness.say("Начать")
    await harness.press("Создать заявку")
    for typed in ("²", "١", "٣٣"):
        reply = await harness.say(typed)  # words to search the catalogue with, not item numbers
        assert "Не нашёл подходящую услугу" in reply.text and "Пункта" not in reply.text


async def test_a_long_list_says_that_it_was_cut(harness: Harness) -> None:
    limit = harness.engine.flows.current.tickets.list_limit
    await harness.seed_tickets("busy@ranepa.ru", limit + 1)
    await harness.say("Начать")
    reply = await harness.press("Мои заявки")
    assert f"Показаны последние {limit} заявок, есть и более ранние" in reply.text


class DiesBeforeCommit:
    """The process dies after a step's actions ran and before its commit: the session stays as
    it was, and the channel hands the same event over again (after a restart, or to another
    worker). In one process: the next commit fails, the engine forgets its cached session."""

    def __init__(self, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = harness.storage.commit_step
        self.armed = False
        monkeypatch.setattr(harness.storage, "commit_step", self.commit_step)

    async def commit_step(self, step: StepCommit) -> bool:
        if self.armed:
            self.armed = False
            raise ConnectionError("the process died here")
        return await self.real(step)


async def one_letter_signs_in(harness: Harness, reply: Reply) -> None:
    """The code step answered as sent, one letter is out, and its code signs the user in."""
    assert "отправил код на redo@ranepa.ru" in reply.text
    assert len(harness.mailer.messages) == 1
    code = harness.mailer.messages[-1].body.split(": ")[1][:6]
    assert "вы вошли как redo@ranepa.ru" in (await harness.say(code)).text


async def test_a_code_step_whose_commit_died_after_the_letter_went_mails_again_and_only_the_new_code_works(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code is committed with the step: the letter of a step that never committed carries a
    code nobody stored (the trade for having no half-done steps to recognise)."""
    crash = DiesBeforeCommit(harness, monkeypatch)
    await harness.say("Мои заявки")
    crash.armed = True
    event = Incoming(text="redo@ranepa.ru", event_id="ev-email")
    await harness.send(event)
    assert len(harness.mailer.messages) == 1
    assert await harness.storage.get_code(harness.peer) is None
    stats = await harness.storage.code_send_stats(harness.peer, "redo@ranepa.ru", 0.0)
    assert stats.by_peer == 1  # the send was claimed before the letter left: it counts
    first = harness.mailer.messages[-1].body.split(": ")[1][:6]
    # Handled again: a second letter (no cooldown: the first code was never committed), counted too.
    reply = await harness.send(event)
    assert "отправил код на redo@ranepa.ru" in reply.text and len(harness.mailer.messages) == 2
    second = harness.mailer.messages[-1].body.split(": ")[1][:6]
    if first != second:
        assert "вы вошли" not in (await harness.say(first)).text
    assert "вы вошли как redo@ranepa.ru" in (await harness.say(second)).text


async def test_a_code_step_that_died_before_its_letter_went_sends_one_when_redone(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    await harness.say("Мои заявки")
    real_send = harness.mailer.send

    async def dies(message: Any) -> None:
        raise asyncio.CancelledError  # the process stopped while talking to the mail server

    monkeypatch.setattr(harness.mailer, "send", dies)
    event = Incoming(text="redo@ranepa.ru", event_id="ev-email")
    with pytest.raises(asyncio.CancelledError):
        await harness.send(event)  # nothing committed, nothing mailed
    monkeypatch.setattr(harness.mailer, "send", real_send)
    # Not a resend within the cooldown: this step's own letter goes now.
    await one_letter_signs_in(harness, await harness.send(event))


async def test_a_sign_in_whose_commit_died_signs_in_when_redone_and_the_code_is_then_spent(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    crash = DiesBeforeCommit(harness, monkeypatch)
    await harness.say("Мои заявки")
    await harness.say("redo@ranepa.ru")
    code = harness.mailer.messages[-1].body.split(": ")[1][:6]
    crash.armed = True
    event = Incoming(text=code, event_id="ev-code")
    await harness.send(event)
    # The step that used the code never committed: the code and the peer's binding are as before.
    assert await harness.storage.get_code(harness.peer) is not None
    assert await harness.storage.get_binding(harness.peer) is None
    reply = await harness.send(event)
    assert "вы вошли как redo@ranepa.ru" in reply.text
    # Spent by the step that committed, in the same transaction as the binding it made.
    assert await harness.storage.get_code(harness.peer) is None
    binding = await harness.storage.get_binding(harness.peer)
    assert binding is not None and binding.email == "redo@ranepa.ru"




async def test_a_hint_that_helped_ends_the_dialogue_and_is_counted(harness: Harness) -> None:
    await harness.sign_in("helped@ranepa.ru")
    await harness.say("Начать")
    await harness.press("Создать заявку")
    await harness.say("1")
    reply = await harness.press("Учётная запись студента")
    assert "Помогло" in reply.labels()
    reply = await harness.press("Помогло")
    assert "рад, что получилось" in reply.text
    assert [(c.name, c.count) for c in await harness.storage.counts()] == [("hint_helped", 1)]
    assert len(harness.world.emulator.state.records("itsm_incident")) == 0


async def test_the_subject_is_the_service_and_the_first_words(harness: Harness) -> None:
    long = "Не запускается Word на ноутбуке в аудитории 305, пишет ошибку лицензии, перезагрузка не помогла"
    await describe(harness, "subject@ranepa.ru", "2", "6", long)
    await harness.press("Без файлов")
    await harness.press("Отправить")
    [record] = harness.world.emulator.state.records("itsm_incident")
    assert record["subject"] == "Программное обеспечение (ПО): Не запускается Word на ноутбуке в…"
    assert long in record["description"]


async def test_control_characters_never_reach_the_ticket_system(harness: Harness) -> None:
    """The comment path kept a NUL; now one sanitiser at the SimpleOne port takes every one out."""
    await comment_on_a_new_ticket(harness, "nul@ranepa.ru")
    await harness.say("Инв. номер\x00 000123\x1b[31m, кабинет\u0085 214\r\nвторая строка")
    await harness.press("Отправить")
    await harness.outbox.drain()
    [record] = harness.world.emulator.state.records("itsm_incident")
    [entry] = harness.world.emulator.state.journal("itsm_incident", record["sys_id"])
    assert "Инв. номер 000123[31m, кабинет 214\nвторая строка" in entry.text
    assert not any(ord(c) < 32 and c not in "\n\t" for c in entry.text + record["description"])


async def test_a_mail_server_that_is_down_costs_the_user_nothing(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    real_send = harness.mailer.send

    async def down(message: Any) -> None:
        raise MailError("SMTP 127.0.0.1:25: ConnectionRefusedError")

    monkeypatch.setattr(harness.mailer, "send", down)
    await harness.say("Мои заявки")
    for _ in range(7):  # more than the hourly cap, and within the resend cooldown
        reply = await harness.say("down@ranepa.ru")
        assert "почтовый сервер сейчас недоступен" in reply.text and "Эта попытка не считается" in reply.text
    assert (await harness.storage.code_send_stats(harness.peer, "down@ranepa.ru", 0.0)).by_peer == 0
    monkeypatch.setattr(harness.mailer, "send", real_send)
    reply = await harness.say("down@ranepa.ru")
    assert "отправил код на down@ranepa.ru" in reply.text and len(harness.mailer.messages) == 1


async def test_a_refused_recipient_reads_as_a_letter_sent(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Else the answer would tell anyone whether a mailbox exists."""
    async def no_such_mailbox(message: Any) -> None:
        raise MailRecipientRefused("SMTP 127.0.0.1:25 refused ghost@ranepa.ru")

    await harness.say("Мои заявки")
    known = await harness.say("known@ranepa.ru")
    monkeypatch.setattr(harness.mailer, "send", no_such_mailbox)
    await harness.say("Мои заявки", peer="test:other")
    ghost = await harness.say("ghost@ranepa.ru", peer="test:other")
    assert ghost.text.replace("ghost", "known") == known.text and ghost.labels() == known.labels()


async def test_strangers_asking_for_codes_cannot_lock_out_the_addresses_owner(harness: Harness) -> None:
    await harness.sign_in("owner@ranepa.ru")
    await harness.say("Начать")
    await harness.press("Выйти")
    sent = len(harness.mailer.messages)
    for n in range(4):  # strangers use up the address's shared quota (2 × 5 letters)
        stranger = f"test:stranger{n}"
        await harness.say("Мои заявки", peer=stranger)
        await harness.say("owner@ranepa.ru", peer=stranger)
        for _ in range(2):
            harness.now[0] += 61
            await harness.send(Incoming(text="Отправить код ещё раз"), peer=stranger)
    assert len(harness.mailer.messages) - sent == 10
    await harness.say("Мои заявки", peer="test:stranger9")
    reply = await harness.say("owner@ranepa.ru", peer="test:stranger9")
    assert "слишком часто" in reply.text
    await harness.say("Мои заявки")
    reply = await harness.say("owner@ranepa.ru")
    assert "отправил код на owner@ranepa.ru" in reply.text


async def test_text_that_does_not_fit_is_refused_with_its_length_never_cut(harness: Harness) -> None:
    """A 9 000-character comment used to be answered 'Текст записан' and reach the journal cut."""
    await comment_on_a_new_ticket(harness, "long@ranepa.ru")
    reply = await harness.say("я" * 9000)
    assert "не записан" in reply.text and "9000 символов" in reply.text and "до 4000" in reply.text
    first = "Первая часть: " + "б" * 3000
    assert "Текст записан" in (await harness.say(first)).text
    reply = await harness.say("в" * 1500)  # together with the first part it would not fit
    assert "не записан" in reply.text and "4515 символов" in reply.text
    await harness.press("Отправить")
    await harness.outbox.drain()
    [record] = harness.world.emulator.state.records("itsm_incident")
    [entry] = harness.world.emulator.state.journal("itsm_incident", record["sys_id"])
    assert first in entry.text and "ввв" not in entry.text


async def test_a_caption_that_would_overflow_the_description_is_refused_and_the_file_kept(harness: Harness) -> None:
    await describe(harness, "full@ranepa.ru", "2", "6", "Описание " + "д" * 3580)
    reply = await harness.attach("shot.png", text="и ещё подпись к скриншоту")
    assert "получен" in reply.text and "не добавлен" in reply.text and "3615 символов" in reply.text
    reply = await harness.press("Готово")
    assert "Файлы: shot.png" in reply.text and "подпись" not in reply.text
