"""Two-way support end to end: `supportbot serve` as a real process, the fake VK server, the
SimpleOne emulator playing the agent, a real SMTP server; the user presses the buttons under the
bot's messages (VK's inline keyboards) as a phone would."""

from __future__ import annotations

import signal
from pathlib import Path

from emulators.simpleone.server import RunningEmulator
from emulators.vk.server import RunningVkEmulator
from emulators.vk.users import FakeUser
from tests.supportbot.test_vk_processes import draft_phone_ticket
from tests.vk_processes import Mailbox, bot_env, start, start_serve, step, stop

INC = "itsm_incident"


def journal(simpleone: RunningEmulator, sys_id: str) -> list[str]:
    """The ticket's public comments as the instance keeps them (its journal records)."""
    return [item["content"] for item in simpleone.state.feed(INC, sys_id)
            if item["type_name"] == f"additional_comments.{INC}"]


async def created(user: FakeUser, box: Mailbox, simpleone: RunningEmulator, email: str) -> str:
    await draft_phone_ticket(user, box, email, "Не звонит телефон в кабинете 204, гудков нет")
    assert "Заявка INC0000001 создана" in await step(user, "press", "Отправить")
    (ticket,) = simpleone.state.records(INC)
    return ticket["sys_id"]


async def test_an_agents_question_reaches_vk_the_user_answers_then_confirms_and_rates(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    env = {**bot_env(tmp_path, vk, simpleone, smtp_port), "STATUS_POLL_SECONDS": "1", "COMMENT_POLL_SECONDS": "1"}
    args, proc = await start_serve(vk, env, tmp_path)
    try:
        user = vk.user(41)
        sys_id = await created(user, box, simpleone, "two-way@ranepa.ru")
        simpleone.state.act_as_agent("note", "INC0000001", "Внутреннее: проверить порт на коммутаторе")
        simpleone.state.act_as_agent("comment", "INC0000001", "Уточните, пожалуйста, внутренний номер телефона.")
        told = await user.wait_reply(timeout=20)
        assert told.text.startswith("Сообщение по заявке INC0000001"), told.text
        assert "внутренний номер телефона" in told.text and "Внутреннее" not in told.text
        assert told.keyboard is not None and told.keyboard.get("inline") is True
        assert "Ваш ответ по заявке INC0000001" in await step(user, "press", "Ответить")
        await step(user, "say", "Номер 2-14-05")
        assert "Готово: заявка INC0000001 дополнена" in await step(user, "press", "Отправить")
        assert any("Номер 2-14-05" in c for c in journal(simpleone, sys_id))
        # The bot's own comment is not told back, and the work note never was.
        await user.assert_no_reply(within=2.5)

        # A kill and a restart tell nothing twice.
        await stop(proc, signal.SIGKILL)
        proc = await start(args, env, tmp_path)
        await user.assert_no_reply(within=3)

        simpleone.state.act_as_agent("comment", "INC0000001", "Заменили линию, проверьте связь.")
        simpleone.state.act_as_agent("state", "INC0000001", "7")
        resolved = await user.wait_reply(timeout=20)
        assert "выполнена" in resolved.text and "Заменили линию" in resolved.text, resolved.text
        assert "Проблема решена?" in resolved.text
        assert "Оцените, пожалуйста" in await step(user, "press", "Да, решена")
        assert "Спасибо за оценку" in await step(user, "press", "5")
        assert "Оценка сохранена" in await step(user, "press", "Без комментария")
        await user.assert_no_reply(within=2.5)  # the close the user made is not told back
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    (ticket,) = simpleone.state.records(INC)
    assert ticket["state"] == "10"
    comments = journal(simpleone, sys_id)
    assert any("Проблема решена, спасибо" in c for c in comments)
    assert any("Оценка работы поддержки: 5 из 5" in c for c in comments)
    # Each agent comment was told once: two messages from the bot unasked.
    unasked = [m.text for m in user.replies if m.text.startswith(("Сообщение по заявке", "Заявка INC0000001 «"))]
    assert len(unasked) == 2, unasked


async def test_a_message_typed_after_the_question_is_offered_as_the_answer(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    env = {**bot_env(tmp_path, vk, simpleone, smtp_port), "COMMENT_POLL_SECONDS": "1"}
    _, proc = await start_serve(vk, env, tmp_path)
    try:
        user = vk.user(42)
        sys_id = await created(user, box, simpleone, "typed@ranepa.ru")
        simpleone.state.act_as_agent("comment", "INC0000001", "В каком корпусе кабинет 204?")
        assert "В каком корпусе" in (await user.wait_reply(timeout=20)).text
        offered = await step(user, "say", "Корпус 1, третий этаж")
        assert "Добавить это к заявке INC0000001 как ответ специалисту?" in offered, offered
        assert "заявка INC0000001 дополнена" in await step(user, "press", "Да, добавить к заявке")
        assert any("Корпус 1, третий этаж" in c for c in journal(simpleone, sys_id))
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err
