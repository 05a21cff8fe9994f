"""Per-peer order with bounded concurrency: one user's events are handled one at a time, in the
order they came, while different users' events run side by side (at most `limit` at once)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class PeerDispatcher:
    def __init__(self, limit: int = 32) -> None:
        self._queues: dict[str, deque[Job]] = {}
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.pending = 0  # queued or running jobs
        self._changed = asyncio.Condition()

    def submit(self, peer: str, job: Job) -> None:
        """Queue a job behind the peer's earlier ones; returns at once."""
        self.pending += 1
        self._idle.clear()
        queue = self._queues.get(peer)
        if queue is not None:
            queue.append(job)
            return
        self._queues[peer] = deque([job])
        task = asyncio.create_task(self._drain(peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, peer: str) -> None:
        queue = self._queues[peer]
        async with self._slots:
            while queue:
                job = queue[0]
                try:
                    await job()
                except Exception:  # one failing event must not stop the peer's next ones
                    log.exception("handling an event of %s failed", peer)
                finally:
                    queue.popleft()
                    self.pending -= 1
                    async with self._changed:
                        self._changed.notify_all()
        del self._queues[peer]
        if not self._queues:
            self._idle.set()

    async def wait_below(self, count: int) -> None:
        """Back-pressure: wait until fewer than count jobs are queued or running."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.pending < count)

    async def drain(self) -> None:
        """Wait until every queued job has run."""
        await self._idle.wait()

    async def cancel(self) -> None:
        """Stop everything in hand; what was queued is dropped (its source will offer it again)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._queues.clear()
        self.pending = 0
        self._idle.set()
