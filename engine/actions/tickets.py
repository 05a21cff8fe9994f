"""Tickets in SimpleOne: create, list the user's own, open one, add a comment and files.

Ownership is always checked against SimpleOne with the caller bound in storage — never
taken from a button payload or from the session's copy of a list.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from engine.actions.context import ActionContext
from engine.actions.registry import Shape, action
from engine.ports import (
    Binding,
    SpooledFile,
    Ticket,
    TicketRef,
    TicketSystemError,
    TicketSystemRejected,
    TicketSystemUnavailable,
    Upload,
)

log = logging.getLogger(__name__)

TICKET_FIELDS = ("number", "subject", "status", "table", "sys_id", "created", "updated")
TICKET = Shape.record(*TICKET_FIELDS, "description", "files_failed")
TICKETS = Shape.list_of(*TICKET_FIELDS)
VALUE = Shape()


def _ticket_slot(ticket: Ticket, ctx: ActionContext) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ctx.flows.tickets.status_label(ticket.table, ticket.state),
        "table": ticket.table,
        "sys_id": ticket.sys_id,
        "created": ticket.created_at,
        "updated": ticket.updated_at,
    }


def _files(ctx: ActionContext, slot: str) -> list[SpooledFile]:
    value = ctx.slots.get(slot)
    if not isinstance(value, list):
        return []
    return [SpooledFile.from_slot(v) for v in value if isinstance(v, dict)]


async def _upload(ctx: ActionContext, table: str, sys_id: str, files: Sequence[SpooledFile]) -> bool:
    """Upload spooled files; True when all went through (then they leave the spool)."""
    if not files:
        return True
    spool = ctx.services.spool
    uploads = [Upload(f.name, f.mime, spool.path(f.id)) for f in files]
    try:
        await ctx.services.tickets.upload_files(table, sys_id, uploads)
    except (TicketSystemError, OSError) as exc:
        log.warning("upload of %d file(s) to %s/%s failed: %s", len(files), table, sys_id, exc)
        return False
    for f in files:
        await spool.discard(f.id)
    return True


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


DRAFT_SLOT = "_draft"


def draft_marker(ctx: ActionContext) -> str:
    """The marker written into the ticket, the same for every attempt at one draft.

    Derived from what is committed when the attempt starts (peer, session version, content),
    so an attempt cut short by a crash — its step never committed — is repeated with the same
    marker; kept in a slot once an attempt's step commits, so later attempts reuse it. An
    edited draft gets a new marker: it is a new ticket."""
    files = ctx.slots.get("files") if isinstance(ctx.slots.get("files"), list) else []
    content = json.dumps([ctx.slots.get("service"), ctx.slots.get("description"), files],
                         sort_keys=True, ensure_ascii=False)
    fingerprint = hashlib.sha256(content.encode()).hexdigest()[:16]
    previous = ctx.slots.get(DRAFT_SLOT)
    if isinstance(previous, dict) and previous.get("fp") == fingerprint and previous.get("id"):
        return f"[sb:{previous['id']}]"
    draft_id = hashlib.sha256(f"{ctx.peer}\0{ctx.version}\0{fingerprint}".encode()).hexdigest()[:12]
    ctx.slots[DRAFT_SLOT] = {"id": draft_id, "fp": fingerprint}
    return f"[sb:{draft_id}]"


async def _find_created(ctx: ActionContext, table: str, caller_id: str, marker: str) -> TicketRef | None:
    try:
        return await ctx.services.tickets.find_ticket_by_marker(table, caller_id, marker)
    except TicketSystemError as exc:
        log.warning("looking up ticket %s failed: %s", marker, exc)
        return None


@action("tickets.create",
        emits={"created", "unavailable", "rejected", "signed_out", "service_gone", "no_description"},
        writes={"ticket": TICKET})
async def create(ctx: ActionContext) -> str:
    """Create a ticket from the draft (slots service, description, files), exactly once."""
    binding = await ctx.services.storage.get_binding(ctx.peer)
    if binding is None:
        return "signed_out"
    service = ctx.slots.get("service")
    entry = ctx.flows.catalog.entry(str(service.get("id"))) if isinstance(service, dict) else None
    if entry is None or entry.mapping.table is None:
        return "service_gone"
    if not str(ctx.slots.get("description") or "").strip():
        return "no_description"
    settings = ctx.flows.tickets
    subject = " ".join(settings.subject.render(ctx.slots).split())
    if len(subject) > settings.subject_max_length:
        subject = subject[: settings.subject_max_length - 1] + "…"
    marker = draft_marker(ctx)
    table = entry.mapping.table
    fields = {
        **entry.mapping.record_fields(),
        "caller": binding.caller_id,
        "subject": subject,
        "description": f"{settings.description.render(ctx.slots).strip()}\n\n{marker}",
    }
    # Always look first: whether an earlier attempt got through cannot be known from here (it
    # may have died with its process). One read per ticket buys "created once".
    ref = await _find_created(ctx, table, binding.caller_id, marker)
    if ref is None:
        try:
            ref = await ctx.services.tickets.create_ticket(table, fields)
        except TicketSystemUnavailable as exc:
            # The write may have happened before the failure: look before saying it did not.
            ref = await _find_created(ctx, table, binding.caller_id, marker)
            if ref is None:
                log.warning("ticket creation failed, draft kept: %s", exc)
                return "unavailable"
        except TicketSystemRejected as exc:
            log.error("SimpleOne refused a ticket, draft kept: %s", exc)
            return "rejected"
    ctx.slots.pop(DRAFT_SLOT, None)
    uploaded = await _upload(ctx, ref.table, ref.sys_id, _files(ctx, "files"))
    ctx.slots["ticket"] = {
        "number": ref.number, "table": ref.table, "sys_id": ref.sys_id, "subject": subject,
        "files_failed": not uploaded,
    }
    log.info("ticket %s created for peer %s", ref.number, ctx.peer)
    return "created"


@action("tickets.list_mine", emits={"listed", "empty", "unavailable", "signed_out"},
        writes={"tickets": TICKETS, "tickets_more": VALUE})
async def list_mine(ctx: ActionContext) -> str:
    """The signed-in user's open tickets, newest first; tickets_more if the limit cut some off."""
    binding = await ctx.services.storage.get_binding(ctx.peer)
    if binding is None:
        return "signed_out"
    settings = ctx.flows.tickets
    try:
        found = await ctx.services.tickets.list_tickets(
            binding.caller_id, settings.tables, active_only=True, limit=settings.list_limit + 1)
    except TicketSystemError as exc:
        log.warning("listing tickets failed: %s", exc)
        return "unavailable"
    mine = [_ticket_slot(t, ctx) for t in found if t.caller_id == binding.caller_id]
    ctx.slots["tickets"] = mine[: settings.list_limit]
    ctx.slots["tickets_more"] = len(mine) > settings.list_limit
    return "listed" if mine else "empty"


@action("tickets.open", emits={"opened", "not_found", "unavailable", "signed_out"}, writes={"ticket": TICKET})
async def open_ticket(ctx: ActionContext) -> str:
    """Read the picked ticket afresh from SimpleOne, checking that it is the user's."""
    binding = await ctx.services.storage.get_binding(ctx.peer)
    if binding is None:
        return "signed_out"
    picked = ctx.slots.get("ticket")
    if not isinstance(picked, dict) or not picked.get("sys_id"):
        return "not_found"
    try:
        ticket = await _owned(ctx, binding, str(picked.get("table")), str(picked["sys_id"]))
    except TicketSystemError as exc:
        log.warning("reading a ticket failed: %s", exc)
        return "unavailable"
    if ticket is None:
        return "not_found"
    ctx.slots["ticket"] = {**_ticket_slot(ticket, ctx), "description": ticket.description}
    return "opened"


@action("tickets.add_comment", emits={"added", "nothing", "not_found", "unavailable", "signed_out", "partly"})
async def add_comment(ctx: ActionContext) -> str:
    """Add the text in slot `comment` and the files in `comment_files` to the open ticket."""
    binding = await ctx.services.storage.get_binding(ctx.peer)
    if binding is None:
        return "signed_out"
    text = str(ctx.slots.get("comment") or "").strip()
    files = _files(ctx, "comment_files")
    if not text and not files:
        return "nothing"
    picked = ctx.slots.get("ticket")
    if not isinstance(picked, dict) or not picked.get("sys_id"):
        return "not_found"
    settings = ctx.flows.tickets
    try:
        ticket = await _owned(ctx, binding, str(picked.get("table")), str(picked["sys_id"]))
        if ticket is None:
            return "not_found"
        if text:
            body = settings.comment.render(ctx.slots).strip() if settings.comment else text
            await ctx.services.tickets.add_comment(ticket.table, ticket.sys_id, settings.comment_field, body)
    except TicketSystemError as exc:
        log.warning("adding a comment failed, text kept: %s", exc)
        return "unavailable"
    if not await _upload(ctx, ticket.table, ticket.sys_id, files):
        # The text is in; keep the files so that the user can try them again.
        ctx.slots.pop("comment", None)
        return "partly"
    return "added"
