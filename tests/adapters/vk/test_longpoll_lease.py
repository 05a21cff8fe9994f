"""Long poll with several workers on one PostgreSQL database: one polls at a time (a lease); when
it stops, another takes over from the saved ts, and no event is handled twice or missed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from adapters.vk.longpoll import LongPoller
from emulators.vk.server import RunningVkEmulator
from engine.flows.model import FlowSet
from engine.work.leases import JobLease
from supportbot.conversation_world import EmulatorWorld
from tests.adapters.vk.test_vk_channel import GROUP, Channel, make_channel, say
from tests.adapters.vk.test_vk_channel import vk as vk  # this group's fake VK, not conftest's


@pytest.fixture
async def two_workers(vk: RunningVkEmulator, world: EmulatorWorld, flow_set: FlowSet,
                      scratch_postgres: str) -> AsyncIterator[list[Channel]]:
    from adapters.storage.postgres import open_postgres

    dsn = scratch_postgres
    channels: list[Channel] = []
    try:
        for _ in range(2):
            channel = await make_channel(vk, world, flow_set, await open_postgres(dsn))
            lease = JobLease(channel.storage, f"vk:{GROUP}:longpoll", ttl=3.0)
            channel.poller = LongPoller(channel.api, channel.storage, channel.bot, group_id=GROUP, wait=1,
                                        backoff=0.05, lease=lease, lease_check_every=0.1)
            channel.poller_task = asyncio.create_task(channel.poller.run())
            channels.append(channel)
        yield channels
    finally:
        for channel in channels:
            await channel.close()


async def test_one_worker_polls_and_another_takes_over_when_it_stops(
        vk: RunningVkEmulator, two_workers: list[Channel]) -> None:
    first, second = two_workers
    # A fresh long poll skips what came before it started: wait for the one that polls.
    readies = [asyncio.ensure_future(c.poller.ready.wait()) for c in two_workers if c.poller is not None]
    await asyncio.wait(readies, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    for waiting in readies:
        waiting.cancel()
    user = vk.user(1001)
    assert "Главное меню" in await say(user, "Начать")
    handled = [len(c.engine.entered) for c in two_workers]
    assert sorted(handled)[0] == 0  # only the lease holder's engine stepped anything
    holder, other = (first, second) if handled[0] else (second, first)
    assert other.poller is not None and not other.poller.ready.is_set()

    await holder.stop_polling()  # a clean stop gives the lease up at once
    assert "корпоративной почте" in await say(user, "Мои заявки")
    assert other.poller.ready.is_set()
    assert sum(other.engine.entered.values()) > 0
    # Every message was answered once, in order, whoever polled.
    texts = [m.text for m in user.replies]
    assert len(texts) == 2 and "Главное меню" in texts[0]
