"""Personal data on request: everything the bot keeps about one person, deleted at once
(`supportbot forget`, and «Удалить мои данные» in the bot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# The kinds Forgotten.removed counts, in the order they are reported.
FORGET_KINDS = ("sessions", "bindings", "codes", "sign-in log", "notices", "watched tickets", "inbox events",
                "outbox items")


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forget found and did. refused: the person's unfinished outbox items (pending: a
    ticket or comment not yet in SimpleOne) that stopped it; nothing was deleted then."""

    peers: tuple[str, ...]
    removed: dict[str, int] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # spool files of the deleted outbox items: the caller discards them
    refused: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.removed.values())


class Forgetting(Protocol):
    async def forget(self, *, peer: str | None = None, email: str | None = None, force: bool = False,
                     keep_session: bool = False, keep_send_log: bool = False) -> Forgotten:
        """Delete the person's sessions, bindings, sign-in codes and sign-in log, notices, watched
        tickets, kept replies and outbox items, in one transaction. The person: a peer, or an
        e-mail address (every peer bound to it; a peer only sent a code there loses just the
        rows under the address, never its own data). Refuses (deletes nothing)
        while one of their outbox items is pending, unless force. Handled inbox events keep
        their ids (a resent event must stay a duplicate) but lose their peer and replies.
        keep_session: the caller's own step has just written it (in the bot, reset to nothing).
        keep_send_log: keep the record of codes mailed, which caps how many an address gets (the
        peer ↔ address link goes all the same)."""
        ...
