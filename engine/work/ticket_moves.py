"""Executor of the user's moves on a ticket (reopen, confirm, withdraw, rate): one PATCH of the
fields (a state, a rating) and the public comment that goes with them.

Exactly once, like the other ticket work: a PATCH of one record is applied whole or not at all,
so after an unclear failure (an answer lost) the next try looks before writing again: a move
that sets a state landed if the ticket is in that state; any move landed if the ticket's newest
public comments hold one with its text (a confirm's state may be refused and its comment written
alone).
"""

from __future__ import annotations

import logging
from typing import Any

from engine.actions.ticket_items import MOVE
from engine.ports import (
    OutboxItem,
    Ticket,
    TicketSystem,
    TicketSystemError,
    TicketSystemRejected,
    TicketSystemUnavailable,
    WatchedTicket,
)
from engine.work.outbox import Checkpoint, Executor, WorkDone, WorkFailed

log = logging.getLogger(__name__)

RECENT = 20  # newest public comments looked through for a comment-only move's text


def move_executors(tickets: TicketSystem) -> dict[str, Executor]:
    async def landed(ticket: Ticket, fields: dict[str, str], text: str) -> bool:
        if "state" in fields and ticket.state == fields["state"]:
            return True
        if not text:
            return False  # fields alone: writing them again changes nothing
        # The comment alone may have landed (a confirm whose state the instance refused). By
        # text: the bot's own entries cannot always be told by author (a static token).
        recent = await tickets.latest_comments(ticket.table, ticket.sys_id, limit=RECENT)
        return any(c.text.strip() == text.strip() for c in recent)

    async def move(item: OutboxItem, checkpoint: Checkpoint) -> WorkDone:
        p = item.payload
        table, sys_id, caller = str(p["table"]), str(p["sys_id"]), str(p["caller_id"])
        name, text = str(p.get("move") or ""), str(p.get("text") or "")
        fields: dict[str, str] = {str(k): str(v) for k, v in dict(p.get("fields") or {}).items()}
        result_vars: dict[str, Any] = dict(p.get("vars") or {})
        ticket = await tickets.get_ticket(table, sys_id)
        # Ownership is checked on every write, against SimpleOne, not the session's copy.
        if ticket is None or ticket.caller_id != caller:
            raise WorkFailed(f"ticket {p.get('number')} is gone or not the caller's",
                             {"event": "move_failed", "vars": result_vars, "notice": "move_failed"})
        applies_in = [str(s) for s in p.get("applies_in") or []]
        if item.progress.get("sent") and await landed(ticket, fields, text):
            log.info("%s of %s: an earlier try got through", name, ticket.number)
        elif (applies_in and ticket.state not in applies_in) or (p.get("active_only") and not ticket.active):
            # Moved on since the step (an earlier tap of the same button, an agent): nothing to do.
            log.info("%s of %s: no longer applies (state %s, active %s); not written", name, ticket.number,
                     ticket.state, ticket.active)
        else:
            if "state" in fields and ticket.state == fields["state"]:
                fields.pop("state")  # already there (an agent did it): the comment still goes
            if text:
                fields[str(p["field"])] = text
            item.progress["sent"] = True  # before the write: a crash in it is settled next try
            await checkpoint(item)
            try:
                await tickets.update_ticket(table, sys_id, fields)
            except TicketSystemRejected as exc:
                if "state" not in fields or name != "confirm":
                    raise WorkFailed(str(exc), {"event": "move_failed", "vars": result_vars,
                                                "notice": "move_failed"}) from exc
                # Not every instance lets a caller close a ticket: the comment says it instead.
                log.warning("confirm of %s: the state was refused (%s); writing the comment alone",
                            ticket.number, exc)
                fields.pop("state")
                await tickets.update_ticket(table, sys_id, fields)
            except TicketSystemUnavailable as exc:
                if not exc.maybe_done:  # it never reached SimpleOne: simply try again
                    item.progress.pop("sent", None)
                    await checkpoint(item)
                raise
        # The ticket as the move left it: the change the user made is not told back to them.
        try:
            after = await tickets.get_ticket(table, sys_id) or ticket
        except TicketSystemError as exc:
            log.info("%s of %s: not read back (%s); its state change may be told", name, ticket.number, exc)
            after = ticket
        return WorkDone({"event": "moved", "vars": result_vars, "notice": None},
                        watch=[WatchedTicket(table, sys_id, after.number, item.peer, after.state,
                                             after.updated_at, after.active)])

    return {MOVE: move}
