"""Leases and peer locks: what keeps several processes on one storage from doing a job twice."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Locks(Protocol):
    """One process at a time: per peer (a step) and per named job (a lease)."""

    # Whether several processes may use this storage at once (PostgreSQL): then no process may
    # trust what it cached, and one-at-a-time jobs take a lease (lease_acquire).
    shared: bool
    # This process's name as a holder of leases and of what it writes (kept replies, outbox items
    # in hand). On shared storage the process is present under it for as long as it lives: what
    # a process that is gone held (a killed one's, found by its successor too) is taken up at
    # once, not when its lease runs out.
    process: str

    def peer_lock(self, peer: str) -> AbstractAsyncContextManager[None]:
        """Held around one peer's step: no other process steps that peer meanwhile (within a
        process the engine's own per-peer lock does it). Raises when it cannot be had in
        time; the step is then not made."""
        ...

    async def lease_acquire(self, name: str, holder: str, now: float, until: float) -> bool:
        """Hold the named job until `until`: True if it was free, had run out (by `now`), was
        this holder's already (a renewal), or was held by a process that is gone (shared storage);
        False, changing nothing, while another holds it."""
        ...

    async def lease_release(self, name: str, holder: str) -> None:
        """Give the job up now, if this holder has it."""
        ...
