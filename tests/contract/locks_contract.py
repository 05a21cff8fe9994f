"""The locks port's contract (Locks): leases and peer locks.

The `storage` and `storage_backend` fixtures come from conftest.py, one run per backend.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.ports import (
    StepCommit,
)
from tests.contract.storage_values import (
    commit,
    make_session,
)


class TestOneAtATime:
    async def test_a_lease_is_held_by_one_holder_until_it_runs_out_or_is_released(self, storage: Any) -> None:
        assert await storage.lease_acquire("status", "w1", 100.0, 130.0) is True
        assert await storage.lease_acquire("status", "w2", 110.0, 140.0) is False
        assert await storage.lease_acquire("notices", "w2", 110.0, 140.0) is True  # another job
        assert await storage.lease_acquire("status", "w1", 120.0, 150.0) is True  # renewed
        assert await storage.lease_acquire("status", "w2", 140.0, 170.0) is False
        assert await storage.lease_acquire("status", "w2", 150.0, 180.0) is True  # ran out: taken over
        assert await storage.lease_acquire("status", "w1", 160.0, 190.0) is False
        await storage.lease_release("status", "w1")  # not w1's any more: nothing happens
        assert await storage.lease_acquire("status", "w1", 160.0, 190.0) is False
        await storage.lease_release("status", "w2")
        assert await storage.lease_acquire("status", "w1", 160.0, 190.0) is True

    async def test_racing_holders_get_a_lease_once(self, storage_backend: Any) -> None:
        if not storage_backend.persistent:
            pytest.skip("each open of an in-memory database is a database of its own")
        workers = [await storage_backend.open() for _ in range(3)]
        try:
            won = await asyncio.gather(*(w.lease_acquire("status", f"w{n}-{k}", 100.0, 130.0)
                                         for n, w in enumerate(workers) for k in range(4)))
            assert won.count(True) == 1
        finally:
            for w in workers:
                await w.close()

    async def test_a_peer_lock_is_held_for_a_step(self, storage: Any) -> None:
        async with storage.peer_lock("vk:1"), storage.peer_lock("vk:2"):
            assert await commit(storage, "vk:1", 0) is True
        async with storage.peer_lock("vk:1"):  # released: taken again
            assert await commit(storage, "vk:1", 1) is True

    async def test_received_events_and_kept_replies_can_be_asked_for_by_age(self, storage: Any) -> None:
        await storage.inbox_add("ev-old", "vk:1", "{}")
        assert await commit(storage, "vk:2", 0, event_id="ev-done") is True  # handled: never pending
        await asyncio.sleep(0.05)
        middle = time.time()
        await asyncio.sleep(0.05)
        await storage.inbox_add("ev-new", "vk:1", "{}")
        assert [e.event_id for e in await storage.inbox_pending(received_before=middle)] == ["ev-old"]
        assert [e.event_id for e in await storage.inbox_pending()] == ["ev-old", "ev-new"]
        assert await storage.commit_step(StepCommit(make_session("vk:3"), 0, event_id="ev-r", replies="[]")) is True
        assert await storage.replies_unsent(handled_before=middle) == []
        assert [u.event_id for u in await storage.replies_unsent(handled_before=time.time() + 1)] == ["ev-r"]
