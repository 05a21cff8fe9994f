"""The ticket system port: SimpleOne, as the engine needs it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


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

    async def close(self) -> None: ...
