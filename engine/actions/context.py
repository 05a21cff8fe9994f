"""What an action gets: the session's slots, the flow set, and the ports."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.actions.sign_in_draft import SignInDraft
from engine.flows.model import FlowSet
from engine.ports import (
    NULL_TELEMETRY,
    FileSpool,
    Mailer,
    OutboxItem,
    OutboxOutcome,
    Storage,
    Telemetry,
    TicketSystem,
    WatchedTicket,
)


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """Sign-in rules; the values come from configuration, not from flows."""

    domains: tuple[str, ...] = ("ranepa.ru",)
    code_ttl: float = 600.0
    max_attempts: int = 5
    resend_cooldown: float = 60.0
    max_sends_per_hour: int = 5


class OutboxQueue(Protocol):
    """The outbox worker as the engine sees it (engine.work.outbox.OutboxWorker)."""

    def kick(self) -> None: ...

    def reserve(self, items: Sequence[OutboxItem]) -> bool:
        """Before the commit: mark new items as this worker's (a lease), so that after the
        commit it can run them at once, with no claim round trip. False: it will not."""
        ...

    def start(self, items: Sequence[OutboxItem]) -> None:
        """After the commit: run items reserved before it."""
        ...

    def wait_budget(self) -> float: ...

    async def wait(self, item_ids: Sequence[str], within: float) -> Mapping[str, OutboxItem]: ...

    def handed_over(self, item_ids: Sequence[str]) -> list[OutboxOutcome]:
        """Outcomes of waited-for items left for the waiting step to record with its commit."""
        ...

    def acknowledge(self, item_ids: Sequence[str], recorded: bool) -> None:
        """Whether the step recorded those outcomes; if not, the worker records them itself."""
        ...


@dataclass(slots=True)
class Services:
    storage: Storage
    tickets: TicketSystem
    mailer: Mailer
    spool: FileSpool
    auth: AuthPolicy = field(default_factory=AuthPolicy)
    clock: Callable[[], float] = time.time
    idle_timeout: float = 1800.0
    outbox: OutboxQueue | None = None  # None: items wait for a worker elsewhere (or a test's)
    telemetry: Telemetry = NULL_TELEMETRY  # metrics (adapters/web/metrics.py), or nothing recorded


@dataclass(slots=True)
class ActionContext:
    peer: str
    slots: dict[str, Any]
    flows: FlowSet
    services: Services
    # The peer's binding and sign-in code as this step sees and changes them (committed with it).
    sign_in: SignInDraft
    # SimpleOne work this step decided on: committed with the step, then sent by the outbox.
    outbox: list[OutboxItem] = field(default_factory=list)
    # Tickets to follow for status notices from this step's commit on.
    watch: list[WatchedTicket] = field(default_factory=list)

    def record(self, name: str) -> dict[str, Any]:
        """The slot `name` as a dict, created if missing (actions write their results there)."""
        value = self.slots.get(name)
        if not isinstance(value, dict):
            value = {}
            self.slots[name] = value
        return value
