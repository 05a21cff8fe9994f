"""Two-way support: the user's answer to an agent, and their own moves on a ticket.

- tickets.asked: whether an agent's message was told to this chat lately and not answered
  since; a message the user then types is offered as the answer to it.
- tickets.take_as_answer: the text (and files) typed at the start become the comment draft.
- tickets.reopen / confirm / withdraw / rate: a change to the ticket (simpleone.moves: the state
  and the comment written with it), queued in the outbox with the step like every write; the
  worker checks ownership again and writes it once (engine/work/ticket_moves.py).
"""

from __future__ import annotations

import logging
from typing import Any

from engine.actions import ticket_items
from engine.actions.context import ActionContext
from engine.actions.registry import Shape, action
from engine.actions.tickets import ANSWERED, TICKET, _new_item, _ticket_slot, mark_answered, picked_ticket, state_labels
from engine.flows.model import TicketMove
from engine.ports import Binding, Ticket

log = logging.getLogger(__name__)

ANSWER_WINDOW = 3 * 86400.0  # an agent's message this recent is what a typed message may answer
VALUE = Shape()


@action("tickets.asked", emits={"asked", "none"}, writes={"ticket": TICKET})
async def asked(ctx: ActionContext) -> str:
    """The ticket an agent's message was last told about to this chat (within ANSWER_WINDOW),
    if the user has not written to it since: into slot `ticket` (number, table, sys_id)."""
    binding = await ctx.sign_in.binding()
    if binding is None:
        return "none"
    now = ctx.services.clock()
    answered = ctx.slots.get(ANSWERED)
    answered = answered if isinstance(answered, dict) else {}
    for watched in await ctx.services.storage.watch_of_peer(ctx.peer):
        if not watched.asked_at or now - watched.asked_at > ANSWER_WINDOW:
            break  # newest first: the rest were asked even longer ago
        if watched.table not in ctx.flows.tickets.tables or not watched.active:
            continue
        if float(answered.get(watched.sys_id) or 0) >= watched.asked_at:
            continue
        ctx.slots["ticket"] = {"number": watched.number, "table": watched.table, "sys_id": watched.sys_id,
                               "subject": "", "status": ""}
        return "asked"
    return "none"


@action("tickets.take_as_answer", emits=set())
async def take_as_answer(ctx: ActionContext) -> str:
    """What the user typed at the start (slots description, files) becomes the comment draft;
    the state's next action goes on."""
    ctx.slots["comment"] = str(ctx.slots.pop("description", "") or "")
    files = ctx.slots.pop("files", None)
    if files:
        ctx.slots["comment_files"] = files
    return ""


async def _fresh(ctx: ActionContext, binding: Binding) -> Ticket | str:
    """The ticket in slot `ticket`, read afresh and checked to be the user's, its slot brought up
    to date; else an outcome."""
    ticket = await picked_ticket(ctx, binding)
    if not isinstance(ticket, str):
        ctx.slots["ticket"] = {**ctx.slots["ticket"],
                               **_ticket_slot(ticket, ctx, await state_labels(ctx, [ticket.table]))}
    return ticket


async def _queue(ctx: ActionContext, name: str, text: str) -> str:
    binding = await ctx.sign_in.binding()
    if binding is None:
        return "signed_out"
    ticket = await _fresh(ctx, binding)
    if isinstance(ticket, str):
        return ticket
    settings = ctx.flows.tickets
    if name != "rate" and not ticket.active:
        return "closed"
    if name in ("reopen", "confirm") and ticket.state not in settings.finished_states:
        return "not_finished"
    move = settings.moves.get(name) or TicketMove({}, None)
    rating = ctx.slots.get("rating")
    ticket_vars = {k: ctx.slots["ticket"].get(k, "") for k in ("number", "subject", "table", "sys_id", "status")}
    values: dict[str, Any] = {"ticket": ticket_vars, "text": text, "rating": rating if rating is not None else "",
                              "user": ctx.slots.get("user") or {}}
    comment = move.comment.render(values).strip() if move.comment else text
    fields: dict[str, str] = {}
    state = move.state_for(ticket.table)
    if state:
        fields["state"] = state
    if name == "rate" and move.field and rating is not None:
        fields[move.field] = str(rating)
    if not fields and not comment:
        return "nothing"
    # Where the move still makes sense when the worker gets to it: a second «Да, решена» tapped
    # before the first was written, or an agent's change meanwhile, must not write twice.
    applies = sorted(settings.finished_states) if name in ("reopen", "confirm") else []
    _new_item(ctx, ticket_items.MOVE, {
        "table": ticket.table, "sys_id": ticket.sys_id, "number": ticket.number, "caller_id": binding.caller_id,
        "move": name, "fields": fields, "field": settings.journal.public, "text": comment,
        "applies_in": applies, "active_only": name != "rate",
        "vars": {"ticket": ticket_vars}, "gave_up": "move_failed",
    }, record=ticket_items.record_of(ticket.table, ticket.sys_id))
    mark_answered(ctx, ticket.sys_id)
    log.info("%s of %s queued for peer %s", name, ticket.number, ctx.peer)
    return "queued"


MOVE_OUTCOMES = {"queued", "not_found", "unavailable", "signed_out", "closed", "nothing"}


@action("tickets.reopen", emits=MOVE_OUTCOMES | {"not_finished"}, writes={"ticket": TICKET})
async def reopen(ctx: ActionContext) -> str:
    """«Нет, не решена»: back to work (moves.reopen) with what is still wrong (slot `reason`)."""
    return await _queue(ctx, "reopen", str(ctx.slots.get("reason") or "").strip())


@action("tickets.confirm", emits=MOVE_OUTCOMES | {"not_finished"}, writes={"ticket": TICKET})
async def confirm(ctx: ActionContext) -> str:
    """«Да, решена»: the solution confirmed (moves.confirm: closed where the caller may close)."""
    return await _queue(ctx, "confirm", "")


@action("tickets.withdraw", emits=MOVE_OUTCOMES, writes={"ticket": TICKET})
async def withdraw(ctx: ActionContext) -> str:
    """«Отозвать заявку»: the user no longer needs it (moves.withdraw), with an optional reason."""
    return await _queue(ctx, "withdraw", str(ctx.slots.get("reason") or "").strip())


@action("tickets.rate", emits=MOVE_OUTCOMES, writes={"ticket": TICKET, "rating": VALUE})
async def rate(ctx: ActionContext) -> str:
    """The rating (slot `rating`, 1–5) and its optional comment (slot `reason`), on the ticket."""
    return await _queue(ctx, "rate", str(ctx.slots.get("reason") or "").strip())
