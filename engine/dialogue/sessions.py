"""Sessions between steps: an LRU cache in front of storage, and per-peer serialisation.

The cache makes the common step one storage round trip (the commit). It is safe even with
several writers because every commit carries the version it started from: a stale cached
copy fails its commit, is dropped, and the step is redone on a fresh read.

A cached session keeps its slots as the JSON text the commit wrote (serialised once, for the
store and the cache): a fraction of the memory of the parsed dict, and parsing it on load makes
the step's private copy that a deep copy made before.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from engine.ports import OutboxItem, OutboxOutcome, Session, SessionStore, SignInWrites, StepCommit, WatchedTicket


def slots_text(slots: dict[str, Any]) -> str:
    """Slots as stored: compact JSON, non-ASCII kept (the storage adapters write the same)."""
    return json.dumps(slots, ensure_ascii=False, separators=(",", ":"))


class CachedSession(NamedTuple):
    """A committed session as the cache keeps it (see the module docstring)."""

    state: str
    slots: str  # slots_text
    flow_version: str
    updated_at: float
    version: int


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
        self._cache: OrderedDict[str, CachedSession] = OrderedDict()
        # Strings every session shares (state names, the flow version): kept once, not per session.
        self._shared: dict[str, str] = {}

    async def load(self, peer: str) -> Session | None:
        """A private copy of the peer's session: the step may change it freely."""
        cached = self._cache.get(peer)
        if cached is None:
            stored = await self.storage.load_session(peer)
            if stored is not None and self.capacity:
                self._remember(stored, slots_text(stored.slots))
            return stored
        self._cache.move_to_end(peer)
        return Session(peer, cached.state, json.loads(cached.slots), cached.flow_version, cached.updated_at,
                       cached.version)

    async def commit(self, session: Session, expected_version: int, event_id: str | None,
                     replies: str | None = None, *, outbox: Sequence[OutboxItem] = (),
                     reply_of: str | None = None, finish: Sequence[OutboxOutcome] = (),
                     sign_in: SignInWrites | None = None, watch: Sequence[WatchedTicket] = (),
                     counts: Sequence[str] = ()) -> bool:
        text = slots_text(session.slots)
        ok = await self.storage.commit_step(StepCommit(session, expected_version, event_id, replies, outbox,
                                                       reply_of, finish, sign_in, watch, counts, slots_text=text))
        if ok:
            session.version = expected_version + 1
            if self.capacity:
                self._remember(session, text)
        else:
            self._cache.pop(session.peer, None)
        return ok

    def forget(self, peer: str) -> None:
        self._cache.pop(peer, None)

    def _remember(self, session: Session, text: str) -> None:
        shared = self._shared
        state = shared.setdefault(session.state, session.state)
        version = shared.setdefault(session.flow_version, session.flow_version)
        if len(shared) > 10_000:  # flow sets reloaded many times over: start afresh
            shared.clear()
        self._cache[session.peer] = CachedSession(state, text, version, session.updated_at, session.version)
        self._cache.move_to_end(session.peer)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)

    def state_of(self, peer: str) -> str | None:
        """The cached session's state, if it is cached (tests and tools)."""
        cached = self._cache.get(peer)
        return None if cached is None else cached.state

    def __len__(self) -> int:
        return len(self._cache)
