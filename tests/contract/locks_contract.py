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


async def other_process(storage: Any, storage_backend: Any) -> Any:
    """A second process on the same database (a second open of it), where there can be one."""
    return await storage_backend.open() if storage_backend.persistent else None


class TestOneAtATime:
    async def test_a_lease_is_held_by_one_holder_until_it_runs_out_or_is_released(
            self, storage: Any, storage_backend: Any) -> None:
        other = await other_process(storage, storage_backend)
        # Holders are processes that are there (on shared storage one that is gone loses its
        # leases at once: the next test).
        w1, w2 = storage.process, other.process if other is not None else "another process"
        try:
            assert await storage.lease_acquire("status", w1, 100.0, 130.0) is True
            assert await storage.lease_acquire("status", w2, 110.0, 140.0) is False
            assert await storage.lease_acquire("notices", w2, 110.0, 140.0) is True  # another job
            assert await storage.lease_acquire("status", w1, 120.0, 150.0) is True  # renewed
            assert await storage.lease_acquire("status", w2, 140.0, 170.0) is False
            assert await storage.lease_acquire("status", w2, 150.0, 180.0) is True  # ran out: taken over
            assert await storage.lease_acquire("status", w1, 160.0, 190.0) is False
            await storage.lease_release("status", w1)  # not w1's any more: nothing happens
            assert await storage.lease_acquire("status", w1, 160.0, 190.0) is False
            await storage.lease_release("status", w2)
            assert await storage.lease_acquire("status", w1, 160.0, 190.0) is True
        finally:
            if other is not None:
                await other.close()

    async def test_on_shared_storage_a_lease_of_a_process_that_is_gone_is_free_at_once(
            self, storage: Any, storage_backend: Any) -> None:
        if not storage.shared:
            pytest.skip("one process at a time: leases are not used")
        other = await storage_backend.open()
        assert await other.lease_acquire("status", other.process, 100.0, 130.0) is True
        assert await storage.lease_acquire("status", storage.process, 101.0, 131.0) is False
        await other.close()  # as gone as a killed process: its presence went with its connection
        assert await storage.lease_acquire("status", storage.process, 102.0, 132.0) is True  # before 130

    async def test_racing_holders_get_a_lease_once(self, storage_backend: Any) -> None:
        if not storage_backend.persistent:
            pytest.skip("each open of an in-memory database is a database of its own")
        workers = [await storage_backend.open() for _ in range(3)]
        try:
            won = await asyncio.gather(*(w.lease_acquire("status", w.process, 100.0, 130.0)
                                         for w in workers for _ in range(4)))
            winners = {w.process for w, took in zip([w for w in workers for _ in range(4)], won, strict=True) if took}
            assert len(winners) == 1
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
