"""The VK channel around the engine: a parsed message in, files fetched, the step handled, the
replies sent — per peer in order, peers side by side. Long poll and the Callback API both
feed it; neither knows the engine."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from adapters.vk.api import VkApi, VkError
from adapters.vk.attachments import UNREADABLE, AttachmentFetcher, Fetched
from adapters.vk.delivery import DeliveryLog
from adapters.vk.dispatcher import PeerDispatcher
from adapters.vk.sender import VkSender, reply_key
from adapters.vk.updates import InMessage
from engine.ports import Incoming
from engine.replies import Reply

log = logging.getLogger(__name__)

class Handler(Protocol):
    """Engine.handle, as the channel calls it."""

    def __call__(self, peer: str, incoming: Incoming, *, keep_replies: bool = ...) -> Awaitable[list[Reply]]: ...



Message = Callable[[str], Reply]
CHAT_POINTER_EVERY = 3600.0  # answer a group chat at most this often: a pointer, not a chatbot


class VkBot:
    def __init__(self, handle: Handler, message: Message, api: VkApi, sender: VkSender,
                 fetcher: AttachmentFetcher, *, group_id: int, concurrency: int = 32,
                 delivery: DeliveryLog | None = None) -> None:
        self.handle = handle
        self.message = message
        self.api = api
        self.sender = sender
        self.fetcher = fetcher
        self.group_id = group_id
        self.dispatcher = PeerDispatcher(concurrency)
        self.delivery = delivery
        self._chats_told: OrderedDict[int, float] = OrderedDict()  # bounded: oldest forgotten

    def submit(self, msg: InMessage, *, done: Callable[[], None] | None = None) -> None:
        """Queue a message behind the same peer's earlier ones; done() runs when it is handled.

        Files start downloading at once, before the message's turn: a slow download must not
        hold a handling slot that other users' messages wait for, and VK's links expire."""
        prefetch = (asyncio.ensure_future(self.fetcher.fetch(msg.attachments))
                    if msg.attachments and not msg.is_cropped and not msg.in_group_chat else None)

        async def job() -> None:
            try:
                await self.process(msg, prefetch=prefetch)
            except Exception:
                # Handled as far as it goes: the error is logged by the dispatcher and the
                # user had an answer or none; a replay would not do better.
                if done is not None:
                    done()
                raise
            # Not on cancellation: an event cut short is not handled, and the long-poll ts
            # must not move past it (it is fetched again after a restart).
            if done is not None:
                done()

        self.dispatcher.submit(msg.peer, job)

    async def process(self, msg: InMessage, *, prefetch: asyncio.Future[Fetched] | None = None) -> None:
        if msg.in_group_chat:
            await self.point_to_private(msg)
            return
        if msg.is_cropped:
            msg = await self.uncropped(msg)
        try:
            if prefetch is not None:
                fetched = await prefetch
            else:
                fetched = await self.fetcher.fetch(msg.attachments) if msg.attachments else Fetched()
        except Exception:
            # Whatever an update's attachments hold, the message is still handled (answered, and
            # recorded as handled with its step): its files are said to have failed.
            log.exception("attachments of event %s could not be read", msg.event_id)
            fetched = Fetched(failed=[UNREADABLE] * len(msg.attachments))
        incoming = Incoming(text=msg.text, payload=msg.payload, files=fetched.files,
                            unsupported=fetched.unsupported, oversized=fetched.oversized,
                            failed=fetched.failed, event_id=msg.event_id)
        replies = await self.handle(msg.peer, incoming, keep_replies=self.delivery is not None)
        settled = True
        for i, reply in enumerate(replies):
            settled = await self.sender.send(msg.peer_id, reply, key=reply_key(msg.event_id, i, reply)) and settled
        if replies and settled and self.delivery is not None:
            self.delivery.sent(msg.event_id)  # not if VK kept failing: sent again at the next start

    async def point_to_private(self, msg: InMessage) -> None:
        """In a group chat: say once in a while that tickets are handled in private messages,
        when the bot is addressed (mentioned or a button pressed)."""
        addressed = msg.payload is not None or f"[club{self.group_id}|" in msg.text
        now = time.monotonic()
        if not addressed or now - self._chats_told.get(msg.peer_id, -CHAT_POINTER_EVERY) < CHAT_POINTER_EVERY:
            return
        self._chats_told[msg.peer_id] = now
        self._chats_told.move_to_end(msg.peer_id)
        while len(self._chats_told) > 10_000:
            self._chats_told.popitem(last=False)
        await self.sender.send(msg.peer_id, self.message("private_only"), key=f"{msg.event_id}:chat")

    async def uncropped(self, msg: InMessage) -> InMessage:
        """VK cut the message short in the update (is_cropped): read it whole."""
        try:
            answer = await self.api.call("messages.getById", {"message_ids": msg.message_id})
        except VkError as exc:
            log.warning("reading cropped message %s failed: %s", msg.message_id, exc)
            return msg
        items = answer.get("items") if isinstance(answer, dict) else None
        if not items:
            return msg
        full = items[0]
        attachments = full.get("attachments")
        return dataclasses.replace(
            msg, text=str(full.get("text") or msg.text), is_cropped=False,
            attachments=[a for a in attachments if isinstance(a, dict)] if isinstance(attachments, list)
            else msg.attachments)

