"""Mailers that deliver nowhere: to a terminal for the console demo, to a list for tests."""

from __future__ import annotations

from typing import TextIO

from engine.ports import MailMessage

__all__ = ["ConsoleMailSink", "MemoryMailSink"]


class ConsoleMailSink:
    """Prints each message to a text stream; in the terminal demo the user reads the code there."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    async def send(self, message: MailMessage) -> None:
        self._stream.write(
            f"--- mail to {message.to} ---\n"
            f"Subject: {message.subject}\n"
            f"\n"
            f"{message.body.rstrip(chr(10))}\n"
            f"--- end of mail ---\n"
        )
        self._stream.flush()


class MemoryMailSink:
    """Keeps every message in `messages`, oldest first."""

    def __init__(self) -> None:
        self.messages: list[MailMessage] = []

    async def send(self, message: MailMessage) -> None:
        self.messages.append(message)

    def last_to(self, address: str) -> MailMessage | None:
        """The latest message sent to address (compared case-insensitively), if any."""
        wanted = address.casefold()
        for message in reversed(self.messages):
            if message.to.casefold() == wanted:
                return message
        return None
