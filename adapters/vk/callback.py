"""The Callback API endpoint: VK POSTs events here; the answer must be "ok", and quickly.

An event is recorded in the inbox (with its body) and answered at once; it is handled after.
VK's resends and duplicates are dropped by event_id, across restarts and workers, because
the inbox is in the database. Events answered but not handled when the process stopped are
handled when it starts again.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time

from aiohttp import web

from adapters.vk.bot import VkBot
from adapters.vk.connection_guard import ConnectionGuard
from adapters.vk.updates import parse_update
from engine.ports import NULL_TELEMETRY, Storage, Telemetry
from engine.ports.telemetry import EVENTS_DEDUPLICATED
from engine.text_safety import loads_bounded

log = logging.getLogger(__name__)
# VK's events nest a few levels (an attachment's sizes are the deepest, about 7); far more is an attack.
MAX_UPDATE_DEPTH = 32
BODY_TIMEOUT = 10.0  # seconds for a whole event's body to arrive



def event_body(update: dict[str, object]) -> str:
    """The update as kept in the inbox (without the callback secret)."""
    return json.dumps({k: v for k, v in update.items() if k != "secret"}, ensure_ascii=False,
                      separators=(",", ":"))


def make_callback_app(bot: VkBot, storage: Storage, *, group_id: int, secret: str, confirmation: str,
                      path: str = "/", body_timeout: float = BODY_TIMEOUT,
                      guard: ConnectionGuard | None = None, telemetry: Telemetry = NULL_TELEMETRY) -> web.Application:
    secret_bytes = secret.encode()

    async def receive(request: web.Request) -> web.Response:
        try:
            # A body trickled in slowly would hold a connection (a file descriptor) for as long
            # as the sender likes: VK sends a whole event at once.
            async with asyncio.timeout(body_timeout):
                body = await request.text()
        except TimeoutError:
            return web.Response(status=408, text="body too slow")
        try:
            # Bounded before parsing: deep nesting would exhaust the parser's recursion (a 500
            # and a traceback for anyone who can reach the endpoint, before any secret is checked).
            update = loads_bounded(body, MAX_UPDATE_DEPTH)
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="not JSON")
        if not isinstance(update, dict):
            return web.Response(status=400, text="not an event")
        if update.get("group_id") != group_id:
            log.warning("callback for group %r refused (this bot serves %d)", update.get("group_id"), group_id)
            return web.Response(status=403, text="wrong group")
        if update.get("type") == "confirmation":
            return web.Response(text=confirmation)
        given = str(update.get("secret") or "").encode()
        if not hmac.compare_digest(given, secret_bytes):  # constant time: no timing oracle
            log.warning("callback with a wrong secret refused")
            return web.Response(status=403, text="wrong secret")
        msg = parse_update(update)
        if msg is None:
            return web.Response(text="ok")  # other event types: acknowledged, not used
        if msg.in_group_chat:
            bot.submit(msg)  # a courtesy pointer, not worth an inbox row
            return web.Response(text="ok")
        if await storage.inbox_add(msg.event_id, msg.peer, event_body(update)):
            bot.submit(msg)
        else:
            log.debug("duplicate callback event %s dropped", msg.event_id)
            telemetry.count(EVENTS_DEDUPLICATED, channel="vk")
        return web.Response(text="ok")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="supportbot callback endpoint")

    app = web.Application(client_max_size=1024 * 1024, middlewares=[guard.middleware] if guard else [])
    app.router.add_post(path, receive)
    app.router.add_get(path, health)
    return app


async def resume_pending(bot: VkBot, storage: Storage, *, max_age: float = 900.0, limit: int = 100_000,
                         received_before: float = math.inf, gone_only: bool = False) -> int:
    """Hand the events that were answered but not handled before a restart to the bot, in order.

    Another worker, or this process's endpoint once it listens, may hand over the same event:
    the engine's commit lets only one step the session (the inbox's key decides).
    Events older than max_age are closed unhandled: an old "Отправить" must not land on whatever
    screen the user is on by now.
    """
    resumed = 0
    pending = await storage.inbox_pending(limit, received_before=received_before, gone_only=gone_only)
    now = time.time()
    stale = [e.event_id for e in pending if now - e.received_at > max_age]
    if stale:
        log.warning("%d event(s) older than %.0f s were not handled and are dropped", len(stale), max_age)
        await storage.inbox_mark_handled(stale)
    unreadable: list[str] = []
    for event in pending:
        if event.event_id in stale:
            continue
        try:
            msg = parse_update(json.loads(event.body))
        except ValueError:
            msg = None
        if msg is None:  # stored by a release that read it differently: closed, not retried forever
            log.error("inbox event %s cannot be parsed; closed unhandled", event.event_id)
            unreadable.append(event.event_id)
            continue
        bot.submit(msg)
        resumed += 1
    if unreadable:
        await storage.inbox_mark_handled(unreadable)
    if resumed:
        log.info("%d event(s) received before a restart are being handled", resumed)
    return resumed
