"""adapters/pg_peer_locks.py under stalls, contention and cancellation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from adapters.storage.pg_peer_locks import AdvisoryPeerLocks, PeerLockTimeout, peer_key


class _Stalled:
    """A lock connection whose round trip never comes back (a peer that stopped answering
    without closing: a host that froze or dropped off the network)."""

    def is_closed(self) -> bool:
        return False

    async def fetch(self, *args: Any) -> list[Any]:
        await asyncio.Event().wait()
        return []

    def terminate(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_the_wait_limit_holds_when_the_lock_connection_stalls() -> None:
    async def connect() -> Any:
        return _Stalled()

    locks = AdvisoryPeerLocks(connect, shards=1, wait_limit=0.5)

    async def step() -> None:
        async with locks.hold("vk:1"):
            pass

    started = time.monotonic()
    task = asyncio.create_task(step())
    done, _ = await asyncio.wait({task}, timeout=3.0)
    try:
        # Storage.peer_lock: "Raises when it cannot be had in time; the step is then not made."
        assert done, f"hold() still waiting after {time.monotonic() - started:.1f} s (wait_limit 0.5 s)"
        with pytest.raises((PeerLockTimeout, ConnectionError)):
            task.result()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for shard in locks._shards:  # the runner is stuck in fetch: stop it without close()'s 5 s wait
            if shard._runner is not None:
                shard._runner.cancel()
                await asyncio.gather(shard._runner, return_exceptions=True)


@pytest.fixture
def dsn(scratch_postgres: str) -> str:
    return scratch_postgres


async def _free_elsewhere(dsn: str, peer: str) -> bool:
    """Whether another process could take the peer's lock now."""
    conn = await asyncpg.connect(dsn)
    try:
        key = peer_key(peer)
        taken = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
        if taken:
            await conn.fetchval("SELECT pg_advisory_unlock($1)", key)
        return bool(taken)
    finally:
        await conn.close()


class _CancelOnAnswer:
    """A real lock connection that, as its answer comes back, has the asking task cancelled
    (a shutdown, a timeout around the step) before that task resumes."""

    def __init__(self, conn: Any, victim: list[asyncio.Task[Any]]) -> None:
        self._conn = conn
        self._victim = victim

    def is_closed(self) -> bool:
        return bool(self._conn.is_closed())

    async def fetch(self, *args: Any) -> Any:
        rows = await self._conn.fetch(*args)
        if self._victim:
            asyncio.get_running_loop().call_soon(self._victim.pop().cancel)
        return rows

    def terminate(self) -> None:
        self._conn.terminate()

    async def close(self) -> None:
        await self._conn.close()


async def test_a_step_cancelled_as_its_lock_is_granted_leaves_no_lock_behind(dsn: str) -> None:
    victim: list[asyncio.Task[Any]] = []

    async def connect() -> Any:
        return _CancelOnAnswer(await asyncpg.connect(dsn), victim)

    locks = AdvisoryPeerLocks(connect, shards=1, wait_limit=1.0)
    try:
        async def step() -> None:
            async with locks.hold("vk:42"):
                await asyncio.sleep(0)

        task = asyncio.create_task(step())
        victim.append(task)
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        await asyncio.sleep(0.2)  # any release would have gone out by now
        assert await _free_elsewhere(dsn, "vk:42"), "the lock stays held by a step that never ran"
    finally:
        await locks.close()


async def test_a_peer_busy_on_one_worker_is_not_starved_on_another(dsn: str) -> None:
    """Worker A has a backlog of one user's events (each step a few ms, taken one after another
    under the in-process lock); worker B got one of that user's events. A lock that is released
    and taken again by A in (nearly) the same round trip, while B polls every 100 ms, leaves B
    waiting until A's backlog is gone."""

    async def connect() -> Any:
        return await asyncpg.connect(dsn)

    a = AdvisoryPeerLocks(connect, shards=1, wait_limit=120.0)
    b = AdvisoryPeerLocks(connect, shards=1, wait_limit=3.0)
    in_process = asyncio.Lock()  # Engine.locks on worker A
    stop = asyncio.Event()

    async def backlog() -> None:
        while not stop.is_set():
            async with in_process, a.hold("vk:7"):
                await asyncio.sleep(0.02)  # a step

    workers = [asyncio.create_task(backlog()) for _ in range(3)]
    try:
        await asyncio.sleep(0.1)
        started = time.monotonic()
        try:
            async with b.hold("vk:7"):
                waited = time.monotonic() - started
        except PeerLockTimeout:
            waited = time.monotonic() - started
            pytest.fail(f"worker B never got the lock in {waited:.1f} s while A stepped the same peer")
        assert waited < 1.0, waited
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        await a.close()
        await b.close()
