"""The outbox worker's claims (outbox_take) on SQLite and PostgreSQL: an item in SimpleOne's
hands never runs a second time at once, and a probe in flight does not set off a loop of claims
given back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.storage.sqlite import open_sqlite
from engine.ports import OutboxItem, Session, StepCommit
from engine.work.outbox import OutboxPolicy, OutboxWorker, WorkDone
from tests.postgres_db import scratch_database


@pytest.fixture(params=["sqlite", "postgres"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        s = await open_sqlite(tmp_path / "bot.db")
        try:
            yield s
        finally:
            await s.close()
        return
    from adapters.storage.postgres import open_postgres

    async with scratch_database() as dsn:
        s = await open_postgres(dsn)
        try:
            yield s
        finally:
            await s.close()


async def test_an_admin_retry_of_an_item_in_flight_does_not_start_it_again(storage: Any) -> None:
    running = 0
    peak = 0
    calls = 0
    gate = asyncio.Event()

    async def create(item: OutboxItem, checkpoint: Any) -> WorkDone:
        nonlocal running, peak, calls
        calls += 1
        running += 1
        peak = max(peak, running)
        try:
            await gate.wait()  # SimpleOne is slow: the attempt is still in flight
        finally:
            running -= 1
        return WorkDone({"event": "created"})

    worker = OutboxWorker(storage, {"ticket.create": create}, render=lambda item, name: None,
                          policy=OutboxPolicy(default_timeout=30.0))
    now = time.time()
    item = OutboxItem("x1", "vk:1", "ticket.create", {}, created_at=now, next_at=now)
    assert await storage.commit_step(StepCommit(Session("vk:1", "main.menu", {}, "v", now, 0), 0, outbox=[item]))

    assert await worker.run_once(wait=False) == 1
    await asyncio.sleep(0.05)
    assert running == 1

    # The operator sees it pending ("outbox list") and asks for it to be tried now: refused
    # while a worker holds it, since a second run could create a second ticket.
    assert await storage.outbox_retry("x1", time.time()) is False
    await worker.run_once(wait=False)
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.sleep(0.05)
    await worker.drain(2.0)
    assert peak == 1, f"the item ran {calls} times, {peak} at once"


async def test_while_a_probe_is_in_flight_other_due_items_are_not_taken_and_given_back_in_a_loop(
        storage: Any) -> None:
    """Half-open breaker, one probe in SimpleOne's hands, a second item due (another user's).
    run_once (state "half-open", not "open") takes the second item, its chain gets Permit.NONE,
    _unreserve gives it back and kicks, the loop takes it again at once: a tight loop of claim and
    give-back round trips for as long as the probe lasts (up to the kind's timeout). Before issue 5
    the round only read outbox_due and a chain of due items just stopped."""
    mono = [0.0]
    gate = asyncio.Event()

    async def create(item: OutboxItem, checkpoint: Any) -> WorkDone:
        await gate.wait()
        return WorkDone({"event": "created"})

    worker = OutboxWorker(storage, {"ticket.create": create}, render=lambda item, name: None,
                          policy=OutboxPolicy(default_timeout=30.0, breaker_threshold=1, breaker_cooldown=15.0),
                          monotonic=lambda: mono[0])
    worker.breaker.failure()  # SimpleOne was down
    mono[0] += 15.0  # the cooldown is over: half-open, the next call is the probe
    now = time.time()
    for n, peer in enumerate(("vk:1", "vk:2")):
        item = OutboxItem(f"x{n}", peer, "ticket.create", {}, created_at=now + n, next_at=now)
        assert await storage.commit_step(StepCommit(Session(peer, "main.menu", {}, "v", now, 0), 0, outbox=[item]))

    takes = 0
    real_take = storage.outbox_take

    async def counting_take(*args: Any, **kwargs: Any) -> Any:
        nonlocal takes
        takes += 1
        return await real_take(*args, **kwargs)

    storage.outbox_take = counting_take
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(1.0)  # the probe is still in flight
    finally:
        gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # The sweep is every 5 s: a second or so should see one or two rounds, not hundreds.
    assert takes <= 3, f"{takes} claim rounds in 1 s while one probe was in flight"
