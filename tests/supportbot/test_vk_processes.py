"""`supportbot run` and `supportbot serve` as real processes: the fake VK server, the SimpleOne
emulator and a real SMTP server (aiosmtpd) on loopback, the whole ticket dialogue through them."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp

from emulators.simpleone.server import RunningEmulator
from emulators.vk.server import RunningVkEmulator
from emulators.vk.users import FakeUser
from tests.vk_processes import (
    Mailbox,
    bot_env,
    start,
    start_serve,
    step,
    stop,
)


async def draft_phone_ticket(user: FakeUser, box: Mailbox, email: str, text: str) -> None:
    """Sign in and fill in a telephony ticket up to the check screen (before «Отправить»)."""
    assert "Главное меню" in await step(user, "say", "Начать")
    await step(user, "press", "Создать заявку")
    await step(user, "say", email)
    await step(user, "say", await box.code())
    await step(user, "say", "12")
    await step(user, "press", "Телефонная связь (АТС)")
    await step(user, "say", text)
    assert "Проверьте заявку" in await step(user, "press", "Без файлов")


async def dialogue(user: FakeUser, box: Mailbox, email: str) -> str:
    assert "Главное меню" in await step(user, "say", "Начать")
    assert "корпоративной почте" in await step(user, "press", "Создать заявку")
    assert f"отправил код на {email}" in await step(user, "say", email)
    assert f"вы вошли как {email}" in await step(user, "say", await box.code())
    await step(user, "say", "12")
    assert "Опишите проблему" in await step(user, "press", "Телефонная связь (АТС)")
    await step(user, "say", "Телефон в кабинете 110 не звонит наружу")
    assert "Проверьте заявку" in await step(user, "press", "Без файлов")
    return await step(user, "press", "Отправить")


async def test_run_serves_the_dialogue_over_long_poll(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    proc = await start(["run"], bot_env(tmp_path, vk, simpleone, port), tmp_path)
    try:
        await vk.poller_waiting(within=20)
        user = vk.user(31)
        assert "Заявка INC0000001 создана" in await dialogue(user, box, "lp-user@ranepa.ru")
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert len(simpleone.state.records("itsm_incident")) == 1


async def test_serve_survives_a_kill_and_handles_each_event_once(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    env = bot_env(tmp_path, vk, simpleone, smtp_port)
    args, proc = await start_serve(vk, env, tmp_path)
    try:
        vk.duplicate_deliveries(100)
        user = vk.user(32)
        assert "Главное меню" in await step(user, "say", "Начать")
        assert "корпоративной почте" in await step(user, "press", "Создать заявку")
        # The process dies without warning; VK keeps retrying what it could not deliver.
        await stop(proc, signal.SIGKILL)
        await user.say("kill-user@ranepa.ru")
        await asyncio.sleep(0.3)
        proc = await start(args, env, tmp_path)
        assert "отправил код на kill-user@ranepa.ru" in (await user.wait_reply(timeout=15)).text
        assert "вы вошли как kill-user@ranepa.ru" in await step(user, "say", await box.code())
        await step(user, "say", "12")
        await step(user, "press", "Телефонная связь (АТС)")
        await step(user, "say", "Телефон в кабинете 111 не звонит наружу")
        await step(user, "press", "Без файлов")
        assert "Заявка INC0000001 создана" in await step(user, "press", "Отправить")
        await vk.callback_idle(within=15)
        await user.assert_no_reply(within=0.5)
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err
    # Every message got exactly one answer, in order, although most were delivered twice.
    texts = [m.text for m in user.replies]
    assert len(texts) == 9, texts
    assert len(simpleone.state.records("itsm_incident")) == 1


async def test_a_kill_while_an_event_is_in_hand_creates_the_ticket_once_after_restart(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    """The submit was committed with its outbox item, SimpleOne wrote the ticket and hangs; the
    process dies before it hears back (between send and mark-done). After the restart the user
    gets the answer that was kept ("принята"), the worker finds the ticket by its marker instead
    of creating it again, and the number comes as a notice."""
    box, smtp_port = mailbox
    env = bot_env(tmp_path, vk, simpleone, smtp_port)
    args, proc = await start_serve(vk, env, tmp_path)
    try:
        user = vk.user(33)
        await draft_phone_ticket(user, box, "slow@ranepa.ru", "Телефон в кабинете 112 не звонит наружу")
        # SimpleOne takes its time; the ticket is written, then the bot dies before it hears back.
        simpleone.faults.fail_after_write(1, mode="hang", method="POST", path_prefix="/rest/v1/table/itsm_incident",
                                          seconds=5)
        await user.press("Отправить")
        for _ in range(100):
            if simpleone.state.records("itsm_incident"):
                break
            await asyncio.sleep(0.05)
        await stop(proc, signal.SIGKILL)
        assert len(simpleone.state.records("itsm_incident")) == 1
        proc = await start(args, env, tmp_path)
        reply = await user.wait_reply(timeout=20)
        assert "Заявка принята" in reply.text, reply.text
        # The item was claimed by the killed process: it is tried again when that lease ends.
        notice = await user.wait_reply(timeout=60)
        assert "зарегистрирована под номером INC0000001" in notice.text, notice.text
        await user.assert_no_reply(within=1.5)
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err
    assert len(simpleone.state.records("itsm_incident")) == 1


async def test_run_killed_and_restarted_misses_nothing_and_repeats_nothing(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    _, port = mailbox
    env = bot_env(tmp_path, vk, simpleone, port)
    proc = await start(["run"], env, tmp_path)
    try:
        await vk.poller_waiting(within=20)
        user = vk.user(34)
        assert "Главное меню" in await step(user, "say", "Начать")
        assert "Я принимаю заявки" in await step(user, "press", "Помощь")
        await stop(proc, signal.SIGKILL)
        await user.say("Главное меню")  # written while the bot is down
        proc = await start(["run"], env, tmp_path)
        assert "Главное меню" in (await user.wait_reply(timeout=20)).text
        assert "Я принимаю заявки" in await step(user, "press", "Помощь")
        await user.assert_no_reply(within=1.5)  # nothing handled before the kill came again
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err
    assert len(user.replies) == 4


async def test_a_kill_between_the_outbox_write_and_the_send_loses_nothing(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    """The submit is committed with its outbox item; the worker's first request hangs, so nothing
    was sent to SimpleOne when the process dies. After the restart the ticket is created once, the
    user gets the kept answer and then the number; a later state change is told once."""
    box, smtp_port = mailbox
    env = {**bot_env(tmp_path, vk, simpleone, smtp_port), "STATUS_POLL_SECONDS": "1"}
    args, proc = await start_serve(vk, env, tmp_path)
    try:
        user = vk.user(35)
        await draft_phone_ticket(user, box, "crash@ranepa.ru", "После переезда не работает телефон в кабинете 204")
        # The create hangs before SimpleOne handles it: the intent is stored, nothing is written.
        simpleone.faults.hang_next(1, method="POST", path_prefix="/rest/v1/table/itsm_incident", seconds=30)
        await user.press("Отправить")
        for _ in range(200):
            if any(e.status == 0 and "itsm_incident" in e.path for e in simpleone.state.request_log):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the worker never asked SimpleOne")
        await stop(proc, signal.SIGKILL)
        assert simpleone.state.records("itsm_incident") == []
        simpleone.faults.clear()
        proc = await start(args, env, tmp_path)
        reply = await user.wait_reply(timeout=20)
        assert "Заявка принята" in reply.text, reply.text
        notice = await user.wait_reply(timeout=60)
        assert "зарегистрирована под номером INC0000001" in notice.text, notice.text
        (ticket,) = simpleone.state.records("itsm_incident")
        assert "После переезда не работает телефон в кабинете 204" in ticket["description"]
        simpleone.state.set_field("itsm_incident", ticket["sys_id"], "state", "2")
        status = await user.wait_reply(timeout=20)
        assert "INC0000001" in status.text and "новый статус — «В работе»" in status.text, status.text
        await user.assert_no_reply(within=2.5)
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err
    assert len(simpleone.state.records("itsm_incident")) == 1


async def test_serve_takes_simpleones_events_and_tells_an_agents_comment_at_once(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    push = "push-secret-for-the-serve-test"
    env = bot_env(tmp_path, vk, simpleone, smtp_port) | {"SIMPLEONE_WEBHOOK_SECRET": push,
                                                         "STATUS_POLL_SECONDS": "3600"}
    args, proc = await start_serve(vk, env, tmp_path)
    url = f"http://127.0.0.1:{args[args.index('--port') + 1]}/simpleone/events"
    try:
        user = vk.user(33)
        assert "Заявка INC0000001 создана" in await dialogue(user, box, "push-user@ranepa.ru")
        (ticket,) = simpleone.state.records("itsm_incident")
        simpleone.state.act_as_agent("comment", ticket["number"], "Какой номер телефона?")
        event = {"event": "comment_added", "table": "itsm_incident", "sys_id": ticket["sys_id"]}
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=event, headers={"X-Supportbot-Secret": "not-the-secret"}) as answer:
                assert answer.status == 403
            await user.assert_no_reply(within=1.5)  # a forged event changes nothing
            start = time.monotonic()
            async with http.post(url, json=event, headers={"X-Supportbot-Secret": push}) as answer:
                assert (answer.status, await answer.json()) == (200, {"ok": True})
            told = await user.wait_reply(timeout=5)
            waited = time.monotonic() - start
            # The status round is an hour away: the event made the bot look now.
            assert "Какой номер телефона?" in told.text and waited < 3
            async with http.post(url, json=event, headers={"X-Supportbot-Secret": push}) as answer:
                assert answer.status == 200
            await user.assert_no_reply(within=1.5)  # the same event again tells nothing twice
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "SimpleOne events taken at" in err
