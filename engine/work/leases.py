"""Jobs that one process at a time should do: the status poller, the notice sender, the long
poll, housekeeping. On a storage several processes share, each round first takes (or renews) a
lease in storage under the storage's name for this process (Locks.process). A process that dies
leaves the job to the next process that asks, its own successor included, at once (the storage
knows it is gone); one that merely stops renewing, once its lease runs out. On a storage only
one process uses, the job is always this process's and costs no round trip.

A lease is an efficiency, not the only guard: each of these jobs is safe to run twice (notices
and status changes are once-only by id, VK drops a resent random_id), so a holder that pauses past
its lease and overlaps the next one repeats work but never tells a user twice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from engine.ports import Locks

log = logging.getLogger(__name__)


def process_holder() -> str:
    """A name for a process (a storage's Locks.process): readable in the tables, unique across
    restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobLease:
    def __init__(self, storage: Locks, name: str, *, ttl: float, holder: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if ttl <= 0:
            raise ValueError("a lease needs ttl > 0")
        self.storage = storage
        self.name = name
        self.ttl = ttl
        self.holder = holder or storage.process
        self.clock = clock
        self.shared = storage.shared
        self._held = False

    @property
    def held(self) -> bool:
        """Whether the last hold() got the lease (always, on storage of one process)."""
        return self._held or not self.shared

    async def hold(self) -> bool:
        """Whether this process is to do the job now: the lease taken or renewed for ttl more
        seconds. A storage failure counts as not held (the job waits for the next round)."""
        if not self.shared:
            return True
        now = self.clock()
        try:
            held = await self.storage.lease_acquire(self.name, self.holder, now, now + self.ttl)
        except Exception as exc:
            log.warning("lease %s: storage failed (%s: %s); skipping this round", self.name, type(exc).__name__, exc)
            held = False
        if held and not self._held:
            log.info("lease %s taken by %s: this process does the job now", self.name, self.holder)
        elif self._held and not held:
            log.warning("lease %s lost by %s: another process does the job now", self.name, self.holder)
        self._held = held
        return held

    async def release(self) -> None:
        """Let another process take the job at once (on a clean stop)."""
        if not (self.shared and self._held):
            return
        self._held = False
        try:
            await self.storage.lease_release(self.name, self.holder)
        except Exception as exc:
            log.warning("lease %s: release failed (%s); it runs out by itself", self.name, exc)
