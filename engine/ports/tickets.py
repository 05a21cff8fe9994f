"""The ticket system port: SimpleOne, as the engine needs it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# Where people are looked up by default: SimpleOne's `employee` (a child table of `user`), then
# `user` (students may not be employees). The flows' simpleone.people_tables overrides it.
DEFAULT_PEOPLE_TABLES: tuple[str, ...] = ("employee", "user")


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
    state: str  # the raw state code as a string; its label: TicketSystem.state_labels + flows
    caller_id: str
    created_at: str  # "YYYY-MM-DD HH:MM:SS"
    updated_at: str
    active: bool


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file on a record (a sys_attachment row), or one looked for (name and size alone).

    sys_id and document_id (the row's record_document_id: the record's Document ID, which is
    not its sys_id) are set only when the file is known to be on this record: named by an
    upload's answer, or found through the record's Document ID. A file matched only by name,
    size and time carries neither: it might be another record's."""

    name: str
    size: int
    sys_id: str = ""
    document_id: str = ""


@dataclass(frozen=True, slots=True)
class Upload:
    """A file to attach to a ticket, read from disk when it is sent."""

    name: str
    mime: str
    path: Path


@dataclass(frozen=True, slots=True)
class Journal:
    """Where a ticket's journal entries live and which of them a user may read
    (flows/simpleone.yaml `journal`; instances customise journal columns)."""

    public: str = "additional_comments"  # the caller sees it; the only entries ever read for a user
    internal: str = "work_notes"  # agents only: never read for a user
    table: str = "sys_activity_feed_item"
    # The text the bot ends its own comments with (the end of flows' `comment:`): its own entries
    # carry it. "" = tell them by the author alone.
    bot_tail: str = ""


@dataclass(frozen=True, slots=True)
class Comment:
    """One public journal entry of a ticket (never a work note)."""

    sys_id: str  # the journal entry's: pass the last one seen as `after` to read only newer ones
    text: str
    author: str  # as the ticket system names who wrote it (sys_created_by)
    created_at: str  # "YYYY-MM-DD HH:MM:SS", UTC
    by_bot: bool  # written by the bot (its account, or its comment's tail), not by an agent
    record_id: str = ""  # the ticket's sys_id (journal_since reads several tickets at once)
    # Nothing but pictures (an agent pasted a screenshot into the editor): no text to show, but
    # the user is told there is something to look at (flows: bot.messages.agent_image).
    image_only: bool = False

def author_names(email: str) -> frozenset[str]:
    """How the ticket system names a person as an entry's author (sys_created_by) when it is
    sure to be them, lower case: their address. (Their login is not known to the bot, and the
    part before @ may be an agent's login too: an agent's message must never be hidden.)"""
    email = email.strip().lower()
    return frozenset({email}) if email else frozenset()


def journal_order(sys_id: str) -> tuple[int, int, str]:
    """Orders journal entries as the ticket system does (`ORDERBYsys_id`, `sys_id>`): SimpleOne's
    sys_ids are 18-digit numbers, given out in time order (its own activity feed reads new
    entries with `sys_id>LAST`); anything else sorts as text after every number."""
    if sys_id.isascii() and sys_id.isdigit():
        return (0, int(sys_id), "")
    return (1, 0, sys_id)


class TicketSystem(Protocol):
    """SimpleOne, as the engine needs it."""

    async def find_person(self, email: str, tables: Sequence[str] = DEFAULT_PEOPLE_TABLES) -> Person | None:
        """The active person with this email (ignoring case), from the first of `tables` that has one."""
        ...

    async def create_ticket(self, table: str, fields: Mapping[str, str]) -> TicketRef: ...

    async def find_ticket_by_marker(self, table: str, caller_id: str, marker: str) -> TicketRef | None:
        """The caller's ticket whose description contains marker: SimpleOne has no idempotency
        key, so an unclear create is settled by looking the ticket up, never by creating again."""
        ...

    async def list_tickets(
        self, caller_id: str, tables: Sequence[str], *, active_only: bool, limit: int,
        closed_since: str = "",
    ) -> list[Ticket]:
        """The caller's tickets across tables, newest first, at most limit. closed_since
        ("YYYY-MM-DD HH:MM:SS", UTC): only inactive tickets last updated then or later."""
        ...

    async def get_ticket(self, table: str, sys_id: str) -> Ticket | None: ...

    async def get_tickets(self, table: str, sys_ids: Sequence[str]) -> list[Ticket]:
        """These tickets as they are now (any that vanished are left out); for status notices."""
        ...

    async def add_comment(self, table: str, sys_id: str, field: str, text: str) -> None: ...

    async def list_comments(
        self, table: str, sys_id: str, *, journal: Journal | None = None, after: str | None = None,
        limit: int = 50,
    ) -> list[Comment]:
        """The ticket's PUBLIC comments (journal.public entries only, never work notes), oldest
        first, at most limit, only those after the entry `after` (a Comment.sys_id) if given;
        journal None = Journal()'s defaults."""
        ...

    async def journal_since(
        self, table: str, sys_ids: Sequence[str], *, after: str | None, journal: Journal | None = None,
        limit: int = 200,
    ) -> list[Comment]:
        """PUBLIC comments of these tickets (all of one table) newer than the journal entry
        `after` (None: from the first), oldest first (by entry sys_id), at most limit, each with
        its record_id: how the comment watcher reads every followed ticket in one round, with
        one query per batch of ids (`record_idIN…`). Work notes never come back."""
        ...

    async def latest_comments(
        self, table: str, sys_id: str, *, journal: Journal | None = None, before: str | None = None,
        limit: int = 5,
    ) -> list[Comment]:
        """The ticket's newest PUBLIC comments (before the entry `before`, if given), at most
        limit, returned oldest first: a ticket's conversation as its details show it, and the
        page before it for "Показать ещё"."""
        ...

    async def state_changed_by_bot(self, table: str, sys_id: str, journal: Journal | None = None) -> bool:
        """Whether the ticket's latest state change was the bot's own (its account wrote the
        history entry): a user's reopen, confirm or withdraw, not to be told back to them. False
        when it cannot be told (no history, a static token with no account name)."""
        ...

    async def update_ticket(self, table: str, sys_id: str, fields: Mapping[str, str]) -> None:
        """Write fields of a ticket (a state, a rating, a journal field) in one PATCH. A write:
        never retried here (the outbox decides)."""
        ...

    async def list_attachment_names(self, table: str, sys_id: str) -> list[str]:
        """Names of the files on the ticket, as far as the instance lets them be found (for a
        ticket's details; may be incomplete, never raises for a missing Document ID)."""
        ...

    async def upload_files(self, table: str, sys_id: str, files: Sequence[Upload]) -> list[Attachment]:
        """Attach files to a record. Any 2xx answer is success; its body is undocumented, so
        what is returned is the attachments it happened to name, with their ids (often none)."""
        ...

    async def find_attachments(self, table: str, sys_id: str, files: Sequence[Attachment], *,
                               since: str, known: Sequence[Attachment] = ()) -> list[Attachment]:
        """Those of `files` (by name and size; each at most as often as asked) attached to the
        record at `since` or later — the instance's own time, "YYYY-MM-DD HH:MM:SS", "" for any
        time: how an unclear upload is settled before it is tried again. `known`: files known
        to be on the record (uploads answered 2xx), which let the record's files be told from
        other records' (see the SimpleOne adapter for how, and the limits)."""
        ...

    async def state_labels(self, table: str) -> Mapping[str, str]:
        """The system's own labels of the table's state codes (code → label, in the bot's
        language), for TicketSettings.status_label to show unless flows override a code.

        Cheap to call for every list or notice: the adapter caches them (no round trip per
        call). Never raises: labels are cosmetic, so when the system cannot be asked the answer
        is what was last known, or empty (the flows' fallback labels are shown then)."""
        ...

    async def close(self) -> None: ...
