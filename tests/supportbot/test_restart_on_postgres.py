"""`supportbot run` and `serve` on PostgreSQL, killed (SIGKILL) and started again at once: the
new process takes over at once what its dead predecessor held (the long poll's lease, answers it
committed and never sent, tickets in its hands) instead of waiting for leases to run out."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time
from collections.abc import Awaitable
from pathlib import Path

from adapters.storage.postgres import open_postgres
from emulators.simpleone.server import RunningEmulator
from emulators.vk.server import RunningVkEmulator
from emulators.vk.users import FakeUser
from engine.ports import Binding
from tests.vk_processes import Mailbox, bot_env, start, step, stop

NUMBER = re.compile(r"INC\d{7}")


async def migrated(env: dict[str, str], cwd: Path) -> None:
    migrate = await start(["migrate"], env, cwd)
    assert await migrate.wait() == 0, await stop(migrate)


async def test_run_killed_and_started_again_answers_at_once(
        tmp_path: Path, scratch_postgres: str, vk: RunningVkEmulator, simpleone: RunningEmulator,
        mailbox: tuple[Mailbox, int]) -> None:
    env = {**bot_env(tmp_path, vk, simpleone, mailbox[1]), "SUPPORTBOT_DATABASE_URL": scratch_postgres}
    await migrated(env, tmp_path)
    proc = await start(["run"], env, tmp_path)
    try:
        await vk.poller_waiting(within=20)
        user = vk.user(51)
        assert "Главное меню" in await step(user, "say", "Начать")
        await stop(proc, signal.SIGKILL)
        proc = await start(["run"], env, tmp_path)
        began = time.monotonic()
        await user.say("Помощь")
        # Before: the dead process's lease on the long poll held the new one off for 45 s.
        reply = await user.wait_reply(timeout=15)
        assert "Я принимаю заявки" in reply.text, reply.text
        print(f"answered {time.monotonic() - began:.1f} s after the restart")
    finally:
        err = await stop(proc)
    assert "Traceback" not in err, err


USERS = 8


async def signed_in(dsn: str, simpleone: RunningEmulator, peers: list[int]) -> None:
    """The users signed in earlier (their sign-in is not what this test is about)."""
    storage = await open_postgres(dsn)
    try:
        for peer in peers:
            email = f"storm{peer}@ranepa.ru"
            caller = simpleone.state.add_user(email, "Гроза", f"Пользователь{peer}")
            await storage.put_binding(Binding(f"vk:{peer}", email, caller, f"Гроза Пользователь{peer}", time.time()))
    finally:
        await storage.close()


async def ticket_dialogue(user: FakeUser, n: int) -> str:
    """One user's ticket from the menu to «Отправить», each answer waited for through restarts;
    the users start one after another, so that the kills find them at every step."""
    await asyncio.sleep(1.5 * n)

    async def answer(send: Awaitable[object]) -> str:
        await send
        return (await user.wait_reply(timeout=60)).text

    assert "Главное меню" in await answer(user.say("Начать"))
    await answer(user.press("Создать заявку"))
    await answer(user.say("12"))
    assert "Опишите проблему" in await answer(user.press("Телефонная связь (АТС)"))
    await answer(user.say(f"Телефон в кабинете {n} не звонит наружу"))
    assert "Проверьте заявку" in await answer(user.press("Без файлов"))
    return await answer(user.press("Отправить"))


async def test_run_killed_every_second_or_two_loses_no_ticket_and_makes_none_twice(
        tmp_path: Path, scratch_postgres: str, vk: RunningVkEmulator, simpleone: RunningEmulator,
        mailbox: tuple[Mailbox, int]) -> None:
    """Before: with kills every 1–3 s, 0 of 50 tickets were made (each new process waited out
    the last one's leases and was killed before they ran out)."""
    env = {**bot_env(tmp_path, vk, simpleone, mailbox[1]), "SUPPORTBOT_DATABASE_URL": scratch_postgres}
    await migrated(env, tmp_path)
    peers = [61 + n for n in range(USERS)]
    await signed_in(scratch_postgres, simpleone, peers)
    log = (tmp_path / "run.log").open("wb")
    proc = await start(["run"], env, tmp_path, log)
    storming = True
    kills = 0

    async def storm() -> None:
        nonlocal proc, kills
        chance = random.Random(USERS)
        while storming:
            await asyncio.sleep(chance.uniform(1.0, 3.0))
            if not storming:
                break
            await stop(proc, signal.SIGKILL)
            kills += 1
            proc = await start(["run"], env, tmp_path, log)

    try:
        await vk.poller_waiting(within=20)
        killer = asyncio.create_task(storm())
        # The kills go on until every dialogue is done: each must get through while they do.
        finals = await asyncio.wait_for(
            asyncio.gather(*(ticket_dialogue(vk.user(peer), n) for n, peer in enumerate(peers))), 150)
        killed_during = kills
        storming = False
        await killer
        numbers = set()
        for peer in peers:  # the number, told once, in the answer or in a notice after it
            for _ in range(1200):
                told = [m.text for m in vk.user(peer).replies if NUMBER.search(m.text)]
                if told:
                    break
                await asyncio.sleep(0.1)
            assert len(told) == 1, (peer, [m.text for m in vk.user(peer).replies])
            numbers.add(NUMBER.search(told[0]).group(0))  # type: ignore[union-attr]
    finally:
        storming = False
        await stop(proc)
        log.close()
    assert killed_during >= 4, killed_during
    assert len(finals) == USERS
    assert len(simpleone.state.records("itsm_incident")) == USERS == len(numbers)
