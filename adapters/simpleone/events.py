"""Push from SimpleOne: `POST /simpleone/events`, called by a business rule an admin adds on the
instance (README, "Push from SimpleOne"), served by `supportbot serve` next to the VK callback.

An event only says "look at this ticket now": the endpoint marks the ticket poked if the bot
follows it (Storage.watch_poke) and the status watcher reads the ticket and its journal from
SimpleOne itself, as in a normal round (engine/work/status_watch.py). Nothing in the body is
trusted beyond (table, sys_id): not the state, not the comment's text, not who owns the ticket.
So a duplicate event costs one more read, and a forged one (even with the secret) at most a read
of a ticket the bot already follows; one for a ticket not followed changes nothing. The answer is
the same either way, so the endpoint tells nobody which tickets are followed.

The shared secret (SIMPLEONE_WEBHOOK_SECRET) comes in the X-Supportbot-Secret header and is
compared in constant time before anything else is looked at. The body is small and bounded
before it is parsed (size, time to arrive, nesting). Refusals are logged at warning at most once a second,
with how many there were: a storm of forged requests does not flood the log.

    {"event": "ticket_changed" | "comment_added", "table": "<a flows ticket table>", "sys_id": "<digits>"}

Answers: 200 {"ok": true}; 400 with a short reason for any other body; 403 for a missing or
wrong secret; 413 for a body over MAX_BODY bytes; 408 for one that trickles in too slowly.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Callable

from aiohttp import web

from engine.flows.source import FlowSource
from engine.ports import TicketWatches
from engine.text_safety import loads_bounded

log = logging.getLogger(__name__)

EVENTS_PATH = "/simpleone/events"
SECRET_HEADER = "X-Supportbot-Secret"
EVENTS = frozenset({"ticket_changed", "comment_added"})
FIELDS = frozenset({"event", "table", "sys_id"})
MAX_BODY = 2048  # bytes; an event is under a hundred
MAX_DEPTH = 4  # the event is one flat object
BODY_TIMEOUT = 10.0  # seconds for the whole body to arrive
_SYS_ID = re.compile(r"[0-9]{1,32}")  # SimpleOne's are 18 digits; ASCII digits only
_TABLE = re.compile(r"[a-z][a-z0-9_]{0,79}")


class RefusalLog:
    """Refused requests, logged at warning at most once per `every` seconds with their count."""

    def __init__(self, every: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self.last = -float("inf")
        self.held = 0  # refusals since the last line

    def refused(self, reason: str, remote: str | None) -> None:
        self.held += 1
        now = self.clock()
        if now - self.last < self.every:
            return
        log.warning("SimpleOne event refused (%s) from %s%s", reason, remote or "?",
                    f"; {self.held} refused since the last such line (this one included)" if self.held > 1 else "")
        self.last = now
        self.held = 0


def parse_event(body: object, tables: tuple[str, ...]) -> tuple[str, str] | str:
    """(table, sys_id) of a well-formed event, or why it is not one (a short reason)."""
    if not isinstance(body, dict):
        return "not an event object"
    if set(body) != FIELDS:
        return "expected exactly the fields event, table and sys_id"
    event, table, sys_id = body["event"], body["table"], body["sys_id"]
    if not isinstance(event, str) or event not in EVENTS:
        return "event must be ticket_changed or comment_added"
    if not isinstance(table, str) or not _TABLE.fullmatch(table) or table not in tables:
        return "table is not one the bot files tickets in"
    if not isinstance(sys_id, str) or not _SYS_ID.fullmatch(sys_id):
        return "sys_id must be a string of digits"
    return table, sys_id


def add_events_route(app: web.Application, watches: TicketWatches, flows: FlowSource, *, secret: str,
                     path: str = EVENTS_PATH, body_timeout: float = BODY_TIMEOUT,
                     refusals: RefusalLog | None = None) -> None:
    """Serve SimpleOne's events at `path` on this app (before it is started)."""
    if len(secret) < 16:
        raise ValueError("the SimpleOne event secret must be at least 16 characters")
    secret_bytes = secret.encode()
    noted = refusals or RefusalLog()

    def refuse(request: web.Request, status: int, reason: str) -> web.Response:
        noted.refused(reason, request.remote)
        return web.json_response({"ok": False, "error": reason}, status=status)

    async def receive(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogatepass")
        # Constant time (no timing oracle), and first: a stranger's body is never parsed.
        if not hmac.compare_digest(given, secret_bytes):
            return refuse(request, 403, "wrong or missing secret")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return refuse(request, 413, "body too large")
        try:
            # request.read(): the app's own limit (client_max_size) holds a body without a length;
            # serve's connection guard has read it already (it is kept), within its own time limit.
            async with asyncio.timeout(body_timeout):
                raw = await request.read()
        except TimeoutError:
            return refuse(request, 408, "body too slow")
        except web.HTTPRequestEntityTooLarge:
            return refuse(request, 413, "body too large")
        if len(raw) > MAX_BODY:
            return refuse(request, 413, "body too large")
        try:
            body = loads_bounded(raw.decode("utf-8"), MAX_DEPTH)
        except (ValueError, UnicodeDecodeError):
            return refuse(request, 400, "not JSON")
        parsed = parse_event(body, flows.current.tickets.tables)
        if isinstance(parsed, str):
            return refuse(request, 400, parsed)
        table, sys_id = parsed
        try:
            followed = await watches.watch_poke(table, sys_id)
        except Exception as exc:  # the storage is down: SimpleOne may send again, polling catches up
            log.warning("SimpleOne event on %s %s not recorded: %s: %s", table, sys_id, type(exc).__name__, exc)
            return web.json_response({"ok": False, "error": "try again later"}, status=503)
        log.debug("SimpleOne event %s on %s %s: %s", body["event"], table, sys_id,
                  "poked" if followed else "not followed, nothing to do")
        return web.json_response({"ok": True})  # the same either way: it tells nothing

    app.router.add_post(path, receive)


__all__ = ["EVENTS_PATH", "SECRET_HEADER", "RefusalLog", "add_events_route", "parse_event"]
