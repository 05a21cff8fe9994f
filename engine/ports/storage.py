"""The Storage port: every storage concern at once, as the adapters implement it.

The engine's parts ask for the narrow port they use (engine.ports.sessions, inbox, auth,
outbox, notices, locks); the application wires one Storage object into all of them.
"""

from __future__ import annotations

from typing import Protocol

from engine.ports.auth import Bindings, SignInCodes
from engine.ports.counters import Counters
from engine.ports.inbox import Cursors, Inbox
from engine.ports.locks import Locks
from engine.ports.notices import Notices, TicketWatches
from engine.ports.outbox import OutboxStore
from engine.ports.privacy import Forgetting
from engine.ports.sessions import SessionStore


class Storage(SessionStore, Inbox, Cursors, Bindings, SignInCodes, OutboxStore, Notices, TicketWatches, Locks,
              Counters, Forgetting, Protocol):
    """Durable state: sessions, the inbox, bindings and codes, the outbox, notices, watched
    tickets, leases and locks; plus upkeep."""

    async def prune(self, older_than: float, *, sessions_before: float | None = None,
                    codes_before: float | None = None) -> int:
        """Forget handled inbox events, code sends, expired codes, sent notices and finished
        outbox items told to the user, older than this; and sessions (with their drafts) not
        stepped since sessions_before and codes expired before codes_before, if given; rows deleted."""
        ...

    async def close(self) -> None: ...
