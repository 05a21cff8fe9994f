"""Ticket notices: tell users when a ticket they follow changes state in SimpleOne, and relay
the agents' public comments on it.

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

Comments share the round: per table and page, the journal is read with one `journal_since`
query for the tickets whose cursor (WatchedTicket.comment_after) is known, from the lowest of
them; then one for tickets the bot just created ("": everything is news) or just started to
follow (None: their earlier comments are not news, only the cursor is set). SimpleOne gives
journal entries ids in time order (its own feed reads `sys_id>LAST`), so after a complete read
every ticket of the query is known up to the highest entry returned, and all their cursors move
there: a quiet ticket does not keep the query reading from far back. The fresh tickets' query
runs second, so whatever the first one passed over existed when the second one looked.

An agent's comment (Comment.by_bot false; work notes never come: the port reads public entries
only) is told once, with buttons to answer and to open the ticket (bot.notice_buttons), at most
MAX_COMMENTS per ticket and round (a notice before them says how many earlier ones are only in
the ticket). A state in simpleone.waiting_states is told with the agent's last comment and the
button to answer; one in finished_states asks whether the problem is solved. Telling an agent's
message marks the ticket asked (WatchedTicket.asked_at): what the user types next is offered as
the answer to it.

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

Push, where an instance's admin added the business rule (README; POST /simpleone/events): an
event only marks a followed ticket poked (Storage.watch_poke). Between rounds the lease holder
asks for poked tickets about once a second (watch_poked, an indexed read) and runs the same page
check over just those at once (run_poked); its watch_update clears the pokes made at or before
that round began, so one made during it (a change after the read) gets a round of its own. The
event's body is never read for content: what is told comes from SimpleOne, as in a normal round.
Polling stays the guarantee: a lost or refused event only means the change waits for its round.
A poked round that SimpleOne fails or refuses clears its pokes too (no retry every second
against an outage): the next normal round takes those tickets up.

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
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from engine.flows.model import FlowSet
from engine.flows.source import FlowSource
from engine.ports import (
    Bindings,
    Comment,
    Journal,
    Locks,
    Notice,
    Ticket,
    TicketSystem,
    TicketSystemError,
    TicketSystemUnavailable,
    TicketWatches,
    WatchedTicket,
    author_names,
    journal_order,
)
from engine.replies import Button
from engine.ticket_time import local_time, parse_updated_at
from engine.work.leases import JobLease

log = logging.getLogger(__name__)

NOTICE = "status_changed"  # the bot.notices template that tells a state change
COMMENT_NOTICE = "agent_comment"
SKIPPED_NOTICE = "comments_skipped"  # how many agent comments of a round were not told one by one
IMAGE_MESSAGE = "agent_image"  # bot.messages: said for an agent's comment of pictures alone
WAITING_NOTICE = "status_waiting"
RESOLVED_NOTICE = "status_resolved"
MAX_COMMENTS = 5  # agent comments told one by one per ticket and round; older ones are counted
JOURNAL_LIMIT = 200  # entries per journal query; a round that gets this many goes on next round
FRESH_PAGES = 50  # journal pages read at most for tickets seen for the first time
POKE_EVERY = 1.0  # seconds between looks for poked tickets (push) while waiting for the next round


class WatchStorage(TicketWatches, Bindings, Locks, Protocol):
    """What the watcher stores: the followed tickets; reads: who is signed in where; and its lease."""


def notice_id(ticket: WatchedTicket) -> str:
    """One id per change (the new sys_updated_at and state): the same change is never told twice."""
    return f"status:{ticket.table}:{ticket.sys_id}:{ticket.updated_at}:{ticket.state}"


def comment_text(flows: FlowSet, comment: Comment) -> str:
    """What the user reads of a comment: its text, or for one of pictures alone the flows' word
    that there is one to look at in the ticket."""
    if comment.text or not comment.image_only:
        return comment.text
    template = flows.bot.messages.get(IMAGE_MESSAGE)
    return template.render({}) if template is not None else ""


def comment_notice_id(table: str, sys_id: str, comment: Comment) -> str:
    """One id per journal entry: an agent's comment is never told twice."""
    return f"comment:{table}:{sys_id}:{comment.sys_id}"


def _later(a: str | None, b: str | None) -> str | None:
    """The later of two journal cursors (None and "" are before every entry)."""
    if not a:
        return b if b else a
    if not b:
        return a
    return a if journal_order(a) >= journal_order(b) else b


@dataclass(slots=True)
class _News:
    """What the journal says of one table's tickets on a page: new comments per ticket, and
    where each ticket's cursor moves to."""

    comments: dict[str, list[Comment]] = field(default_factory=dict)
    cursors: dict[str, str | None] = field(default_factory=dict)
    quiet: set[str] = field(default_factory=set)  # first sight: the cursor moves, nothing is told


class StatusWatcher:
    """Polls SimpleOne for state changes of followed tickets and stores notices for them."""

    def __init__(self, storage: WatchStorage, tickets: TicketSystem, flows: FlowSource, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.time, page: int = 500,
                 forget_closed_after: float = 7 * 86400, lease: JobLease | None = None,
                 comments: bool = True, poke_every: float = POKE_EVERY) -> None:
        if interval <= 0 or page < 1 or poke_every <= 0:
            raise ValueError("the status watcher needs interval > 0, page >= 1 and poke_every > 0")
        self.storage = storage
        self.tickets = tickets
        self.flows = flows
        self.interval = interval
        self.clock = clock
        self.page = page
        self.forget_closed_after = forget_closed_after
        self.comments = comments  # read the journals for agents' comments too (COMMENT_POLL_SECONDS)
        # Several workers on one database: one polls at a time (a round may outlast an interval,
        # so the lease covers a few; a holder that dies is replaced after that).
        self.lease = lease if lease is not None else JobLease(storage, "status_watch", ttl=3 * interval + 30)
        self.poke_every = poke_every
        self.rounds = 0  # rounds finished or stopped by SimpleOne, for tests and health checks
        self.poked_rounds = 0  # rounds over poked tickets only (push), likewise
        self._poke_failing = False  # a failing look for pokes is logged once, not every second
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
                await self._until(started + self.interval)
        finally:
            await self.lease.release()

    async def _until(self, deadline: float) -> None:
        """Wait for the next round (time.monotonic() `deadline`), running a round over the
        poked tickets as soon as there are any: about once a second, the lease holder only (any
        worker's endpoint pokes in the shared storage; the holder sees it there)."""
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(self.poke_every, left))
            if not self.lease.held or time.monotonic() >= deadline:
                continue  # not ours; or the normal round is due, and it looks at everything
            try:
                made = await self.run_poked()
                if made:
                    log.info("status watch: %d notice(s) made on push", made)
                self._poke_failing = False
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self._poke_failing:
                    log.exception("status watch: looking at poked tickets failed; the normal round still runs")
                self._poke_failing = True

    async def run_poked(self) -> int:
        """One round over the poked tickets only (push); returns the notices made. Their pokes are
        cleared whatever SimpleOne answers: polling is the guarantee, a poke only hurries it."""
        started = time.time()  # watch_poke's clock; before the read, so every poke cleared was read after
        rows = await self.storage.watch_poked(limit=self.page)
        if not rows:
            return 0
        flows = self.flows.current
        rejected: list[str] = []
        try:
            made = await self._check_page(rows, flows, rejected, started=started)
        except TicketSystemUnavailable as exc:
            log.warning("status watch: SimpleOne unavailable for %d poked ticket(s); they wait for the next "
                        "round: %s", len(rows), str(exc) or type(exc).__name__)
            await self.storage.watch_update([], [], started=started, checked=[(w.table, w.sys_id) for w in rows])
            made = 0
        else:
            if rejected:
                log.warning("status watch: %d read(s) of poked tickets failed or untrusted, those tickets wait "
                            "for the next round: %s", len(rejected), rejected[0])
        self.poked_rounds += 1
        return made

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

    async def _check_page(self, rows: Sequence[WatchedTicket], flows: FlowSet, rejected: list[str], *,
                          started: float | None = None) -> int:
        """Look at these tickets and record what is new. With `started` (a round over poked tickets),
        the pokes made before it are cleared on every one of them, looked at or refused."""
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
            news = (await self._news(table, [w for w in watched if w.sys_id in found], flows.tickets.journal,
                                     rejected) if self.comments else _News())
            for w in watched:
                if w.sys_id in gone:
                    log.info("status watch: %s %s (%s) is gone from SimpleOne; no longer followed",
                             table, w.sys_id, w.number)
                    drop.append((table, w.sys_id))
                    continue
                ticket = found.get(w.sys_id)
                if ticket is None:
                    continue  # not confirmed either way: next round
                caller = await self._caller_names(w.peer) if news.comments.get(w.sys_id) else frozenset()
                new, told = await self._compare(w, ticket, news, flows, now, caller)
                if told:
                    owner = await self._owner(w, ticket)
                    if owner is False:
                        # The chat is bound to someone else now: not theirs to hear, ever.
                        log.info("status watch: %s %s no longer belongs to %s; no longer followed", table,
                                 w.number, w.peer)
                        drop.append((table, w.sys_id))
                        continue
                    if owner is None:
                        # Signed out: seen, not told (a state change is told again once signed
                        # back in and it changes again; comments stay in the ticket).
                        told = []
                        if new is not None:
                            new = replace(new, asked_at=w.asked_at)
                if new is not None:
                    seen.append(new)
                notices.extend(told)
                latest = new if new is not None else w
                if not latest.active and self._closed_long_ago(latest, now):
                    drop.append((table, w.sys_id))
        checked = [(w.table, w.sys_id) for w in rows] if started is not None else []
        if seen or notices or checked:
            # A change and its notice, at once (and the pokes this round answered).
            await self.storage.watch_update(seen, notices, started=started, checked=checked)
        if drop:
            # After the update: a crash in between drops nothing a notice was owed for.
            await self.storage.watch_drop(drop)
        return len(notices)

    async def _news(self, table: str, watched: Sequence[WatchedTicket], journal: Journal,
                    rejected: list[str]) -> _News:
        """New public comments of these tickets, and their cursors after this read (see the
        module's docstring). A refused journal read leaves the cursors as they were."""
        news = _News()
        known = [w for w in watched if w.comment_after]
        fresh = [w for w in watched if not w.comment_after]
        horizon: str | None = None  # how far the known tickets' query read, complete
        fresh_horizon: str | None = None  # how far the fresh tickets' query read, complete
        try:
            if known:
                after = min((w.comment_after or "" for w in known), key=journal_order)
                horizon, _ = await self._journal(table, known, after, journal, news)
            if fresh:
                # Read to the end (bounded): a history must not come back as news next round.
                cursor: str | None = None
                for _ in range(FRESH_PAGES):
                    reached, full = await self._journal(table, fresh, cursor, journal, news)
                    fresh_horizon = _later(fresh_horizon, reached)
                    if not full or reached == cursor:
                        break
                    cursor = reached
        except TicketSystemUnavailable:
            raise
        except TicketSystemError as exc:
            rejected.append(f"{table} journal: {exc}")
            return _News()
        # Each query vouches only for the tickets it asked about: a known ticket moves to where its
        # own (perhaps full) query stopped, never past it. A fresh ticket may also move to the
        # known query's mark: its query ran later and read all its entries, those below included.
        for w in known:
            news.cursors[w.sys_id] = _later(w.comment_after, horizon)
        for w in fresh:
            reached = _later(fresh_horizon, horizon)
            if reached is not None:
                news.cursors[w.sys_id] = _later(w.comment_after, reached)
        news.quiet.update(w.sys_id for w in fresh if w.comment_after is None)
        for w in fresh:
            if w.comment_after is None and w.sys_id not in news.cursors:
                news.cursors[w.sys_id] = ""  # no entries yet: from now on, everything is news
        return news

    async def _journal(self, table: str, watched: Sequence[WatchedTicket], after: str | None, journal: Journal,
                       news: _News) -> tuple[str | None, bool]:
        """One journal query for these tickets from `after`: the highest entry it covers, and
        whether it was full (more may follow)."""
        cursors = {w.sys_id: w.comment_after for w in watched}
        entries = await self.tickets.journal_since(table, list(cursors), after=after, journal=journal,
                                                   limit=JOURNAL_LIMIT)
        horizon = after
        for c in entries:
            horizon = _later(horizon, c.sys_id)
            own = cursors.get(c.record_id, "-")
            if own == "-" or (own and journal_order(c.sys_id) <= journal_order(own)):
                continue  # not asked for, or told before
            news.comments.setdefault(c.record_id, []).append(c)
        return horizon, len(entries) >= JOURNAL_LIMIT

    async def _compare(self, old: WatchedTicket, ticket: Ticket, news: _News, flows: FlowSet,
                       now: float, caller: frozenset[str] = frozenset()) -> tuple[WatchedTicket | None, list[Notice]]:
        """What to record of this ticket (None: nothing new) and the notices it causes. caller:
        the names the user's own entries carry (written in SimpleOne's portal or by mail)."""
        new = replace(
            old,
            number=ticket.number or old.number,
            # A reply without the state says nothing about it: keep what we knew.
            state=ticket.state or old.state,
            updated_at=ticket.updated_at,
            active=ticket.active,
            comment_after=news.cursors.get(old.sys_id, old.comment_after),
        )
        comments = [] if old.sys_id in news.quiet else [
            c for c in news.comments.get(old.sys_id, []) if not c.by_bot and c.author.lower() not in caller]
        changed = bool(old.state) and new.state != old.state
        if changed and await self._own_change(new, flows.tickets.journal):
            changed = False  # the user's own reopen, confirm or withdraw: recorded, not told back
        if not comments and not changed:
            return (None if new == old else new), []
        values: dict[str, Any] = {"ticket": {
            "number": new.number,
            "subject": ticket.subject,
            "status": flows.tickets.status_label(new.table, new.state, await self._system_label(new.table, new.state)),
            "table": new.table,
            "sys_id": new.sys_id,
        }}
        notices: list[Notice] = []
        status: Notice | None = None
        if changed:
            name = (WAITING_NOTICE if new.state in flows.tickets.waiting_states
                    else RESOLVED_NOTICE if new.state in flows.tickets.finished_states else NOTICE)
            if name not in flows.bot.notices:
                name = NOTICE
            last: Comment | None = None
            if name != NOTICE:
                # The agent's last word goes with it: the question, or what was done.
                last = comments.pop() if comments else await self._last_agent_comment(new, flows.tickets.journal)
            status_values = {**values, "comment": self._comment_values(last, flows, 0)}
            status = self._notice(flows, name, notice_id(new), new, status_values, now)
            if name == WAITING_NOTICE:
                new = replace(new, asked_at=now)
        if comments and COMMENT_NOTICE in flows.bot.notices:
            shown = comments[-MAX_COMMENTS:]
            earlier = len(comments) - len(shown)
            if earlier:
                # Said once, before the ones shown: the rest are in the ticket, not lost.
                skipped = self._notice(flows, SKIPPED_NOTICE, "skipped:" + comment_notice_id(new.table, new.sys_id,
                                                                                            shown[0]),
                                       new, {**values, "comment": self._comment_values(None, flows, earlier)}, now)
                if skipped is not None:
                    notices.append(skipped)
                else:
                    log.warning("%d earlier agent comment(s) on %s not told one by one (no notice %r)", earlier,
                                new.number, SKIPPED_NOTICE)
            for c in shown:
                notice = self._notice(flows, COMMENT_NOTICE, comment_notice_id(new.table, new.sys_id, c), new,
                                      {**values, "comment": self._comment_values(c, flows, 0)}, now)
                if notice is not None:
                    notices.append(notice)
            new = replace(new, asked_at=now)
        elif comments:
            log.error("no notice %r in the flows: %d agent comment(s) on %s not told", COMMENT_NOTICE,
                      len(comments), new.number)
        if status is not None:
            notices.append(status)  # after the comments that led to it
        return new, notices

    def _notice(self, flows: FlowSet, name: str, nid: str, ticket: WatchedTicket, values: dict[str, Any],
                now: float) -> Notice | None:
        template = flows.bot.notices.get(name)
        if template is None:
            return None
        rows = flows.bot.notice_buttons.get(name, ())
        buttons = tuple(tuple(Button(b.label, b.event, color=b.color, number=ticket.number) for b in row)
                        for row in rows)
        return Notice(nid, ticket.peer, template.render_compact(values), now, buttons if ticket.number else ())

    @staticmethod
    def _comment_values(comment: Comment | None, flows: FlowSet, earlier: int) -> dict[str, Any]:
        if comment is None:
            return {"text": "", "date": "", "earlier": earlier}
        return {"text": comment_text(flows, comment), "date": local_time(comment.created_at, flows.tickets.time_zone),
                "earlier": earlier}

    async def _own_change(self, ticket: WatchedTicket, journal: Journal) -> bool:
        """Whether the bot itself made the ticket's latest state change (a move of the user's
        whose record in storage may not have caught up yet); a failed read says no."""
        try:
            return await self.tickets.state_changed_by_bot(ticket.table, ticket.sys_id, journal)
        except TicketSystemError as exc:
            log.warning("status watch: who changed the state of %s: %s", ticket.number, exc)
            return False

    async def _last_agent_comment(self, ticket: WatchedTicket, journal: Journal) -> Comment | None:
        """The ticket's latest public comment if an agent wrote it (one read; none if the user
        has written since, as their answer, or if the read fails)."""
        try:
            latest = await self.tickets.latest_comments(ticket.table, ticket.sys_id, journal=journal, limit=1)
        except TicketSystemError as exc:
            log.warning("status watch: last comment of %s: %s", ticket.number, exc)
            return None
        return latest[-1] if latest and not latest[-1].by_bot else None

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

    async def _caller_names(self, peer: str) -> frozenset[str]:
        """How SimpleOne names the signed-in user as an entry's author when it is surely them
        (engine.ports.author_names): their own comments written in the portal or by mail under
        that name are not an agent's message."""
        binding = await self.storage.get_binding(peer)
        return author_names(binding.email) if binding is not None else frozenset()

    async def _owner(self, watched: WatchedTicket, ticket: Ticket) -> bool | None:
        """Whether the chat is signed in as the ticket's caller; None when nobody is signed in."""
        binding = await self.storage.get_binding(watched.peer)
        if binding is None:
            return None
        return binding.caller_id == ticket.caller_id

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
