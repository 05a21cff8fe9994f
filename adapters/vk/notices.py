"""Notices to VK users: messages the bot sends unasked (a late ticket number, a status change).

The outbox worker and the status watcher store notices in the same transaction as what caused
them; this loop sends what is stored and marks it sent. A crash between sending and marking
sends it again with the same random_id, which VK drops as a repeat.
"""

from __future__ import annotations

import asyncio
import logging

from adapters.vk.sender import VkSender
from adapters.vk.updates import vk_peer_id
from engine.ports import Notice, Storage
from engine.ports.telemetry import NOTICES_SENT
from engine.replies import Reply
from engine.work.leases import JobLease

log = logging.getLogger(__name__)


def notice_reply(notice: Notice) -> Reply:
    """A notice as a message: its buttons, if any, inside it (an inline keyboard), so the
    keyboard of the step the user is at stays as it was."""
    return Reply(notice.text, [list(row) for row in notice.buttons], inline=True)


async def send_notices(storage: Storage, sender: VkSender, *, batch: int = 100) -> int:
    """Send the stored notices once over; returns how many were sent (or dropped as not VK's)."""
    done = 0
    while True:
        notices = await storage.notices_unsent(batch)
        if not notices:
            return done
        finished: list[str] = []
        for notice in notices:
            peer_id = vk_peer_id(notice.peer)
            if peer_id is None:
                log.error("notice %s is for %s, which is not a VK peer; dropped", notice.id, notice.peer)
            elif not await sender.send(peer_id, notice_reply(notice), key=f"notice:{notice.id}",
                                       keyboard=bool(notice.buttons)):
                continue  # VK keeps failing: left for the next round
            else:
                # The id's first part says what it tells: status, comment, outbox (a late number), …
                sender.telemetry.count(NOTICES_SENT, kind=notice.id.split(":", 1)[0])
            finished.append(notice.id)
        if finished:
            await storage.notices_sent(finished)
            done += len(finished)
        if len(finished) < len(notices):
            return done  # some are stuck: do not spin on them


async def run_notices(storage: Storage, sender: VkSender, *, every: float = 1.0, lease: JobLease | None = None) -> None:
    """Send notices as they come, until cancelled. With several workers one sends at a time
    (notices of one user stay in order); another takes over within the lease if it stops."""
    lease = lease if lease is not None else JobLease(storage, "vk:notices", ttl=15.0)
    try:
        while True:
            try:
                if await lease.hold():
                    await send_notices(storage, sender)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sending notices failed; trying again")
            await asyncio.sleep(every)
    finally:
        await lease.release()
