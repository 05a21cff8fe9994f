"""Replies the engine kept with their steps, until VK took them.

The engine commits a step's replies with the step (Storage: replies of an event). After they
are sent, the event is marked delivered — in batches, a fraction of a second later, so sending
costs no extra write per message. At start, whatever was committed but not confirmed (the
process died in between) is sent again with the same random_id: VK drops what it already has.
"""

from __future__ import annotations

import asyncio
import logging
import math

from adapters.vk.sender import VkSender, reply_key
from adapters.vk.updates import vk_peer_id
from engine.ports import Storage
from engine.replies import load_replies

log = logging.getLogger(__name__)


class DeliveryLog:
    def __init__(self, storage: Storage, *, every: float = 0.5) -> None:
        self.storage = storage
        self.every = every
        self._done: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def sent(self, event_id: str) -> None:
        self._done.append(event_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.every)
        await self.flush()

    async def flush(self) -> None:
        done, self._done = self._done, []
        if not done:
            return
        try:
            await self.storage.replies_sent(done)
        except Exception:  # they stay unsent and are sent again at start: VK drops repeats
            log.exception("marking %d replies as sent failed", len(done))

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self.flush()


async def resend_unsent(storage: Storage, sender: VkSender, delivery: DeliveryLog, *,
                        handled_before: float = math.inf, gone_only: bool = False) -> int:
    """Send the replies committed (before that time; or, gone_only, by processes that are gone)
    but not confirmed sent; returns how many events. Safe while other workers send: a reply sent
    twice has one key, and VK drops the copy."""
    resent = 0
    stuck = False
    while True:
        unsent = await storage.replies_unsent(500, handled_before=handled_before, gone_only=gone_only)
        if not unsent:
            break
        for item in unsent:
            try:
                peer_id = vk_peer_id(item.peer)
                if peer_id is None:
                    raise ValueError(f"{item.peer} is not a VK peer")
                replies = load_replies(item.replies)
            except (ValueError, TypeError, KeyError):
                log.error("kept replies of event %s cannot be read; dropped", item.event_id)
                delivery.sent(item.event_id)
                continue
            sent = True
            for i, reply in enumerate(replies):
                # Overtaken by a later step: said late, but the user's current keyboard stays.
                sent = await sender.send(peer_id, reply, key=reply_key(item.event_id, i, reply),
                                         keyboard=not item.overtaken) and sent
            if not sent:
                # VK kept failing: kept for the next round (the sweep, or the next start).
                log.warning("the kept answer of event %s could not be sent yet", item.event_id)
                stuck = True
                continue
            delivery.sent(item.event_id)
            resent += 1
        await delivery.flush()
        if stuck:
            break  # the same ones would come back at once
    if resent:
        log.info("%d answer(s) committed before a stop were sent again", resent)
    return resent
