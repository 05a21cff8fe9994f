"""The inbox port: channel events recorded on receipt, handled once, and the replies their
steps kept until the channel sent them; and named cursors (a long-poll position)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


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


class Inbox(Protocol):
    """Events: handled once, kept until handled; replies: kept until sent."""

    async def seen_event(self, event_id: str) -> bool:
        """True if event_id was handled (its step committed)."""
        ...

    async def inbox_add(self, event_id: str, peer: str, body: str) -> bool:
        """Record an event on receipt, before it is handled; False if the id is already known
        (received or handled): a duplicate to drop."""
        ...

    async def inbox_pending(self, limit: int = 1000, received_before: float = math.inf, *,
                            gone_only: bool = False) -> list[InboxEvent]:
        """Events received (before that time) but not handled yet, in the order they arrived.
        gone_only: instead, those another process received that is gone now, whenever."""
        ...

    async def inbox_mark_handled(self, event_ids: Sequence[str]) -> None:
        """Close events without a step (too old to replay, or not for the engine)."""
        ...

    async def replies_unsent(self, limit: int = 1000, handled_before: float = math.inf, *,
                             gone_only: bool = False) -> list[UnsentReplies]:
        """Replies kept by steps (committed before that time) and not yet marked sent, in the
        order the events came. gone_only: instead, those whose step another process committed
        that is gone now (killed, or an earlier run of this one), whenever that was."""
        ...

    async def replies_sent(self, event_ids: Sequence[str]) -> None:
        """The channel delivered these events' replies: forget them."""
        ...


class Cursors(Protocol):
    """Named positions that survive restarts."""

    async def get_cursor(self, name: str) -> str | None:
        """A named position that survives restarts (a long-poll ts)."""
        ...

    async def put_cursor(self, name: str, value: str) -> None: ...
