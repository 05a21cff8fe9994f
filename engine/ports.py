"""The engine's ports: the only ways it reaches storage, SimpleOne, mail and files.

Adapters implement these protocols; the engine never imports an adapter. Each port has one
contract test suite in tests/contract/ that every adapter passes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

# --------------------------------------------------------------------------- storage


@dataclass(slots=True)
class Session:
    """One peer's dialogue: plain data, restored onto the compiled machine per event."""

    peer: str
    state: str
    slots: dict[str, Any]
    flow_version: str
    updated_at: float
    # Bumped by every committed step; 0 means "never stored". Writers pass the version they
    # read, so a stale copy can never overwrite a newer step (optimistic concurrency).
    version: int = 0


@dataclass(slots=True)
class StepCommit:
    """Everything one engine step writes, committed in one transaction."""

    session: Session
    expected_version: int
    # The channel's event id, recorded in the inbox in the same transaction as the step.
    event_id: str | None = None
    # The step's replies (engine.replies.dump_replies), kept with the event until the channel
    # says they were delivered: a crash between commit and sending loses no answer.
    replies: str | None = None
    # Work for SimpleOne the step decided on, written with it or not at all (the outbox).
    outbox: Sequence[OutboxItem] = ()
    # A follow-up step (an outbox outcome told within the wait) with no event of its own: its
    # replies replace those still kept, unsent, for this earlier event.
    reply_of: str | None = None
    # Outcomes the worker handed to this step to record with it (Storage.outbox_finish's
    # semantics; item.told says whether this step tells it): told and recorded in one
    # transaction, one round trip. If one of them is not pending any more (recorded meanwhile,
    # so told already), the step fails.
    finish: Sequence[OutboxOutcome] = ()


OUTBOX_PENDING = "pending"
OUTBOX_DONE = "done"
OUTBOX_FAILED = "failed"


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
    state: str = OUTBOX_PENDING
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
class Notice:
    """A message the bot sends unasked (a ticket number that came late, a status change).

    id makes it once-only: the same change never yields two notices, and the channel derives
    its dedupe key (VK random_id) from it when it has to send again after a crash."""

    id: str
    peer: str
    text: str
    created_at: float


@dataclass(frozen=True, slots=True)
class OutboxOutcome:
    """How an outbox item ended, written at once with what follows from it."""

    item: OutboxItem  # with state, result, progress, attempts as they now are
    notices: Sequence[Notice] = ()
    follow_ups: Sequence[OutboxItem] = ()  # e.g. the uploads of a created ticket
    watch: Sequence[WatchedTicket] = ()  # tickets to follow for status notices


@dataclass(frozen=True, slots=True)
class WatchedTicket:
    """A ticket whose state changes are told to its owner's peer."""

    table: str
    sys_id: str
    number: str
    peer: str
    state: str  # the raw state last seen (labels come from flows)
    updated_at: str  # SimpleOne's sys_updated_at last seen
    active: bool = True


@dataclass(frozen=True, slots=True)
class Binding:
    """A channel peer bound to a verified corporate email and the SimpleOne person behind it."""

    peer: str
    email: str
    caller_id: str
    name: str
    bound_at: float


@dataclass(frozen=True, slots=True)
class PendingCode:
    """A sign-in code waiting to be entered; only its salted hash is stored."""

    peer: str
    email: str
    code_hash: bytes
    salt: bytes
    created_at: float
    expires_at: float
    attempts: int = 0
    # The session version of the step that last wrote the code (sent it, or used it), and
    # whether it was used. A step that wrote it and then never committed (its process died) is
    # recognised when the event is handled again: the session is still at that version.
    step: int = -1
    used: bool = False
    mailed: bool = False  # the mail server took the letter (a redone step need not send again)


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """A channel event recorded on receipt and not handled yet (e.g. a callback answered "ok")."""

    event_id: str
    peer: str
    body: str  # the channel's raw event, enough to handle it after a restart
    received_at: float


@dataclass(frozen=True, slots=True)
class UnsentReplies:
    """Replies of a handled event that the channel had not confirmed sending."""

    event_id: str
    peer: str
    replies: str  # engine.replies.dump_replies
    # A later step of the peer has committed since: its answer (and keyboard) is the current one.
    overtaken: bool = False


@dataclass(frozen=True, slots=True)
class SendStats:
    """Codes mailed since a time (inclusive): by this peer (to any address), to this address (by
    any peer), by this peer to this address; and the latest of the last kind (resend cooldown)."""

    by_peer: int
    by_email: int
    by_pair: int
    last_pair_at: float | None


class Storage(Protocol):
    """Durable state: sessions, bindings, sign-in codes, the inbox of handled events."""

    # Whether several processes may use this storage at once (PostgreSQL): then no process may
    # trust what it cached, and one-at-a-time jobs take a lease (lease_acquire).
    shared: bool

    def peer_lock(self, peer: str) -> AbstractAsyncContextManager[None]:
        """Held around one peer's step: no other process steps that peer meanwhile (within a
        process the engine's own per-peer lock does it). Raises when it cannot be had in
        time; the step is then not made."""
        ...

    async def lease_acquire(self, name: str, holder: str, now: float, until: float) -> bool:
        """Hold the named job until `until`: True if it was free, had run out (by `now`), or was
        this holder's already (a renewal); False, changing nothing, while another holds it."""
        ...

    async def lease_release(self, name: str, holder: str) -> None:
        """Give the job up now, if this holder has it."""
        ...

    async def load_session(self, peer: str) -> Session | None: ...

    async def commit_step(self, step: StepCommit) -> bool:
        """Write the session at version expected_version + 1 and mark its event (if any) handled.

        Returns False, writing nothing, when the stored version is not expected_version
        (another writer got there first) or the event was handled already (a duplicate that
        raced past the check). The step is captured when the call is made; concurrent calls may
        be committed together, each answered only after its transaction commits.
        """
        ...

    async def delete_session(self, peer: str) -> None: ...

    async def count_sessions(self) -> int: ...

    async def get_binding(self, peer: str) -> Binding | None: ...

    async def put_binding(self, binding: Binding) -> None: ...

    async def delete_binding(self, peer: str) -> None: ...

    async def put_code(self, code: PendingCode) -> None:
        """Store a new code for code.peer, replacing any earlier one."""
        ...

    async def get_code(self, peer: str) -> PendingCode | None: ...

    async def add_code_attempt(self, peer: str) -> int:
        """Count one wrong entry against the peer's code; returns the attempts so far (0 if none)."""
        ...

    async def delete_code(self, peer: str) -> None: ...

    async def record_code_sent(self, peer: str, email: str, at: float) -> None: ...

    async def code_send_stats(self, peer: str, email: str, since: float) -> SendStats: ...

    async def seen_event(self, event_id: str) -> bool:
        """True if event_id was handled (its step committed)."""
        ...

    async def seen_events(self, event_ids: Sequence[str]) -> set[str]:
        """The handled ones among event_ids, in one round trip (a long-poll batch)."""
        ...

    async def inbox_add(self, event_id: str, peer: str, body: str) -> bool:
        """Record an event on receipt, before it is handled; False if the id is already known
        (received or handled): a duplicate to drop."""
        ...

    async def inbox_pending(self, limit: int = 1000, received_before: float = math.inf) -> list[InboxEvent]:
        """Events received (before that time) but not handled yet, in the order they arrived."""
        ...

    async def inbox_mark_handled(self, event_ids: Sequence[str]) -> None:
        """Close events without a step (too old to replay, or not for the engine)."""
        ...

    async def replies_unsent(self, limit: int = 1000, handled_before: float = math.inf) -> list[UnsentReplies]:
        """Replies kept by steps (committed before that time) and not yet marked sent, in the
        order the events came."""
        ...

    async def replies_sent(self, event_ids: Sequence[str]) -> None:
        """The channel delivered these events' replies: forget them."""
        ...

    async def get_cursor(self, name: str) -> str | None:
        """A named position that survives restarts (a long-poll ts)."""
        ...

    async def put_cursor(self, name: str, value: str) -> None: ...

    async def prune(self, older_than: float) -> int:
        """Forget handled inbox events, code sends, expired codes, sent notices and finished
        outbox items told to the user, older than this; rows deleted."""
        ...

    # The outbox: SimpleOne work committed with the step that decided it (StepCommit.outbox).

    async def outbox_due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        """Pending items whose next_at has come, oldest first, leaving out any item that has an
        older pending one on the same record (OutboxItem.record): those wait their turn."""
        ...

    async def outbox_take(self, now: float, leases: Mapping[str, float], limit: int = 100) -> list[OutboxItem]:
        """Claim due items as outbox_due picks them, each for one attempt (outbox_claim's
        semantics), at once: leases are the seconds each kind stays hidden (a kind not named:
        the longest). Items another worker is taking at the same moment are skipped, not
        waited for."""
        ...

    async def outbox_get(self, item_id: str) -> OutboxItem | None: ...

    async def outbox_save(self, item: OutboxItem) -> None:
        """Store a pending item's attempts, next_at, last_error, progress and held."""
        ...

    async def outbox_claim(self, item_id: str, now: float, until: float) -> bool:
        """Take a due pending item for one attempt (held): count the attempt and hide the item from
        other workers until `until` (a lease: a worker that dies mid-attempt leaves it due again
        then). False if it is not pending and due any more (another worker has it)."""
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

    # Notices: messages to send unasked, kept until the channel has sent them.

    async def notices_add(self, notices: Sequence[Notice]) -> None:
        """Store notices, ignoring any whose id is already stored."""
        ...

    async def notices_unsent(self, limit: int = 100) -> list[Notice]:
        """Oldest first."""
        ...

    async def notices_sent(self, notice_ids: Sequence[str]) -> None: ...

    # Tickets followed for status notices.

    async def watch_add(self, tickets: Sequence[WatchedTicket]) -> None:
        """Follow these tickets; one already followed keeps what was last seen of it, and is
        told from now on to the peer given here."""
        ...

    async def watch_list(self, after: tuple[str, str] = ("", ""), limit: int = 500) -> list[WatchedTicket]:
        """Followed tickets ordered by (table, sys_id), from just after that key: pages of a scan."""
        ...

    async def watch_update(self, seen: Sequence[WatchedTicket], notices: Sequence[Notice]) -> None:
        """Record what was seen of followed tickets and the notices it caused, at once."""
        ...

    async def watch_drop(self, keys: Sequence[tuple[str, str]]) -> None:
        """Stop following these (table, sys_id) tickets."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- tickets


class TicketSystemError(Exception):
    """Base of every failure reported by the ticket system adapter."""


class TicketSystemUnavailable(TicketSystemError):
    """Transient: timeout, connection error, 5xx, a non-JSON (HTML) answer. Retrying may help.

    maybe_done: whether a write may have happened all the same (a timeout, a dropped answer, a
    500); False when the request surely did not reach the system (no connection, 503, 429, a
    proxy's login page)."""

    def __init__(self, message: str, *, maybe_done: bool = True) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done


class TicketSystemRejected(TicketSystemError):
    """Permanent: the system understood and refused (4xx other than an expired token)."""


@dataclass(frozen=True, slots=True)
class Person:
    """A user record in the ticket system."""

    sys_id: str
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class TicketRef:
    table: str
    sys_id: str
    number: str
    # As the create answered, where known: the first state a status notice compares against.
    state: str = ""
    updated_at: str = ""


@dataclass(frozen=True, slots=True)
class Ticket:
    table: str
    sys_id: str
    number: str
    subject: str
    description: str
    state: str  # the raw state code as a string; labels come from flows/simpleone.yaml
    caller_id: str
    created_at: str  # "YYYY-MM-DD HH:MM:SS"
    updated_at: str
    active: bool


def parse_updated_at(value: str) -> float | None:
    """A ticket's time ("YYYY-MM-DD HH:MM:SS", UTC) as epoch seconds; None if it cannot be read."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class Upload:
    """A file to attach to a ticket, read from disk when it is sent."""

    name: str
    mime: str
    path: Path


class TicketSystem(Protocol):
    """SimpleOne, as the engine needs it."""

    async def find_person(self, email: str) -> Person | None: ...

    async def create_ticket(self, table: str, fields: Mapping[str, str]) -> TicketRef: ...

    async def find_ticket_by_marker(self, table: str, caller_id: str, marker: str) -> TicketRef | None:
        """The caller's ticket whose description contains marker: SimpleOne has no idempotency
        key, so an unclear create is settled by looking the ticket up, never by creating again."""
        ...

    async def list_tickets(
        self, caller_id: str, tables: Sequence[str], *, active_only: bool, limit: int
    ) -> list[Ticket]:
        """The caller's tickets across tables, newest first, at most limit."""
        ...

    async def get_ticket(self, table: str, sys_id: str) -> Ticket | None: ...

    async def get_tickets(self, table: str, sys_ids: Sequence[str]) -> list[Ticket]:
        """These tickets as they are now (any that vanished are left out); for status notices."""
        ...

    async def add_comment(self, table: str, sys_id: str, field: str, text: str) -> None: ...

    async def upload_files(self, table: str, sys_id: str, files: Sequence[Upload]) -> None: ...

    async def list_attachments(self, table: str, sys_id: str) -> list[Attachment]:
        """The files attached to a record: how an unclear upload is settled before a retry."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- mail


class MailError(Exception):
    """The message could not be handed to the mail server."""


@dataclass(frozen=True, slots=True)
class MailMessage:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    async def send(self, message: MailMessage) -> None:
        """Deliver or raise MailError."""
        ...


# --------------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class SpooledFile:
    """A user's file kept on local disk until it is uploaded (channel URLs expire)."""

    id: str
    name: str
    mime: str
    size: int

    def as_slot(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "mime": self.mime, "size": self.size}

    @classmethod
    def from_slot(cls, value: Mapping[str, Any]) -> SpooledFile:
        return cls(str(value["id"]), str(value["name"]), str(value["mime"]), int(value["size"]))


class FileSpoolFull(Exception):
    """The spool cannot take the file (its size cap or the disk is reached)."""


class FileSpool(Protocol):
    async def put(self, peer: str, name: str, mime: str, data: bytes) -> SpooledFile: ...

    def path(self, file_id: str) -> Path: ...

    async def discard(self, file_id: str) -> None: ...


# --------------------------------------------------------------------------- channel side


@dataclass(frozen=True, slots=True)
class IncomingFile:
    """A file the user sent, already downloaded by the channel adapter."""

    name: str
    mime: str
    data: bytes


@dataclass(slots=True)
class Incoming:
    """One user event, channel-neutral."""

    text: str = ""
    # A button's payload as the channel delivered it (a JSON string such as '{"e":"menu"}').
    payload: str | None = None
    files: list[IncomingFile] = field(default_factory=list)
    # Attachment kinds the bot cannot take (voice messages, stickers…), named by the channel.
    unsupported: list[str] = field(default_factory=list)
    # Files that were refused before download (too big), as (name, size in bytes).
    oversized: list[tuple[str, int]] = field(default_factory=list)
    # Files the channel could not download (a dead link, a timeout), by name.
    failed: list[str] = field(default_factory=list)
    event_id: str | None = None
