"""What a dead worker left behind is taken up by a living one (supportbot.vk_app.recover_orphans):
answers it committed but never sent, callbacks it acknowledged but never handled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from emulators.vk.server import RunningVkEmulator
from engine.flows.model import FlowSet
from engine.ports import Session, StepCommit
from engine.replies import Reply, dump_replies
from supportbot.conversation_world import EmulatorWorld
from supportbot.vk_app import recover_orphans
from tests.adapters.vk.test_vk_channel import Channel, make_channel
from tests.adapters.vk.test_vk_channel import vk as vk  # this group's fake VK, not conftest's


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


async def test_a_restarted_worker_catches_up_only_on_answers_from_before_its_start(
        channel: Channel, vk: RunningVkEmulator) -> None:
    await keep_unsent(channel, 1003, "ev-before", "Оставлено до перезапуска")
    catching_up = asyncio.create_task(recover_orphans(channel.storage, channel.bot, channel.bot.delivery,  # type: ignore[arg-type]
                                                      every=60.0, catch_up=0.3))
    await asyncio.sleep(0.1)
    # Committed after the start by a live worker that is about to send it itself.
    await keep_unsent(channel, 1004, "ev-after", "Ещё в руках живого процесса")
    try:
        assert (await vk.user(1003).wait_reply()).text == "Оставлено до перезапуска"
    finally:
        await run_for(catching_up, 0.3)
    await vk.user(1004).assert_no_reply(within=0.1)
    assert [u.event_id for u in await channel.storage.replies_unsent()] == ["ev-after"]


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
