"""Two engines on one PostgreSQL database, as two worker processes are: one peer's events are
stepped one at a time across them, and an event delivered to both is handled once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from emulators.mail_sink import MemoryMailSink
from engine.actions.context import AuthPolicy, Services
from engine.convtest import START_TIME
from engine.dialogue.runtime import Engine
from engine.flows.model import FlowSet
from engine.flows.source import StaticFlows
from engine.ports import Binding, Incoming
from supportbot.conversation_world import EmulatorWorld


class Worker:
    def __init__(self, engine: Engine, storage: Any) -> None:
        self.engine = engine
        self.storage = storage


@pytest.fixture
def now() -> list[float]:
    return [START_TIME]


@pytest.fixture
async def workers(flow_set: FlowSet, world: EmulatorWorld, now: list[float],
                  scratch_postgres: str) -> AsyncIterator[tuple[list[Worker], MemoryMailSink]]:
    from adapters.storage.postgres import open_postgres

    dsn = scratch_postgres
    mailer = MemoryMailSink()  # the one mail server both send through
    opened: list[Worker] = []
    try:
        for _ in range(2):
            storage = await open_postgres(dsn)
            services = Services(storage, world.tickets, mailer, world.spool, AuthPolicy(), clock=lambda: now[0])
            opened.append(Worker(Engine(StaticFlows(flow_set), services), storage))
        yield opened, mailer
    finally:
        for w in opened:
            await w.storage.close()


async def test_an_event_delivered_to_two_workers_at_once_is_handled_once(
        workers: tuple[list[Worker], MemoryMailSink], now: list[float]) -> None:
    (one, two), mailer = workers
    peer = "vk:7"
    await one.engine.handle(peer, Incoming(text="Мои заявки", event_id="e1"))
    for n in range(6):
        event = Incoming(text="user@ranepa.ru" if n % 2 == 0 else "Другой адрес", event_id=f"e-{n}")
        both = await asyncio.gather(one.engine.handle(peer, event), two.engine.handle(peer, event))
        # One worker stepped it; the other found it handled once it had the peer's lock.
        assert sorted(len(replies) for replies in both) == [0, 1], (n, both)
        now[0] += 61  # past the resend cooldown
    # Each "send a code" step ran once: one letter each, none from a step run by both workers.
    assert len(mailer.messages) == 3


async def test_steps_of_one_peer_alternating_between_workers_see_each_others_writes(
        workers: tuple[list[Worker], MemoryMailSink]) -> None:
    (one, two), _ = workers
    peer = "vk:8"
    person = await one.engine.services.tickets.find_person("user@ranepa.ru")
    assert person is not None
    await one.storage.put_binding(Binding(peer, person.email, person.sys_id, person.name, START_TIME))
    texts = ["Начать", "Создать заявку", "2", "5"]
    for n, text in enumerate(texts):
        worker = (one, two)[n % 2]
        [reply] = await worker.engine.handle(peer, Incoming(text=text, event_id=f"e-{n}"))
    assert "Опишите проблему" in reply.text  # each step read the session the other wrote
    stored = await one.storage.load_session(peer)
    assert stored is not None and stored.version == len(texts)
    assert len(one.engine.sessions) == len(two.engine.sessions) == 0  # nothing cached to go stale


async def test_a_channel_dedupe_counts_for_nothing_when_another_worker_took_the_event_meanwhile(
        workers: tuple[list[Worker], MemoryMailSink]) -> None:
    """The callback endpoint stored the event and hands it over; meanwhile a restarted worker
    resumed it from the inbox and handled it. The commit refuses the second step (the inbox's
    key decides), and nothing of it counts."""
    (one, two), _ = workers
    event = Incoming(text="Начать", event_id="ev-resumed")
    assert len(await one.engine.handle("vk:9", event)) == 1
    assert await two.engine.handle("vk:9", event) == []
    assert sum(two.engine.entered.values()) == 0  # not stepped again (its actions not run twice)
    stored = await two.storage.load_session("vk:9")
    assert stored is not None and stored.version == 1
