"""The outbox port: SimpleOne work committed with the step that decided it (StepCommit.outbox),
run by workers with leases, retries and once-only outcomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from engine.ports.notices import Notice, WatchedTicket


class OutboxState(StrEnum):
    """Where an outbox item is; stored as these strings."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


OUTBOX_PENDING: Final = OutboxState.PENDING
OUTBOX_DONE: Final = OutboxState.DONE
OUTBOX_FAILED: Final = OutboxState.FAILED


@dataclass(slots=True)
class OutboxItem:
    """Work for the ticket system, written in the same transaction as the step that decided it.

    id is also the marker written into SimpleOne (a ticket's description, a comment), so an
    unclear failure is settled by looking the record up, never by writing it again.
    """

    id: str
    peer: str
    kind: str  # "ticket.create", "ticket.comment", "ticket.upload"
    payload: dict[str, Any]
    created_at: float
    state: OutboxState = OutboxState.PENDING
    attempts: int = 0
    next_at: float = 0.0  # not tried before this time (backoff)
    updated_at: float = 0.0
    last_error: str = ""
    # What is already done in SimpleOne (the created ticket, uploaded files): a retry goes on
    # from there instead of starting over.
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None  # set when done or failed: what the user is told
    told: bool = False
    # The SimpleOne record it writes to, for items on an existing one (comments, files): items
    # on one record are run in the order they were written.
    record: str | None = None
    retried_at: float | None = None  # an admin's retry: the give-up clock runs from here
    # In a worker's hands for an attempt (claimed, until the attempt ends or its lease, next_at,
    # runs out): an admin's retry must not make it due while it may be running.
    held: bool = False


@dataclass(frozen=True, slots=True)
class OutboxOutcome:
    """How an outbox item ended, written at once with what follows from it."""

    item: OutboxItem  # with state, result, progress, attempts as they now are
    notices: Sequence[Notice] = ()
    follow_ups: Sequence[OutboxItem] = ()  # e.g. the uploads of a created ticket
    watch: Sequence[WatchedTicket] = ()  # tickets to follow for status notices
    # Counters the outcome moves (engine/figures.py), each counted once on the day of
    # item.updated_at, in the outcome's transaction: a ticket created, how long it took.
    counts: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    """How the outbox stands (metrics, readiness): items pending and failed, and when the oldest
    pending one was written (None: nothing pending)."""

    pending: int
    failed: int
    oldest_pending_at: float | None


class OutboxStore(Protocol):
    """The outbox's items: taken for attempts, finished, told, and managed by an admin."""

    async def outbox_due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        """Pending items whose next_at has come, oldest first, leaving out any item that has an
        older pending one on the same record (OutboxItem.record): those wait their turn."""
        ...

    async def outbox_take(self, now: float, leases: Mapping[str, float], limit: int = 100) -> list[OutboxItem]:
        """Claim due items as outbox_due picks them, each for one attempt, at once: count the
        attempt, mark it held and hide it from other workers until its lease ends (a worker that
        dies mid-attempt leaves it due again then). leases are the seconds each kind stays hidden
        (a kind not named: the longest). Items another worker is taking at the same moment are
        skipped, not waited for."""
        ...

    async def outbox_get(self, item_id: str) -> OutboxItem | None: ...

    async def outbox_save(self, item: OutboxItem) -> None:
        """Store a pending item's attempts, next_at, last_error, progress and held."""
        ...

    async def outbox_lease(self, item_id: str, held_until: float, until: float, attempts: int = 0) -> bool:
        """Move a lease this worker holds: only if the item is pending with next_at ==
        held_until (nobody claimed it since), set next_at = until and add `attempts` (-1 gives
        the item back, not held any more, with the attempt counted for a try that never ran).
        False, changing nothing, otherwise."""
        ...

    async def outbox_finish(self, outcome: OutboxOutcome) -> bool:
        """If the item is still pending, in one transaction: its final state, its notices
        (ignored if their id exists), its follow-up items and the tickets to watch. False,
        writing nothing, when it is not pending any more (finished elsewhere, or dropped)."""
        ...

    async def outbox_list(self, states: Sequence[str] = (), limit: int = 100) -> list[OutboxItem]:
        """Items in these states (all if empty), oldest first."""
        ...

    async def outbox_summary(self) -> OutboxSummary:
        """Counts, not items: cheap however deep the outbox is (a SimpleOne outage fills it)."""
        ...

    async def outbox_untold(self, finished_before: float, limit: int = 100) -> list[OutboxItem]:
        """Done or failed items not told to the user, finished before this time."""
        ...

    async def outbox_tell(self, item_id: str, notice: Notice | None) -> bool:
        """Mark the item told and store its notice, at once; False if it was told already."""
        ...

    async def outbox_retry(self, item_id: str, now: float) -> bool:
        """A failed (or pending) item is tried again at once; its attempts and progress stay, and
        retried_at restarts the give-up clock. False if it is missing or done, or held by a
        worker whose lease has not run out (it may be running: a second run could duplicate)."""
        ...

    async def outbox_drop(self, item_id: str) -> OutboxItem | None:
        """Delete an item that is not done; returns it (its files are the caller's to discard)."""
        ...
