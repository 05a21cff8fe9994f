"""VK updates (Bots Long Poll and Callback API share the shape) parsed once into plain data."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CHAT_PEER_BASE = 2_000_000_000  # peer ids of group chats (conversations) start here
MAX_ID = 2**53  # VK's ids are JSON numbers its own clients read exactly
_DIGITS = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only: str.isdigit() takes '²'


def _vk_id(value: Any) -> int | None:
    """An id as VK sends it (an integer, or its digits as a string), or None: floats, booleans,
    infinities and numbers beyond any VK id are not ids."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if type(value) is not int or not -MAX_ID < value < MAX_ID:
        return None
    return value


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
    # VK's event ids are 40 hex digits; a longer one is not VK's, and would be an inbox key.
    if not isinstance(message, dict) or not isinstance(event_id, str) or not 0 < len(event_id) <= 128:
        log.warning("malformed message_new update skipped")
        return None
    peer_id = _vk_id(message.get("peer_id"))
    from_id = _vk_id(message.get("from_id", peer_id))
    message_id = _vk_id(message.get("id") or 0)
    if peer_id is None or peer_id <= 0 or from_id is None or message_id is None:
        log.warning("message_new without a usable peer_id, from_id or id skipped (event %s)", event_id)
        return None
    if message.get("out") == 1 or from_id < 0:  # the community's own messages
        return None
    payload = message.get("payload")
    attachments = message.get("attachments")
    text = message.get("text")
    return InMessage(
        event_id=event_id,
        peer_id=peer_id,
        from_id=from_id,
        message_id=message_id,
        text=text if isinstance(text, str) else "",  # VK's text is a string; anything else is no text
        payload=payload if isinstance(payload, str) else None,
        attachments=[a for a in attachments if isinstance(a, dict)] if isinstance(attachments, list) else [],
        is_cropped=bool(message.get("is_cropped")),
    )
