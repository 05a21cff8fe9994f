"""The mail port: sign-in codes leave through it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class MailError(Exception):
    """The message could not be handed to the mail server."""


class MailRecipientRefused(MailError):
    """The mail server took the message but refused its recipient (no such mailbox, say)."""


@dataclass(frozen=True, slots=True)
class MailMessage:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    async def send(self, message: MailMessage) -> None:
        """Deliver or raise MailError."""
        ...
