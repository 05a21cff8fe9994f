"""What a dead worker left behind is taken up by a living one (supportbot.vk_app.recover_orphans):
answers it committed but never sent, callbacks it acknowledged but never handled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.vk.delivery import resend_unsent
from emulators.vk.server import RunningVkEmulator
from engine.flows.model import FlowSet
from engine.ports import Session, StepCommit
from engine.replies import Reply, dump_replies
from supportbot.conversation_world import EmulatorWorld
from supportbot.vk_app import recover_orphans
from tests.adapters.vk.test_vk_channel import Channel, make_channel
from tests.adapters.vk.test_vk_channel import vk as vk  # this group's fake VK, not conftest's
from tests.postgres_db import kill_presence


@pytest.fixture
async def channel(vk: RunningVkEmulator, world: EmulatorWorld, flow_set: FlowSet,
                  scratch_postgres: str) -> AsyncIterator[Channel]:
    from adapters.storage.postgres import open_postgres

    dsn = scratch_postgres
    ch = await make_channel(vk, world, flow_set, await open_postgres(dsn))
    try:
        yield ch
    finally:
        await ch.close()


async def keep_unsent(channel: Channel, peer_id: int, event_id: str, text: str) -> None:
    """A step committed with its answer by a worker that died before sending it."""
    step = StepCommit(Session(f"vk:{peer_id}", "main.menu", {}, "v", 0.0), 0, event_id=event_id,
                      replies=dump_replies([Reply(text)]))
    assert await channel.storage.commit_step(step)


async def run_for(task: Any, seconds: float) -> None:
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_living_worker_sends_what_a_dead_one_committed_and_handles_what_it_acknowledged(
        channel: Channel, vk: RunningVkEmulator) -> None:
    captured: list[dict[str, Any]] = []
    vk.state.sink = captured.append  # the event reaches "the dead worker" only
    asker = vk.user(1001)
    await asker.say("Начать")
    [update] = captured
    assert await channel.storage.inbox_add(update["event_id"], "vk:1001", json.dumps(update))
    await keep_unsent(channel, 1002, "ev-lost", "Ответ, который не ушёл")
    waiter = vk.user(1002)

    sweep = asyncio.create_task(recover_orphans(channel.storage, channel.bot, channel.bot.delivery,  # type: ignore[arg-type]
                                                every=0.05, older_than=0.0))
    try:
        assert (await waiter.wait_reply()).text == "Ответ, который не ушёл"
        assert "Главное меню" in (await asker.wait_reply()).text
    finally:
        await run_for(sweep, 0.2)
    assert await channel.storage.inbox_pending() == []
    await channel.bot.delivery.flush()  # type: ignore[union-attr]
    assert await channel.storage.replies_unsent() == []
    assert len(waiter.replies) == 1 and len(asker.replies) == 1  # each once


async def test_what_a_killed_worker_committed_goes_out_at_once_and_a_live_one_s_stays_its_own(
        channel: Channel, vk: RunningVkEmulator, scratch_postgres: str) -> None:
    """Before: a restarted worker waited ~20 s before it sent what its predecessor had left, and
    never, if it was killed again meanwhile."""
    from adapters.storage.postgres import open_postgres

    killed, live = await open_postgres(scratch_postgres), await open_postgres(scratch_postgres)
    try:
        for storage, peer, text in ((killed, 1003, "Оставлено убитым процессом"),
                                    (live, 1004, "Ещё в руках живого процесса")):
            step = StepCommit(Session(f"vk:{peer}", "main.menu", {}, "v", 0.0), 0, event_id=f"ev-{peer}",
                              replies=dump_replies([Reply(text)]))
            assert await storage.commit_step(step)
        await kill_presence(killed, scratch_postgres)  # kill -9: its connections drop, nothing else happens
        sent = await resend_unsent(channel.storage, channel.bot.sender, channel.bot.delivery,  # type: ignore[arg-type]
                                   gone_only=True)
        assert sent == 1
        assert (await vk.user(1003).wait_reply()).text == "Оставлено убитым процессом"
        await vk.user(1004).assert_no_reply(within=0.1)
        await channel.bot.delivery.flush()  # type: ignore[union-attr]
        assert [u.event_id for u in await channel.storage.replies_unsent()] == ["ev-1004"]
    finally:
        await live.close()
        await killed.close()


async def test_the_sweep_takes_up_what_a_killed_worker_left_without_waiting_for_its_age(
        channel: Channel, vk: RunningVkEmulator, scratch_postgres: str) -> None:
    """Before: a callback a dead worker had acknowledged waited a minute for the sweep."""
    from adapters.storage.postgres import open_postgres

    captured: list[dict[str, Any]] = []
    vk.state.sink = captured.append
    asker = vk.user(1006)
    await asker.say("Начать")
    [update] = captured
    killed = await open_postgres(scratch_postgres)
    try:
        assert await killed.inbox_add(update["event_id"], "vk:1006", json.dumps(update))
        await kill_presence(killed, scratch_postgres)
        sweep = asyncio.create_task(recover_orphans(channel.storage, channel.bot, channel.bot.delivery,  # type: ignore[arg-type]
                                                    every=0.05, older_than=3600.0))
        try:
            assert "Главное меню" in (await asker.wait_reply()).text
        finally:
            await run_for(sweep, 0.2)
    finally:
        await killed.close()
    assert await channel.storage.inbox_pending() == []
    assert len(asker.replies) == 1


async def test_an_answer_overtaken_by_a_later_step_is_sent_without_its_keyboard(
        channel: Channel, vk: RunningVkEmulator) -> None:
    """The dead worker's answer comes after the user already moved on with another worker: it
    is said late, but the keyboard the user has now (the later answer's) stays."""
    await keep_unsent(channel, 1005, "ev-old", "Сказано до того, как пользователь пошёл дальше")
    later = StepCommit(Session("vk:1005", "main.menu", {}, "v", 0.0), 1, event_id="ev-new")
    assert await channel.storage.commit_step(later)
    sweep = asyncio.create_task(recover_orphans(channel.storage, channel.bot, channel.bot.delivery,  # type: ignore[arg-type]
                                                every=0.05, older_than=0.0))
    try:
        late = await vk.user(1005).wait_reply()
    finally:
        await run_for(sweep, 0.1)
    assert late.text == "Сказано до того, как пользователь пошёл дальше"
    assert late.keyboard is None
