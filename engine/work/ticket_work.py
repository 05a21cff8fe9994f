"""Executors of the outbox's ticket work: create a ticket, add a comment, attach files.

Each may be cut short at any point (a timeout, a dropped connection, a killed process) and run
again; none writes twice what got through:

- a ticket carries the marker `[sb:<item id>]` in its description and is looked up by it before
  every create, and again after an unclear failure;
- a file is marked as tried before its upload; a tried file is looked for on the record (name,
  size, attached since the ticket's last change before the files were queued) before it is sent
  again — see TicketSystem.find_attachments and the SimpleOne adapter for how and the limits;
  items queued by the previous release saved neither that time nor which files were tried: once
  tried, all their pending files are looked for, from a minute before the item was written;
- a comment's write is settled by the ticket's journal: the newest public entry is saved before
  the write, and after an unclear failure the comment counts as written only if an entry after
  that one has its text. A comment written to a field that is not the journal's public one
  cannot be read back: it is bracketed by the ticket's sys_updated_at instead, saved before the
  write, and a ticket unchanged since then did not get it (a change made by someone else in that
  window is taken for ours) — see docs/architecture.md, "The outbox".
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from engine import figures
from engine.actions.ticket_items import COMMENT, CREATE, UPLOAD, marker, record_of, spooled_files
from engine.ports import (
    Attachment,
    FileSpool,
    Journal,
    OutboxItem,
    SpooledFile,
    TicketRef,
    TicketSystem,
    TicketSystemRejected,
    TicketSystemUnavailable,
    Upload,
    WatchedTicket,
)
from engine.ticket_time import parse_updated_at
from engine.work.outbox import Checkpoint, Defer, Executor, WorkDone, WorkFailed

log = logging.getLogger(__name__)

SKEW_TOLERANCE = 5.0  # seconds SimpleOne's clock may run ahead of ours before we stop waiting for it
# Text fields of SimpleOne's ticket tables are commonly 4000 characters long.
DESCRIPTION_LIMIT = 4000
# How far before a legacy upload item's creation (our clock) its files are searched for: the item
# was written before any of its files was sent, but SimpleOne stamps attachments by its own clock,
# which may run behind ours; a minute covers the skew seen between hosts kept by NTP many times
# over, and widens the search only by files of the same name and size attached in that minute.
LEGACY_SINCE_MARGIN = 60.0
# Public journal entries read per request, and requests at most, while settling a comment's write.
JOURNAL_PAGE = 100
JOURNAL_PAGES = 10


def legacy_since(created_at: float) -> str:
    """Where the search for the files of an upload item queued by the previous release starts
    (it saved no `since`): its creation on our clock, less LEGACY_SINCE_MARGIN, as SimpleOne
    writes times ("YYYY-MM-DD HH:MM:SS", UTC)."""
    moment = datetime.fromtimestamp(max(created_at - LEGACY_SINCE_MARGIN, 0.0), UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")

def upload_item(parent: OutboxItem, ref: TicketRef, files: list[SpooledFile], now: float,
                vars_: dict[str, Any], since: str = "") -> OutboxItem:
    """since: the ticket's sys_updated_at as last read (SimpleOne's clock), before any of these
    files can have reached it: where a search for a file whose upload went unanswered starts."""
    return OutboxItem(
        id=f"{parent.id}.files", peer=parent.peer, kind=UPLOAD, created_at=now, next_at=now, updated_at=now,
        record=record_of(ref.table, ref.sys_id),
        payload={"table": ref.table, "sys_id": ref.sys_id, "number": ref.number, "since": since,
                 "files": [f.as_slot() for f in files], "gave_up": "files_failed",
                 # If it is given up, every file is named (the worker tells payload vars then).
                 "vars": {**vars_, "files": ", ".join(f.name for f in files)}},
    )


def ticket_executors(tickets: TicketSystem, spool: FileSpool, clock: Callable[[], float],
                     journal: Callable[[], Journal] = Journal) -> dict[str, Executor]:
    """journal: the flows' journal settings in force (simpleone.journal; a hot reload may change
    them), by which an unclear comment write is settled."""

    async def find(table: str, caller: str, mark: str) -> TicketRef | None:
        try:
            return await tickets.find_ticket_by_marker(table, caller, mark)
        except TicketSystemRejected as exc:
            raise TicketSystemUnavailable(f"looking up {mark} failed: {exc}") from exc

    async def create(item: OutboxItem, checkpoint: Checkpoint) -> WorkDone:
        p = item.payload
        table, caller = str(p["table"]), str(p["caller_id"])
        ticket_vars = dict(p.get("vars", {}).get("ticket") or {})
        mark = marker(item.id)
        # Look first if an earlier try may have got through and died before saying so. Every
        # try is counted in storage before it starts, so the first one knows it is the first.
        ref = await find(table, caller, mark) if item.attempts > 1 else None
        if ref is None:
            # The marker must survive: the text is cut, never the marker, if the field is full.
            text = str(p["fields"].get("description", ""))[: DESCRIPTION_LIMIT - len(mark) - 2]
            fields = {**p["fields"], "description": f"{text}\n\n{mark}".strip()}
            try:
                ref = await tickets.create_ticket(table, fields)
            except TicketSystemUnavailable as exc:
                # The write may have landed before the failure: look before trying again.
                ref = await find(table, caller, mark) if exc.maybe_done else None
                if ref is None:
                    raise
            except TicketSystemRejected as exc:
                raise WorkFailed(str(exc), {"event": "rejected", "vars": {"ticket": ticket_vars},
                                            "notice": "ticket_failed"}) from exc
        files = spooled_files(p.get("files"))
        ticket = {**ticket_vars, "number": ref.number, "table": ref.table, "sys_id": ref.sys_id,
                  "files": len(files)}
        now = clock()
        # For `supportbot stats`: by catalogue group ("" for items queued before it was kept), and
        # from «Отправить» (the item's creation) to the number, in the wait histogram.
        counts = [figures.labelled(figures.TICKET_CREATED, str(p.get("group") or "")),
                  figures.labelled(figures.TICKET_WAIT, figures.wait_bucket(now - item.created_at))]
        return WorkDone(
            {"event": "created", "vars": {"ticket": ticket}, "notice": "ticket_created"},
            follow_ups=[upload_item(item, ref, files, now, {"ticket": ticket}, ref.updated_at)] if files else [],
            # A ticket the bot created: everything on its journal is news to the user ("").
            watch=[WatchedTicket(ref.table, ref.sys_id, ref.number, item.peer, ref.state, ref.updated_at,
                                 comment_after="")],
            counts=counts,
        )

    async def upload(item: OutboxItem, checkpoint: Checkpoint) -> WorkDone:
        p = item.payload
        table, sys_id = str(p["table"]), str(p["sys_id"])
        done: list[str] = list(item.progress.get("done") or [])
        failed: list[str] = list(item.progress.get("failed") or [])
        # Files sent at least once (marked before the send), and what is known to be on the
        # ticket: files whose upload was answered 2xx, with the ids the answer gave, if any.
        tried: list[str] = list(item.progress.get("tried") or [])
        sure = [Attachment(str(a.get("name", "")), int(a.get("size", -1)), str(a.get("sys_id", "")),
                           str(a.get("document_id", ""))) for a in item.progress.get("sure") or []]
        files = spooled_files(p.get("files"))
        pending = [f for f in files if f.id not in done and f.id not in failed]
        since = str(p.get("since") or "")
        if "since" not in p:
            # Queued by the previous release, which kept no `tried` list and looked every file up
            # on the ticket before sending it again. Once tried, any pending file may have landed:
            # look for each before it is sent again, from a little before the item was written.
            since = legacy_since(item.created_at)
            if item.attempts > 1:
                tried.extend(f.id for f in pending if f.id not in tried)
                item.progress["tried"] = tried
        unclear = [f for f in pending if f.id in tried]
        landed: Counter[tuple[str, int]] = Counter()
        if unclear:
            # Did an unanswered upload land anyway? Never send a file twice. Identical files (name
            # and size) of this item already sent are looked for too, and counted out.
            keys = {(f.name, f.size) for f in unclear}
            twins = [f for f in files if f.id in done and (f.name, f.size) in keys]
            found = await tickets.find_attachments(
                table, sys_id, [Attachment(f.name, f.size) for f in unclear + twins],
                since=since, known=sure)
            landed.update((a.name, a.size) for a in found)
            landed.subtract((f.name, f.size) for f in twins)
            sure.extend(a for a in found if a.sys_id)  # found through the Document ID: surely there
        for f in pending:
            if f.id in tried and landed[(f.name, f.size)] > 0:
                landed[(f.name, f.size)] -= 1
                log.info("file %s for %s: an earlier upload got through", f.id, p.get("number"))
            else:
                if f.id not in tried:
                    tried.append(f.id)
                    item.progress["tried"] = tried
                    await checkpoint(item)
                try:
                    answered = await tickets.upload_files(table, sys_id, [Upload(f.name, f.mime, spool.path(f.id))])
                except TicketSystemRejected as exc:
                    # The file's id: its name is the user's words.
                    log.error("file %s refused for %s: %s", f.id, p.get("number"), exc)
                    failed.append(f.id)
                    item.progress["failed"] = failed
                    await checkpoint(item)
                    continue
                except TicketSystemUnavailable:
                    # Did it land anyway? Settled by find_attachments at the start of the next try.
                    raise
                sure.extend(answered or [Attachment(f.name, f.size)])
                item.progress["sure"] = [{"name": a.name, "size": a.size, "sys_id": a.sys_id,
                                          "document_id": a.document_id} for a in sure]
            done.append(f.id)
            item.progress["done"] = done
            await checkpoint(item)
            await spool.discard(f.id)
        names = [f.name for f in spooled_files(p.get("files")) if f.id in failed]
        for f in spooled_files(p.get("files")):
            if f.id in failed:
                await spool.discard(f.id)
        result_vars = {**p.get("vars", {}), "files": ", ".join(names)}
        return WorkDone({"event": "uploaded", "vars": result_vars, "notice": "files_failed" if names else None})

    async def newest_comment(table: str, sys_id: str, j: Journal) -> str | None:
        """The id of the ticket's newest public journal entry ("" if it has none), read before a
        write so that an unclear one is settled by what came after it; None if the journal
        cannot serve that (the account may not read it, or the ticket has more entries than
        are worth paging through), and the write is bracketed by sys_updated_at instead."""
        cursor: str | None = None
        try:
            for _ in range(JOURNAL_PAGES):
                page = await tickets.list_comments(table, sys_id, journal=j, after=cursor, limit=JOURNAL_PAGE)
                if page:
                    cursor = page[-1].sys_id
                if len(page) < JOURNAL_PAGE:
                    return cursor or ""
        except TicketSystemRejected as exc:
            log.warning("the journal of %s/%s cannot be read (%s): a comment's unclear write is settled by "
                        "the ticket's sys_updated_at", table, sys_id, exc)
            return None
        log.warning("%s/%s has over %d public comments: a comment's unclear write is settled by the "
                    "ticket's sys_updated_at", table, sys_id, JOURNAL_PAGES * JOURNAL_PAGE)
        return None

    async def comment_landed(table: str, sys_id: str, j: Journal, after: str, text: str) -> bool:
        """Whether a public journal entry after `after` ("" = any) is ours: our exact text
        (strip()ed, as journals keep it); the author cannot tell, an agent may have pasted it,
        but the text is what a duplicate would repeat."""
        cursor: str | None = after or None
        try:
            for _ in range(JOURNAL_PAGES):
                page = await tickets.list_comments(table, sys_id, journal=j, after=cursor, limit=JOURNAL_PAGE)
                for c in page:
                    if c.text.strip() == text.strip():
                        log.info("comment on %s/%s: an earlier write got through (entry %s, by %s%s)", table,
                                 sys_id, c.sys_id, c.author or "?", ", the bot" if c.by_bot else "")
                        return True
                if len(page) < JOURNAL_PAGE:
                    return False
                cursor = page[-1].sys_id
        except TicketSystemRejected as exc:
            # It was readable just before the write: a passing refusal, settled on the next try.
            raise TicketSystemUnavailable(f"reading the journal of {table}/{sys_id} failed: {exc}") from exc
        raise TicketSystemUnavailable(f"over {JOURNAL_PAGES * JOURNAL_PAGE} comments on {table}/{sys_id} "
                                      "since an unclear write; not settled")

    async def write_comment(item: OutboxItem, checkpoint: Checkpoint, updated_at: str, text: str) -> bool:
        """Write the comment unless an earlier, unclear write got through; True when it is in.

        Before the write the newest public journal entry is saved (`unclear_after`); after an
        unclear failure, now or on the next try, the comment counts as written only if an entry
        after that one has our text. A comment written to a field that is not the journal's
        public one cannot be read back: there the write is bracketed by the ticket's
        sys_updated_at (`unclear_since`), and a change by anyone in that window is taken for it."""
        p = item.payload
        table, sys_id, field = str(p["table"]), str(p["sys_id"]), str(p["field"])
        j = journal()
        progress = item.progress
        if "unclear_since" in progress:  # bracketed (or saved so by the previous release)
            if updated_at != progress["unclear_since"]:
                log.warning("comment %s: ticket %s changed since a write whose answer was lost; taken as "
                            "written", item.id, p.get("number"))
                return True
            progress.pop("unclear_since")
        if "unclear_after" in progress:
            if await comment_landed(table, sys_id, j, str(progress["unclear_after"]), text):
                return True
            progress.pop("unclear_after")
        newest = await newest_comment(table, sys_id, j) if field == j.public else None
        if newest is not None:
            progress["unclear_after"] = newest
        else:
            # sys_updated_at counts whole seconds: a write in the second of the ticket's last
            # change could not be told from no write. Wait for the next second (clocks a few
            # seconds apart only delay it; beyond that, go ahead).
            changed, now = parse_updated_at(updated_at), clock()
            if changed is not None and math.floor(now) <= changed < now + SKEW_TOLERANCE:
                raise Defer(max(changed, math.floor(now)) + 1.05, f"ticket {p.get('number')} changed this second")
            progress["unclear_since"] = updated_at
        # Saved before the write: a crash during it is settled by the next try, as above.
        await checkpoint(item)
        try:
            await tickets.add_comment(table, sys_id, field, text)
        except TicketSystemRejected as exc:
            raise WorkFailed(str(exc), {"event": "not_found", "vars": dict(p.get("vars") or {}),
                                        "notice": "comment_failed"}) from exc
        except TicketSystemUnavailable as exc:
            if exc.maybe_done:
                # Settle it now; if SimpleOne cannot be read either, the next try settles it.
                if newest is not None:
                    landed = await comment_landed(table, sys_id, j, newest, text)
                else:
                    after = await tickets.get_ticket(table, sys_id)
                    landed = after is not None and after.updated_at != updated_at
                    if landed:
                        log.warning("comment %s: the write's answer was lost but the ticket changed; taken "
                                    "as written", item.id)
                if landed:
                    return True
            progress.pop("unclear_since", None)
            progress.pop("unclear_after", None)
            await checkpoint(item)
            if not exc.maybe_done:  # it never reached SimpleOne: simply try again
                raise
            return False
        return True

    async def comment(item: OutboxItem, checkpoint: Checkpoint) -> WorkDone:
        p = item.payload
        table, sys_id, caller = str(p["table"]), str(p["sys_id"]), str(p["caller_id"])
        ticket_vars = dict(p.get("vars", {}).get("ticket") or {})
        failed = {"event": "not_found", "vars": {"ticket": ticket_vars}, "notice": "comment_failed"}
        ticket = await tickets.get_ticket(table, sys_id)
        # Ownership is checked on every write, against SimpleOne, not the session's copy.
        if ticket is None or ticket.caller_id != caller:
            raise WorkFailed(f"ticket {p.get('number')} is gone or not the caller's", failed)
        text = str(p.get("text") or "")
        if text and not item.progress.get("written"):
            if await write_comment(item, checkpoint, ticket.updated_at, text):
                item.progress["written"] = True
                item.progress.pop("unclear_since", None)
                item.progress.pop("unclear_after", None)
                await checkpoint(item)
            else:
                raise TicketSystemUnavailable(f"comment {item.id}: the write did not get through; trying again")
        files = spooled_files(p.get("files"))
        ref = TicketRef(table, sys_id, ticket.number)
        now = clock()
        return WorkDone(
            {"event": "added", "vars": {"ticket": ticket_vars}, "notice": "comment_added"},
            follow_ups=[upload_item(item, ref, files, now, {"ticket": ticket_vars}, ticket.updated_at)]
            if files else [],
            watch=[WatchedTicket(table, sys_id, ticket.number, item.peer, ticket.state, ticket.updated_at,
                                 ticket.active)],
        )

    return {CREATE: create, COMMENT: comment, UPLOAD: upload}

