"""Tickets in SimpleOne: create, list the user's own, open one, add a comment and files.

Ownership is always checked against SimpleOne with the caller bound in storage — never
taken from a button payload or from the session's copy of a list.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from engine.actions import ticket_items
from engine.actions.context import ActionContext
from engine.actions.registry import Shape, action
from engine.flows.model import FlowSet
from engine.flows.text import normalize_text
from engine.ports import Binding, OutboxItem, SpooledFile, Ticket, TicketSystemError, WatchedTicket
from engine.ticket_time import local_time

log = logging.getLogger(__name__)

TICKET_FIELDS = ("number", "subject", "status", "table", "sys_id", "created", "updated", "active", "finished")
TICKET = Shape.record(*TICKET_FIELDS, "description", "files_failed", "outbox", "files")
TICKETS = Shape.list_of(*TICKET_FIELDS)
VALUE = Shape()
ANSWERED = "answered"  # slot: ticket sys_id → when the user last wrote to it from this chat


async def state_labels(ctx: ActionContext, tables: Iterable[str]) -> dict[str, Mapping[str, str]]:
    """The ticket system's own state labels of these tables (cached by the adapter; empty
    where it cannot say): what users read unless the flows override a code."""
    labels: dict[str, Mapping[str, str]] = {}
    for table in dict.fromkeys(tables):
        try:
            labels[table] = await ctx.services.tickets.state_labels(table)
        except TicketSystemError as exc:  # the port says it does not raise; a label is not worth a failure
            log.warning("state labels of %s: %s", table, exc)
            labels[table] = {}
    return labels


def _ticket_slot(ticket: Ticket, ctx: ActionContext, labels: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    system_label = labels.get(ticket.table, {}).get(ticket.state, "")
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ctx.flows.tickets.status_label(ticket.table, ticket.state, system_label),
        "table": ticket.table,
        "sys_id": ticket.sys_id,
        "created": local_time(ticket.created_at, ctx.flows.tickets.time_zone),
        "updated": local_time(ticket.updated_at, ctx.flows.tickets.time_zone),
        "active": ticket.active,
        # Done, awaiting the user's confirmation (simpleone.finished_states).
        "finished": ticket.active and ticket.state in ctx.flows.tickets.finished_states,
    }


def mark_answered(ctx: ActionContext, sys_id: str) -> None:
    """The user wrote to this ticket: an agent's earlier message on it is answered."""
    answered = ctx.slots.get(ANSWERED)
    answered = dict(answered) if isinstance(answered, dict) else {}
    answered[sys_id] = ctx.services.clock()
    # Only the latest few matter (messages older than ANSWER_WINDOW are never offered).
    ctx.slots[ANSWERED] = dict(sorted(answered.items(), key=lambda kv: kv[1])[-20:])


MAX_GREETING_WORDS = 3


def without_greeting(flows: FlowSet, text: str) -> str:
    """The text without the greetings it opens with ("Здравствуйте! Добрый день, …"): the words
    bot.commands take for `start`, with the punctuation after them; the rest starts with a
    capital. Text that is all greeting stays as it was."""
    rest, greeted = text.strip(), False
    for _ in range(3):  # "Добрый день, здравствуйте, …"
        words = rest.split()
        for n in range(min(MAX_GREETING_WORDS, len(words) - 1), 0, -1):
            if flows.typed_commands.get(normalize_text(" ".join(words[:n]))) == "start":
                rest, greeted = " ".join(words[n:]).lstrip(" ,.!?;:—–-"), True
                break
        else:
            break
    if not greeted or not rest:
        return text.strip()
    return rest[0].upper() + rest[1:]


def _files(ctx: ActionContext, slot: str) -> list[SpooledFile]:
    return ticket_items.spooled_files(ctx.slots.get(slot))


async def _owned(ctx: ActionContext, binding: Binding, table: str, sys_id: str) -> Ticket | None:
    if table not in ctx.flows.tickets.tables:
        return None
    ticket = await ctx.services.tickets.get_ticket(table, sys_id)
    if ticket is None:
        return None
    if ticket.caller_id != binding.caller_id:
        log.warning("peer %s asked for ticket %s of another caller", ctx.peer, ticket.number)
        return None
    return ticket


async def picked_ticket(ctx: ActionContext, binding: Binding) -> Ticket | str:
    """The ticket in slot `ticket`, read afresh from SimpleOne and checked to be the user's; or
    the outcome that says why not (not_found, unavailable)."""
    picked = ctx.slots.get("ticket")
    if not isinstance(picked, dict) or not picked.get("sys_id"):
        return "not_found"
    try:
        ticket = await _owned(ctx, binding, str(picked.get("table")), str(picked["sys_id"]))
    except TicketSystemError as exc:
        log.warning("reading a ticket failed: %s", exc)
        return "unavailable"
    return "not_found" if ticket is None else ticket


def _new_item(ctx: ActionContext, kind: str, payload: dict[str, Any], record: str | None = None) -> OutboxItem:
    now = ctx.services.clock()
    item = OutboxItem(id=secrets.token_hex(8), peer=ctx.peer, kind=kind, payload=payload, created_at=now,
                      next_at=now, updated_at=now, record=record)
    ctx.outbox.append(item)
    return item


def _take_files(ctx: ActionContext, slot: str) -> list[dict[str, Any]]:
    """The slot's files, handed to the outbox: the slot is emptied so that clearing it later
    does not delete files the outbox still has to upload."""
    files = [f.as_slot() for f in _files(ctx, slot)]
    ctx.slots.pop(slot, None)
    return files


@action("tickets.create",
        emits={"queued", "signed_out", "service_gone", "no_description"},
        writes={"ticket": TICKET}, settles={"created", "rejected"})
async def create(ctx: ActionContext) -> str:
    """Queue the draft (slots service, description, files) as a ticket for SimpleOne.

    The outbox item is committed with this step; the worker creates the ticket exactly once
    (engine/work/ticket_work.py). The step waiting for it fires `created` or `rejected` if SimpleOne
    answers within the wait; otherwise the number comes later as a notice."""
    binding = await ctx.sign_in.binding()
    if binding is None:
        return "signed_out"
    service = ctx.slots.get("service")
    entry = ctx.flows.catalog.entry(str(service.get("id"))) if isinstance(service, dict) else None
    if entry is None or entry.mapping.table is None:
        return "service_gone"
    if not str(ctx.slots.get("description") or "").strip():
        return "no_description"
    settings = ctx.flows.tickets
    # The subject is read in every list and notice: a greeting the problem began with says nothing.
    description = str(ctx.slots.get("description") or "")
    subject_values = {**ctx.slots, "description": without_greeting(ctx.flows, description)}
    subject = " ".join(settings.subject.render(subject_values).split())
    if len(subject) > settings.subject_max_length:
        subject = subject[: settings.subject_max_length - 1] + "…"
    fields = {
        **entry.mapping.record_fields(),
        "caller": binding.caller_id,
        "subject": subject,
        "description": settings.description.render(ctx.slots).strip(),
    }
    ticket = {"subject": subject, "number": "", "table": entry.mapping.table, "sys_id": ""}
    item = _new_item(ctx, ticket_items.CREATE, {
        "table": entry.mapping.table, "caller_id": binding.caller_id, "fields": fields,
        "files": _take_files(ctx, "files"), "vars": {"ticket": ticket}, "gave_up": "ticket_failed",
        "group": entry.group_id,  # counted by group when created (engine/figures.py)
    })
    ctx.slots["ticket"] = {**ticket, "outbox": item.id, "files_failed": False}
    log.info("ticket for peer %s queued as %s", ctx.peer, item.id)
    return "queued"


@action("tickets.list_mine", emits={"listed", "empty", "unavailable", "signed_out"},
        writes={"tickets": TICKETS, "tickets_more": VALUE, "tickets_open": VALUE, "tickets_finished": VALUE})
async def list_mine(ctx: ActionContext) -> str:
    """The signed-in user's active tickets: the open ones newest first, then those whose work is
    done (simpleone.finished_states), with how many of each; tickets_more if the limit cut some off."""
    binding = await ctx.sign_in.binding()
    if binding is None:
        return "signed_out"
    settings = ctx.flows.tickets
    try:
        found = await ctx.services.tickets.list_tickets(
            binding.caller_id, settings.tables, active_only=True, limit=settings.list_limit + 1)
    except TicketSystemError as exc:
        log.warning("listing tickets failed: %s", exc)
        return "unavailable"
    owned = [t for t in found if t.caller_id == binding.caller_id]
    # Tickets the user owns are followed for status notices (committed with the step),
    # wherever they were created.
    ctx.watch.extend(WatchedTicket(t.table, t.sys_id, t.number, ctx.peer, t.state, t.updated_at, t.active)
                     for t in owned if t.active)
    owned.sort(key=lambda t: t.state in settings.finished_states)  # stable: newest first within each
    labels = await state_labels(ctx, (t.table for t in owned))
    mine = [_ticket_slot(t, ctx, labels) for t in owned]
    ctx.slots["tickets"] = mine[: settings.list_limit]
    ctx.slots["tickets_more"] = len(mine) > settings.list_limit
    finished = sum(t.state in settings.finished_states for t in owned[: settings.list_limit])
    ctx.slots["tickets_open"] = len(ctx.slots["tickets"]) - finished
    ctx.slots["tickets_finished"] = finished
    return "listed" if mine else "empty"


CLOSED_DAYS = 90  # how far back «Закрытые заявки» reaches


@action("tickets.list_closed", emits={"listed", "empty", "unavailable", "signed_out"},
        writes={"closed_tickets": TICKETS, "closed_more": VALUE, "closed_days": VALUE})
async def list_closed(ctx: ActionContext) -> str:
    """The signed-in user's closed (inactive) tickets last updated within CLOSED_DAYS days,
    newest first (closed_days: how many days, for the texts); closed_more if the limit cut some off."""
    binding = await ctx.sign_in.binding()
    if binding is None:
        return "signed_out"
    settings = ctx.flows.tickets
    since = datetime.fromtimestamp(ctx.services.clock() - CLOSED_DAYS * 86400, UTC).strftime("%Y-%m-%d %H:%M:%S")
    ctx.slots["closed_days"] = CLOSED_DAYS
    try:
        found = await ctx.services.tickets.list_tickets(
            binding.caller_id, settings.tables, active_only=False, limit=settings.list_limit + 1, closed_since=since)
    except TicketSystemError as exc:
        log.warning("listing closed tickets failed: %s", exc)
        return "unavailable"
    owned = [t for t in found if t.caller_id == binding.caller_id and not t.active]
    labels = await state_labels(ctx, (t.table for t in owned))
    ctx.slots["closed_tickets"] = [_ticket_slot(t, ctx, labels) for t in owned[: settings.list_limit]]
    ctx.slots["closed_more"] = len(owned) > settings.list_limit
    return "listed" if owned else "empty"


MAX_BY_NUMBER = 500  # a user's tickets looked through for one typed number


@action("tickets.find_number", emits={"found", "not_found", "unavailable", "signed_out"}, writes={"ticket": TICKET})
async def find_number(ctx: ActionContext) -> str:
    """The user's own ticket whose number is in slot `number` (typed: INC0001234), open or not,
    into slot `ticket` for tickets.open; not_found for anyone else's or no such number."""
    binding = await ctx.sign_in.binding()
    if binding is None:
        return "signed_out"
    number = str(ctx.slots.get("number") or "").strip().upper()
    if not number:
        return "not_found"
    try:
        found = await ctx.services.tickets.list_tickets(binding.caller_id, ctx.flows.tickets.tables,
                                                         active_only=False, limit=MAX_BY_NUMBER)
    except TicketSystemError as exc:
        log.warning("looking up a ticket by number failed: %s", exc)
        return "unavailable"
    for ticket in found:
        if ticket.number.upper() == number and ticket.caller_id == binding.caller_id:
            ctx.slots["ticket"] = _ticket_slot(ticket, ctx, await state_labels(ctx, [ticket.table]))
            return "found"
    return "not_found"


@action("tickets.open", emits={"opened", "not_found", "unavailable", "signed_out"}, writes={"ticket": TICKET})
async def open_ticket(ctx: ActionContext) -> str:
    """Read the picked ticket afresh from SimpleOne, checking that it is the user's."""
    binding = await ctx.sign_in.binding()
    if binding is None:
        return "signed_out"
    ticket = await picked_ticket(ctx, binding)
    if isinstance(ticket, str):
        return ticket
    # The marker the outbox writes (to find a ticket it may have created already) is ours, not
    # the user's: it is not shown.
    labels = await state_labels(ctx, [ticket.table])
    ctx.slots["ticket"] = {**_ticket_slot(ticket, ctx, labels),
                           "description": ticket_items.without_marker(ticket.description)}
    return "opened"


@action("tickets.add_comment", emits={"queued", "nothing", "not_found", "signed_out"},
        settles={"added", "not_found"})
async def add_comment(ctx: ActionContext) -> str:
    """Queue the text in slot `comment` and the files in `comment_files` for the open ticket.

    The ticket was picked from the user's own list; the worker checks again, against SimpleOne,
    that it is theirs before it writes (engine/work/ticket_work.py)."""
    binding = await ctx.sign_in.binding()
    if binding is None:
        return "signed_out"
    text = str(ctx.slots.get("comment") or "").strip()
    if not text and not _files(ctx, "comment_files"):
        return "nothing"
    picked = ctx.slots.get("ticket")
    if not isinstance(picked, dict) or not picked.get("sys_id"):
        return "not_found"
    table = str(picked.get("table"))
    if table not in ctx.flows.tickets.tables:
        return "not_found"
    settings = ctx.flows.tickets
    body = ""
    if text:
        body = settings.comment.render(ctx.slots).strip() if settings.comment else text
    ticket = {k: picked.get(k, "") for k in ("number", "subject", "table", "sys_id", "status")}
    _new_item(ctx, ticket_items.COMMENT, {
        "table": table, "sys_id": str(picked["sys_id"]), "number": str(picked.get("number") or ""),
        "caller_id": binding.caller_id, "field": settings.comment_field, "text": body,
        "files": _take_files(ctx, "comment_files"), "vars": {"ticket": ticket}, "gave_up": "comment_failed",
    }, record=ticket_items.record_of(table, str(picked["sys_id"])))
    mark_answered(ctx, str(picked["sys_id"]))
    return "queued"
