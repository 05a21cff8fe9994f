"""Messages the bot sends unasked, and the tickets it follows to tell their status changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.replies import Button


@dataclass(frozen=True, slots=True)
class Notice:
    """A message the bot sends unasked (a ticket number that came late, a status change).

    id makes it once-only: the same change never yields two notices, and the channel derives
    its dedupe key (VK random_id) from it when it has to send again after a crash."""

    id: str
    peer: str
    text: str
    created_at: float
    # Buttons under the message (VK: an inline keyboard), each naming its ticket: what the user
    # can do about it ("Ответить", "Открыть заявку"). The user's keyboard stays as it was.
    buttons: tuple[tuple[Button, ...], ...] = ()


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
    # The last journal entry told or passed over: newer public comments are the agent's news.
    # None: not known yet (a ticket followed from now on: its earlier comments are not news);
    # "": from the first (a ticket the bot created: everything on it is news).
    comment_after: str | None = None
    # When an agent's message on it was last told to the user (0: never): a message the user
    # types soon after is offered as the answer to it.
    asked_at: float = 0.0
    # When SimpleOne said it changed (a push event, TicketWatches.watch_poke) and no round has
    # looked at it since; None: not poked.
    poked_at: float | None = None


class Notices(Protocol):
    """Notices kept until the channel has sent them."""

    async def notices_add(self, notices: Sequence[Notice]) -> None:
        """Store notices, ignoring any whose id is already stored."""
        ...

    async def notices_unsent(self, limit: int = 100) -> list[Notice]:
        """Oldest first."""
        ...

    async def notices_sent(self, notice_ids: Sequence[str]) -> None: ...


class TicketWatches(Protocol):
    """Tickets followed for status notices."""

    async def watch_add(self, tickets: Sequence[WatchedTicket]) -> None:
        """Follow these tickets; one already followed keeps what was last seen of it, and is
        told from now on to the peer given here."""
        ...

    async def watch_list(self, after: tuple[str, str] = ("", ""), limit: int = 500) -> list[WatchedTicket]:
        """Followed tickets ordered by (table, sys_id), from just after that key: pages of a scan."""
        ...

    async def watch_update(self, seen: Sequence[WatchedTicket], notices: Sequence[Notice], *,
                           started: float | None = None, checked: Sequence[tuple[str, str]] = ()) -> None:
        """Record what was seen of followed tickets and the notices it caused, at once.

        With `started` (when the round that looked began, by the clock watch_poke uses), the poke
        of each ticket recorded, and of each (table, sys_id) in `checked` (looked at, nothing to
        record), is cleared if it was made at or before then: that round answered it. A poke made
        later stays for the next round: what it announced may have come after the round's read."""
        ...

    async def watch_poke(self, table: str, sys_id: str) -> bool:
        """Mark a followed ticket as changed in SimpleOne (a push event): the poller looks at it
        soon. True if it is followed; an unknown ticket changes nothing (False)."""
        ...

    async def watch_poked(self, limit: int = 500) -> list[WatchedTicket]:
        """The poked tickets, the longest waiting first (an indexed read, cheap to ask often)."""
        ...

    async def watch_drop(self, keys: Sequence[tuple[str, str]]) -> None:
        """Stop following these (table, sys_id) tickets."""
        ...

    async def watch_of_peer(self, peer: str) -> list[WatchedTicket]:
        """The tickets followed for this chat, the one asked most recently first."""
        ...
