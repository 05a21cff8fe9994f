"""Sending replies: split long texts, idempotent random_id, retries that never fail the user
for VK's own limits (error 6 too many requests, 10 internal error), and a keyboard that VK
still refuses (911) dropped rather than the message."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from adapters.vk.api import VkApi, VkApiError, VkTransportError, backoff_delay
from adapters.vk.keyboard import render, split_text
from engine.replies import Reply
from engine.text_safety import clean_outgoing

log = logging.getLogger(__name__)

RETRY_CODES = frozenset({6, 10})  # too many requests per second; internal server error
# The user blocked the community, messages from it are not allowed, or the same text was sent
# too often (9, flood control): nothing a retry would change.
GIVE_UP_CODES = frozenset({7, 9, 900, 901, 902, 15})


def random_id(key: str, part: int) -> int:
    """A stable non-zero int63 per (event, reply, part): a resend is recognised by VK."""
    digest = hashlib.sha256(f"{key}/{part}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF or 1


def reply_key(event_id: str, index: int, reply: Reply) -> str:
    """The dedupe key of an event's reply: the same reply sent again (a resend after a crash, by
    any worker) is dropped by VK, while a reply that replaced it (an outcome told within the
    wait) is a different message and goes through."""
    digest = hashlib.blake2b(reply.text.encode(), digest_size=6).hexdigest()
    return f"{event_id}:{index}:{digest}"


class VkSender:
    def __init__(self, api: VkApi, *, attempts: int = 30, deadline: float = 120.0, backoff: float = 0.5,
                 max_backoff: float = 8.0) -> None:
        self.api = api
        self.attempts = attempts
        self.deadline = deadline  # VK's limits pass; a message is tried for this long
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retried = 0

    async def send(self, peer_id: int, reply: Reply, key: str, *, keyboard: bool = True) -> bool:
        """Send one reply (as several messages if long; the keyboard with the last one).

        keyboard=False sends no keyboard at all, leaving the user's current one in place (a
        notice in the middle of a dialogue); an empty one would hide it.
        True when there is nothing more to do (sent, or refused for good: the user blocked the
        community); False when it gave up on errors that a later try may get past."""
        message = render(reply)
        parts = split_text(clean_outgoing(message.text))
        for i, part in enumerate(parts):
            params: dict[str, Any] = {"peer_id": peer_id, "message": part, "random_id": random_id(key, i),
                                      "dont_parse_links": 1}
            if i == len(parts) - 1 and keyboard:
                params["keyboard"] = message.keyboard
            if not await self._send(params):
                return False
        return True

    async def _send(self, params: dict[str, Any]) -> bool:
        give_up_at = asyncio.get_running_loop().time() + self.deadline
        for attempt in range(self.attempts):
            if attempt and asyncio.get_running_loop().time() > give_up_at:
                break
            try:
                await self.api.call("messages.send", params)
                return True
            except VkApiError as exc:
                if exc.code == 911 and "keyboard" in params:
                    log.error("VK refused a keyboard (%s): %s; sending the text without it", exc, params["keyboard"])
                    params = {k: v for k, v in params.items() if k != "keyboard"}
                    continue
                if exc.code in GIVE_UP_CODES:
                    log.info("message to %s not allowed: %s", params["peer_id"], exc)
                    return True
                if exc.code not in RETRY_CODES:
                    log.error("message to %s failed: %s", params["peer_id"], exc)
                    return True
            except VkTransportError as exc:
                log.warning("sending to %s: %s (attempt %d)", params["peer_id"], exc, attempt + 1)
            self.retried += 1
            await asyncio.sleep(backoff_delay(attempt, self.backoff, self.max_backoff))
        log.error("giving up on a message to %s after %d attempts", params["peer_id"], self.attempts)
        return False
