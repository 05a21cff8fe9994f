"""VK updates (Bots Long Poll and Callback API share the shape) parsed once into plain data."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CHAT_PEER_BASE = 2_000_000_000  # peer ids of group chats (conversations) start here


def peer_key(peer_id: int) -> str:
    """The engine's peer key of a VK peer: "vk:123"."""
    return f"vk:{peer_id}"


def vk_peer_id(peer: str) -> int | None:
    """The VK peer_id of an engine peer ("vk:123"); None for another channel's peer."""
    channel, _, number = peer.partition(":")
    if channel != "vk" or not number.isdigit():
        return None
    return int(number)


@dataclass(frozen=True, slots=True)
class InMessage:
    """A user's message to the community, as much of it as the bot uses."""

    event_id: str
    peer_id: int
    from_id: int
    message_id: int
    text: str
    payload: str | None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    is_cropped: bool = False

    @property
    def peer(self) -> str:
        """The engine's peer key."""
        return peer_key(self.peer_id)

    @property
    def in_group_chat(self) -> bool:
        return self.peer_id >= CHAT_PEER_BASE


def parse_update(update: Any) -> InMessage | None:
    """A message_new update as an InMessage; None for anything else or anything malformed."""
    if not isinstance(update, dict) or update.get("type") != "message_new":
        return None
    obj = update.get("object")
    message = obj.get("message") if isinstance(obj, dict) else None
    event_id = update.get("event_id")
    if not isinstance(message, dict) or not isinstance(event_id, str) or not event_id:
        log.warning("malformed message_new update skipped")
        return None
    try:
        peer_id = int(message["peer_id"])
        from_id = int(message.get("from_id", peer_id))
        message_id = int(message.get("id") or 0)
    except (KeyError, TypeError, ValueError):
        log.warning("message_new without a usable peer_id skipped (event %s)", event_id)
        return None
    if message.get("out") == 1 or from_id < 0:  # the community's own messages
        return None
    payload = message.get("payload")
    attachments = message.get("attachments")
    return InMessage(
        event_id=event_id,
        peer_id=peer_id,
        from_id=from_id,
        message_id=message_id,
        text=str(message.get("text") or ""),
        payload=payload if isinstance(payload, str) else None,
        attachments=[a for a in attachments if isinstance(a, dict)] if isinstance(attachments, list) else [],
        is_cropped=bool(message.get("is_cropped")),
    )
