"""What a channel hands the engine: one user event, channel-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field


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
