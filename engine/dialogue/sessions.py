"""Sessions between steps: an LRU cache in front of storage, and per-peer serialisation.

The cache makes the common step one storage round trip (the commit). It is safe even with
several writers because every commit carries the version it started from: a stale cached
copy fails its commit, is dropped, and the step is redone on a fresh read.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from engine.ports import OutboxItem, OutboxOutcome, Session, SessionStore, SignInWrites, StepCommit, WatchedTicket


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (what slots are): three times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


class PeerLocks:
    """One asyncio lock per peer that has work in flight; idle peers cost nothing."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, peer: str) -> AsyncIterator[None]:
        entry = self._locks.get(peer)
        if entry is None:
            entry = self._locks[peer] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[peer]

    def __len__(self) -> int:
        return len(self._locks)


class SessionCache:
    def __init__(self, storage: SessionStore, capacity: int = 10_000) -> None:
        self.storage = storage
        self.capacity = capacity
        self._cache: OrderedDict[str, Session] = OrderedDict()

    async def load(self, peer: str) -> Session | None:
        """A private copy of the peer's session: the step may change it freely."""
        cached = self._cache.get(peer)
        if cached is not None:
            self._cache.move_to_end(peer)
        else:
            cached = await self.storage.load_session(peer)
            if cached is None:
                return None
            self._remember(cached)
        return Session(cached.peer, cached.state, copy_json(cached.slots), cached.flow_version,
                       cached.updated_at, cached.version)

    async def commit(self, session: Session, expected_version: int, event_id: str | None,
                     replies: str | None = None, *, outbox: Sequence[OutboxItem] = (),
                     reply_of: str | None = None, finish: Sequence[OutboxOutcome] = (),
                     sign_in: SignInWrites | None = None, watch: Sequence[WatchedTicket] = (),
                     counts: Sequence[str] = ()) -> bool:
        ok = await self.storage.commit_step(StepCommit(session, expected_version, event_id, replies, outbox,
                                                       reply_of, finish, sign_in, watch, counts))
        if ok:
            session.version = expected_version + 1
            self._remember(session)
        else:
            self._cache.pop(session.peer, None)
        return ok

    def forget(self, peer: str) -> None:
        self._cache.pop(peer, None)

    def _remember(self, session: Session) -> None:
        self._cache[session.peer] = session
        self._cache.move_to_end(session.peer)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)

    def __len__(self) -> int:
        return len(self._cache)
