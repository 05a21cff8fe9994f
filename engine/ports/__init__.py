"""The engine's ports: the only ways it reaches storage, SimpleOne, mail and files.

Adapters implement these protocols; the engine never imports an adapter. One module per
concern; each port has its contract test suite in tests/contract/ that every adapter passes.
Every public name is re-exported here, so `from engine.ports import X` keeps working.
"""

from engine.ports.auth import Binding, Bindings, PendingCode, SendStats, SignInCodes, SignInWrites
from engine.ports.channel import Incoming, IncomingFile
from engine.ports.counters import Counters, DayCount
from engine.ports.files import FileSpool, FileSpoolFull, SpooledFile
from engine.ports.inbox import Cursors, Inbox, InboxEvent, UnsentReplies
from engine.ports.locks import Locks
from engine.ports.mail import Mailer, MailError, MailMessage, MailRecipientRefused
from engine.ports.notices import Notice, Notices, TicketWatches, WatchedTicket
from engine.ports.outbox import (
    OUTBOX_DONE,
    OUTBOX_FAILED,
    OUTBOX_PENDING,
    OutboxItem,
    OutboxOutcome,
    OutboxState,
    OutboxStore,
    OutboxSummary,
)
from engine.ports.privacy import FORGET_KINDS, Forgetting, Forgotten
from engine.ports.sessions import Session, SessionStore, StepCommit
from engine.ports.storage import Storage
from engine.ports.telemetry import NULL_TELEMETRY, NullTelemetry, Telemetry, channel_of
from engine.ports.tickets import (
    DEFAULT_PEOPLE_TABLES,
    Attachment,
    Comment,
    Journal,
    Person,
    Ticket,
    TicketRef,
    TicketSystem,
    TicketSystemError,
    TicketSystemRejected,
    TicketSystemUnavailable,
    Upload,
    author_names,
    journal_order,
)
from engine.ticket_time import parse_updated_at

__all__ = [
    "DEFAULT_PEOPLE_TABLES",
    "FORGET_KINDS",
    "NULL_TELEMETRY",
    "OUTBOX_DONE",
    "OUTBOX_FAILED",
    "OUTBOX_PENDING",
    "Attachment",
    "Binding",
    "Bindings",
    "Comment",
    "Counters",
    "Cursors",
    "DayCount",
    "FileSpool",
    "FileSpoolFull",
    "Forgetting",
    "Forgotten",
    "Inbox",
    "InboxEvent",
    "Incoming",
    "IncomingFile",
    "Journal",
    "Locks",
    "MailError",
    "MailMessage",
    "MailRecipientRefused",
    "Mailer",
    "Notice",
    "Notices",
    "NullTelemetry",
    "OutboxItem",
    "OutboxOutcome",
    "OutboxState",
    "OutboxStore",
    "OutboxSummary",
    "PendingCode",
    "Person",
    "SendStats",
    "Session",
    "SessionStore",
    "SignInCodes",
    "SignInWrites",
    "SpooledFile",
    "StepCommit",
    "Storage",
    "Telemetry",
    "Ticket",
    "TicketRef",
    "TicketSystem",
    "TicketSystemError",
    "TicketSystemRejected",
    "TicketSystemUnavailable",
    "TicketWatches",
    "UnsentReplies",
    "Upload",
    "WatchedTicket",
    "author_names",
    "channel_of",
    "journal_order",
    "parse_updated_at",
]
