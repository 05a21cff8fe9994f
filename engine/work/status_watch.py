"""Status-change notices: tell users when a ticket they follow changes state in SimpleOne.

SimpleOne has no outbound webhooks (see ../shared/reference/simpleone-api.md, "What the API does
not give"), so the bot polls. Every `interval` seconds one round walks the followed tickets
(Storage.watch_*: the tickets the bot created, or that bound users commented on) in pages
ordered by (table, sys_id), reads each page's tickets with one `get_tickets` call per table, and
compares them with what was last seen:

- same sys_updated_at (and state known): nothing to do;
- stored state "" (the bot created the ticket and never saw it): record, no notice;
- another state: a notice (text from flows: bot.notices.status_changed; the state's label is
  SimpleOne's own (TicketSystem.state_labels, cached by the adapter) unless the flows'
  status_labels override it, with status_fallback where SimpleOne gives none), then record;
- updated without a state change (a comment, a reassignment): record, no notice.

Once-only across crashes and restarts: what was seen on a page and the notices it caused are
written by one Storage.watch_update call, in one transaction. A crash before it leaves the old
values stored, so the next round sees the same change again and makes a notice with the same id
(table, sys_id, sys_updated_at, state), which storage ignores if it already holds it.

Forgetting: a closed (inactive) ticket is dropped once its sys_updated_at (UTC, as SimpleOne
writes it: when it was closed or last touched) is older than `forget_closed_after`; using the
ticket's own time needs nothing more stored. A ticket SimpleOne no longer returns (deleted, or
no longer visible to the bot) is dropped in the round that finds it missing, but only when the
call answered (a failed call leaves every ticket it asked for as it was) and a read of that one
ticket confirms it is gone: a bulk query answered wrongly must not forget everything at once.

A SimpleOne outage (TicketSystemUnavailable) ends the round where it is, logged once at warning;
the pages already done stay done and the next round starts over. A refusal (TicketSystemRejected)
skips that table's tickets on the page and the round goes on; the refusals are logged once per
round, at warning, too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from engine.flows.model import FlowSet
from engine.flows.source import FlowSource
from engine.ports import (
    Bindings,
    Locks,
    Notice,
    Ticket,
    TicketSystem,
    TicketSystemError,
    TicketSystemUnavailable,
    TicketWatches,
    WatchedTicket,
)
from engine.ticket_time import parse_updated_at
from engine.work.leases import JobLease

log = logging.getLogger(__name__)

NOTICE = "status_changed"  # the bot.notices template that tells a state change


class WatchStorage(TicketWatches, Bindings, Locks, Protocol):
    """What the watcher stores: the followed tickets; reads: who is signed in where; and its lease."""


def notice_id(ticket: WatchedTicket) -> str:
    """One id per change (the new sys_updated_at and state): the same change is never told twice."""
    return f"status:{ticket.table}:{ticket.sys_id}:{ticket.updated_at}:{ticket.state}"


class StatusWatcher:
    """Polls SimpleOne for state changes of followed tickets and stores notices for them."""

    def __init__(self, storage: WatchStorage, tickets: TicketSystem, flows: FlowSource, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.time, page: int = 500,
                 forget_closed_after: float = 7 * 86400, lease: JobLease | None = None) -> None:
        if interval <= 0 or page < 1:
            raise ValueError("the status watcher needs interval > 0 and page >= 1")
        self.storage = storage
        self.tickets = tickets
        self.flows = flows
        self.interval = interval
        self.clock = clock
        self.page = page
        self.forget_closed_after = forget_closed_after
        # Several workers on one database: one polls at a time (a round may outlast an interval,
        # so the lease covers a few; a holder that dies is replaced after that).
        self.lease = lease if lease is not None else JobLease(storage, "status_watch", ttl=3 * interval + 30)
        self.rounds = 0  # rounds finished or stopped by SimpleOne, for tests and health checks
        self.last_error: str | None = None  # SimpleOne's complaint in the last round, if any

    async def run(self) -> None:
        """One round per interval until cancelled; a failed round is logged and tried again."""
        try:
            while True:
                started = time.monotonic()
                try:
                    made = await self.run_once() if await self.lease.hold() else 0
                    if made:
                        log.info("status watch: %d notice(s) made", made)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("status watch round failed; trying again next round")
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            await self.lease.release()

    async def run_once(self) -> int:
        """One pass over every followed ticket; returns the notices made."""
        flows = self.flows.current  # read once: a reload mid-round must not mix texts
        made = 0
        rejected: list[str] = []
        self.last_error = None
        after = ("", "")
        try:
            while True:
                rows = await self.storage.watch_list(after, limit=self.page)
                if not rows:
                    break
                made += await self._check_page(rows, flows, rejected)
                if len(rows) < self.page:
                    break
                after = (rows[-1].table, rows[-1].sys_id)
        except TicketSystemUnavailable as exc:
            # SimpleOne is down: later pages would only wait for the same timeouts.
            self.last_error = str(exc) or type(exc).__name__
            log.warning("status watch: SimpleOne unavailable, round stopped (%d notice(s) made): %s",
                        made, self.last_error)
        else:
            if rejected:
                self.last_error = rejected[0]
                log.warning("status watch: %d ticket read(s) failed or untrusted, those tickets wait: %s",
                            len(rejected), rejected[0])
        self.rounds += 1
        return made

    async def _check_page(self, rows: Sequence[WatchedTicket], flows: FlowSet, rejected: list[str]) -> int:
        by_table: dict[str, list[WatchedTicket]] = {}
        for row in rows:
            by_table.setdefault(row.table, []).append(row)
        now = self.clock()
        seen: list[WatchedTicket] = []
        notices: list[Notice] = []
        drop: list[tuple[str, str]] = []
        for table, watched in by_table.items():
            try:
                found, gone = await self._read(table, watched, rejected)
            except TicketSystemUnavailable:
                raise
            except TicketSystemError as exc:
                rejected.append(f"{table}: {exc}")
                continue  # an answer we did not get says nothing about these tickets
            for w in watched:
                if w.sys_id in gone:
                    log.info("status watch: %s %s (%s) is gone from SimpleOne; no longer followed",
                             table, w.sys_id, w.number)
                    drop.append((table, w.sys_id))
                    continue
                ticket = found.get(w.sys_id)
                if ticket is None:
                    continue  # not confirmed either way: next round
                new, notice = await self._compare(w, ticket, flows, now)
                if notice is not None:
                    owner = await self._owner(w, ticket)
                    if owner is False:
                        # The chat is bound to someone else now: not theirs to hear, ever.
                        log.info("status watch: %s %s no longer belongs to %s; no longer followed", table,
                                 w.number, w.peer)
                        drop.append((table, w.sys_id))
                        continue
                    if owner is None:
                        notice = None  # signed out: seen, not told; told again once signed back in
                if new is not None:
                    seen.append(new)
                if notice is not None:
                    notices.append(notice)
                latest = new if new is not None else w
                if not latest.active and self._closed_long_ago(latest, now):
                    drop.append((table, w.sys_id))
        if seen or notices:
            await self.storage.watch_update(seen, notices)  # a change and its notice, at once
        if drop:
            # After the update: a crash in between drops nothing a notice was owed for.
            await self.storage.watch_drop(drop)
        return len(notices)

    async def _read(self, table: str, watched: Sequence[WatchedTicket],
                    rejected: list[str]) -> tuple[dict[str, Ticket], set[str]]:
        """The tickets as they are now, and the ids confirmed gone.

        A ticket missing from the bulk answer is read on its own before it is forgotten: a bulk
        query SimpleOne reads differently than we meant (or a visibility rule) would otherwise
        look like every ticket deleted at once. If the single read finds it, the bulk answer is
        not trusted for the rest of this table's page: they wait for the next round.
        """
        found = {t.sys_id: t for t in await self.tickets.get_tickets(table, [w.sys_id for w in watched])}
        gone: set[str] = set()
        for w in watched:
            if w.sys_id in found:
                continue
            try:
                direct = await self.tickets.get_ticket(table, w.sys_id)
            except TicketSystemUnavailable:
                raise
            except TicketSystemError as exc:
                rejected.append(f"{table} {w.sys_id}: {exc}")
                break
            if direct is None:
                gone.add(w.sys_id)
                continue
            found[w.sys_id] = direct
            rejected.append(f"{table}: the bulk read left out {w.sys_id}, which exists; not trusting it this round")
            break
        return found, gone

    async def _owner(self, watched: WatchedTicket, ticket: Ticket) -> bool | None:
        """Whether the chat is signed in as the ticket's caller; None when nobody is signed in."""
        binding = await self.storage.get_binding(watched.peer)
        if binding is None:
            return None
        return binding.caller_id == ticket.caller_id

    async def _compare(self, old: WatchedTicket, ticket: Ticket, flows: FlowSet,
                       now: float) -> tuple[WatchedTicket | None, Notice | None]:
        """What to record of this ticket (None: nothing new) and the notice it causes."""
        new = replace(
            old,
            number=ticket.number or old.number,
            # A reply without the state says nothing about it: keep what we knew.
            state=ticket.state or old.state,
            updated_at=ticket.updated_at,
            active=ticket.active,
        )
        if new == old:
            return None, None
        if not old.state or new.state == old.state:
            return new, None  # first sight, or touched without a state change
        values: dict[str, Any] = {"ticket": {
            "number": new.number,
            "subject": ticket.subject,
            "status": flows.tickets.status_label(new.table, new.state, await self._system_label(new.table, new.state)),
            "table": new.table,
            "sys_id": new.sys_id,
        }}
        text = flows.bot.notices[NOTICE].render(values)
        return new, Notice(notice_id(new), new.peer, text, now)

    async def _system_label(self, table: str, code: str) -> str:
        """SimpleOne's own label of a state (cached by the adapter), "" when it gives none."""
        try:
            labels = await self.tickets.state_labels(table)
        except TicketSystemError as exc:  # the port says it does not raise; a label is not worth a round
            log.warning("status watch: state labels of %s: %s", table, exc)
            return ""
        return labels.get(code, "")

    def _closed_long_ago(self, ticket: WatchedTicket, now: float) -> bool:
        updated = parse_updated_at(ticket.updated_at)
        # An unreadable time would keep a closed ticket forever: let it go instead.
        return updated is None or now - updated >= self.forget_closed_after


__all__ = ["NOTICE", "StatusWatcher", "notice_id", "parse_updated_at"]
