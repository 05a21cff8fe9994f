"""A ticket's conversation under its details: the newest public comments of both sides, a page
at a time going back, and the names of the files on the ticket.

Only public comments are ever read (TicketSystem.latest_comments); work notes never reach a user.
The ticket is checked against SimpleOne to be the user's, as on every read.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.actions.context import ActionContext
from engine.actions.registry import VALUE, Shape, action
from engine.actions.tickets import _owned
from engine.ports import Comment, TicketSystemError, author_names
from engine.ticket_time import local_time
from engine.work.status_watch import comment_text

log = logging.getLogger(__name__)

PAGE = 3  # comments shown at a time
TALK = Shape.list_of("date", "text", "mine")
WRITES = {
    "talk": TALK,  # this page's comments, oldest first (the newest last)
    "talk_more": VALUE,  # there are older ones: «Показать ещё»
    "talk_earlier": VALUE,  # this page is older than the newest one
    "talk_failed": VALUE,  # the journal could not be read
    "talk_before": VALUE,  # the oldest comment shown (its entry's sys_id): where the next page ends
    "ticket_files": Shape.list_of(),  # names of the files on the ticket (the newest page only)
}
EMITS = {"shown", "not_found", "signed_out"}


@action("tickets.conversation", emits=EMITS, writes=WRITES)
async def conversation(ctx: ActionContext) -> str:
    """The newest public comments of the ticket in slot `ticket`, and its files' names."""
    return await _show(ctx, earlier=False)


@action("tickets.conversation_earlier", emits=EMITS, writes=WRITES)
async def conversation_earlier(ctx: ActionContext) -> str:
    """The page of public comments before the oldest one shown (slot talk_before)."""
    return await _show(ctx, earlier=True)


async def _show(ctx: ActionContext, *, earlier: bool) -> str:
    before = str(ctx.slots.get("talk_before") or "") if earlier else ""
    for slot in WRITES:
        ctx.slots.pop(slot, None)
    binding = await ctx.sign_in.binding()
    if binding is None:
        return "signed_out"
    picked = ctx.slots.get("ticket")
    if not isinstance(picked, dict) or not picked.get("sys_id"):
        return "not_found"
    table, sys_id = str(picked.get("table")), str(picked["sys_id"])
    settings = ctx.flows.tickets
    tickets = ctx.services.tickets
    try:
        if await _owned(ctx, binding, table, sys_id) is None:
            return "not_found"
        # One more than a page: whether there are older ones is known without another read.
        comments = await tickets.latest_comments(table, sys_id, journal=settings.journal,
                                                 before=before or None, limit=PAGE + 1)
    except TicketSystemError as exc:
        log.warning("reading the conversation of %s failed: %s", picked.get("number"), exc)
        ctx.slots["talk_failed"] = True
        ctx.slots["talk_earlier"] = bool(before)
        if before:  # «Показать ещё» tries the same page again
            ctx.slots["talk_before"] = before
            ctx.slots["talk_more"] = True
        return "shown"
    shown = comments[-PAGE:]
    mine = author_names(binding.email)
    ctx.slots["talk"] = [item for c in shown if (item := _item(ctx, c, mine))]
    ctx.slots["talk_more"] = len(comments) > PAGE
    ctx.slots["talk_earlier"] = bool(before)
    if shown:
        ctx.slots["talk_before"] = shown[0].sys_id
    if not before:
        try:
            ctx.slots["ticket_files"] = await tickets.list_attachment_names(table, sys_id)
        except TicketSystemError as exc:  # the names are a detail: the rest is still shown
            log.warning("reading the files of %s failed: %s", picked.get("number"), exc)
    return "shown"


def _item(ctx: ActionContext, comment: Comment, mine: frozenset[str]) -> dict[str, Any] | None:
    """A comment as the details show it: the user's own (written through the bot, without the
    tail it adds, so that it reads as typed; or in the portal under their login: `mine`); None
    if nothing is left of it."""
    text = comment.text.strip()
    tail = ctx.flows.tickets.journal.bot_tail
    if comment.by_bot and tail and text.endswith(tail):
        text = text[: -len(tail)].strip()
    if not text:
        text = comment_text(ctx.flows, comment)
    if not text:
        return None
    return {"date": local_time(comment.created_at, ctx.flows.tickets.time_zone), "text": text,
            "mine": comment.by_bot or comment.author.lower() in mine}
