"""The storage core that SQLite and PostgreSQL share: every Storage call written once, and the
group commit.

Calls are scripts: generators that yield statements (Query) and get each one's result back, so
one piece of logic runs in both drivers: SQLite runs a whole script on its worker thread in one
hop, PostgreSQL awaits each statement on one pooled connection. A backend supplies how a script
runs (`_script`) and how a batch of steps is written (`_write_batch`); Kind says what a call
does, for PostgreSQL's retry rule and SQLite's transactions.

Group commit: `commit_step` queues (row, future) and, if no write is in flight, starts a
flusher task; the flusher takes everything queued and writes it in one transaction, then
answers each caller. Steps that arrive meanwhile wait for the next round, so the batch grows
with the load. A future is resolved only after COMMIT returned, so no reply is sent for an
uncommitted step.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any, ClassVar, NamedTuple, TypeVar

from adapters.storage.rows import (
    OutcomeRows,
    SignInRows,
    StepRow,
    json_text,
    notice_of,
    notice_row,
    outbox_item,
    outcome_rows,
    step_row,
    watched_of,
)
from adapters.storage.rows import watch_row as _watch_row
from adapters.storage.sql import Sql
from engine.ports import (
    FORGET_KINDS,
    Binding,
    DayCount,
    Forgotten,
    InboxEvent,
    Notice,
    OutboxItem,
    OutboxOutcome,
    OutboxSummary,
    PendingCode,
    SendStats,
    Session,
    StepCommit,
    UnsentReplies,
    WatchedTicket,
)
from engine.ports.files import file_ids_within
from engine.work.leases import process_holder

T = TypeVar("T")


class Fetch(Enum):
    """What a statement gives back to its script."""

    ROWS = "rows"  # every row
    ROW = "row"  # the first row, or None
    VALUE = "value"  # the first column of the first row, or None
    CHANGED = "changed"  # how many rows it inserted, updated or deleted
    MANY = "many"  # run once per argument tuple (args is their list); None


class Query(NamedTuple):
    sql: str
    args: Sequence[Any]
    fetch: Fetch


# A call's logic: yields queries, receives each one's result, returns the call's answer.
Script = Generator[Query, Any, T]


class Kind(Enum):
    """What a call does: PostgreSQL retries it after a lost connection accordingly; SQLite wraps
    every kind but READ in one transaction."""

    READ = "read"  # retried after any lost connection
    PUT = "put"  # a write that leaves the same state when repeated: retried likewise
    PUT_TX = "put_tx"  # the same, several statements in one transaction
    WRITE = "write"  # any other write: in a transaction, retried only if it broke before COMMIT


def q_rows(sql: str, *args: Any) -> Query:
    return Query(sql, args, Fetch.ROWS)


def q_row(sql: str, *args: Any) -> Query:
    return Query(sql, args, Fetch.ROW)


def q_value(sql: str, *args: Any) -> Query:
    return Query(sql, args, Fetch.VALUE)


def q_changed(sql: str, *args: Any) -> Query:
    return Query(sql, args, Fetch.CHANGED)


def q_many(sql: str, arg_rows: Sequence[Sequence[Any]]) -> Query:
    return Query(sql, arg_rows, Fetch.MANY)


class StorageClosed(RuntimeError):
    """The storage was closed; no more calls are accepted."""


@dataclass(frozen=True, slots=True)
class CommitStats:
    """Committed batches and the steps in them, for benchmarks and tests."""

    batches: int
    steps: int

    @property
    def mean_batch(self) -> float:
        return self.steps / self.batches if self.batches else 0.0


# What a step came to: committed (True), refused (False), or its own error.
StepResult = bool | Exception


class SqlStorage(ABC):
    """The Storage port over SQL, for a backend to complete (see the module docstring)."""

    sql: ClassVar[Sql]
    backend: ClassVar[str]  # for messages: "SQLite", "PostgreSQL"
    # Within a batch steps are written in peer order: two workers' batches then lock sessions in
    # the same order and cannot deadlock on them (a stable sort: one peer's steps keep theirs).
    peer_order: ClassVar[bool] = False

    def __init__(self, *, max_batch: int = 1000, process: str | None = None) -> None:
        # This process's name in what it writes (kept replies, outbox items in hand, leases).
        self.process = process or process_holder()
        self._max_batch = max(1, max_batch)
        self._pending: list[tuple[StepRow, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._batches = 0
        self._steps = 0

    # ----------------------------------------------------------------- what a backend supplies

    @abstractmethod
    async def _script(self, script: Callable[[], Script[T]], kind: Kind) -> T:
        """Run a fresh script(): a call broken by a lost connection may be run again."""

    @abstractmethod
    async def _write_batch(self, batch: Sequence[StepRow]) -> list[StepResult]:
        """Write the steps in one transaction; a step's own failure may be its result, a failure
        of the whole batch is raised."""

    # ----------------------------------------------------------------- the group commit

    @property
    def commit_stats(self) -> CommitStats:
        return CommitStats(self._batches, self._steps)

    async def commit_step(self, step: StepCommit) -> bool:
        if self._closing:
            raise StorageClosed(f"{self.backend} storage is closed")
        entry = step_row(step)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        """Write queued steps batch after batch until the queue is empty."""
        batch: list[tuple[StepRow, asyncio.Future[bool]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                if self.peer_order:
                    batch.sort(key=lambda entry: entry[0].peer)
                try:
                    results = await self._write_batch([entry for entry, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    batch = []
                    continue
                self._batches += 1
                self._steps += len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # the caller may have been cancelled meanwhile
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        except BaseException:
            # Cancelled (loop shutting down): whether the batch in flight committed is unknown,
            # so its callers and everyone still queued are cancelled rather than left waiting.
            for _, future in batch + self._pending:
                future.cancel()
            self._pending.clear()
            raise
        finally:
            self._flusher = None

    async def _drain(self) -> None:
        """Wait until every queued step is written."""
        while self._flusher is not None:
            # asyncio.wait, not await: cancelling the waiter must not cancel the flusher.
            await asyncio.wait({self._flusher})

    def _step_rest(self, step: StepRow) -> Script[bool]:
        """What a step writes after its session and inbox mark: its outbox items, the outcomes
        it records, the replies it replaces. False: the step must be undone."""
        if step.outbox:  # most steps queue nothing: no statement for them at all
            yield q_many(self.sql.insert_outbox, [(*row, self.process) for row in step.outbox])
        if step.sign_in is not None:
            yield from self._sign_in(step.sign_in)
        if step.watch:
            yield q_many(self.sql.insert_watch, step.watch)
        if step.counts:
            yield q_many(self.sql.count, step.counts)
        for outcome in step.outcomes:
            # An outcome recorded meanwhile (the worker stopped waiting for this step) means it
            # was told already: the step would tell it twice, so it fails as a whole.
            if not (yield from self._apply_outcome(outcome)):
                return False
        # Already sent (or never kept) is no failure: the replies then go out live only.
        if step.reply_of is not None and step.replies is not None:
            yield q_changed(self.sql.replace_replies, step.replies, step.expected + 1, step.reply_of)
        return True

    def _sign_in(self, rows: SignInRows) -> Script[None]:
        if rows.put_binding is not None:
            yield q_changed(self.sql.put_binding, *rows.put_binding)
        if rows.put_owner is not None:
            yield q_changed(self.sql.put_owner, *rows.put_owner)
        if rows.delete_binding is not None:
            yield q_changed(self.sql.delete_binding, *rows.delete_binding)
        if rows.put_code is not None:
            yield q_changed(self.sql.put_code, *rows.put_code)
        if rows.delete_code is not None:
            yield q_changed(self.sql.delete_code, *rows.delete_code)

    def _apply_outcome(self, outcome: OutcomeRows) -> Script[bool]:
        """Pending only: an item finished by another attempt, or dropped by an admin meanwhile, is
        left as it is and nothing follows from this outcome."""
        if (yield q_changed(self.sql.finish_outbox, *outcome.finish)) != 1:
            return False
        if outcome.notices:
            yield q_many(self.sql.insert_notice, outcome.notices)
        if outcome.follow_ups:
            yield q_many(self.sql.insert_follow_up, [(*row, self.process) for row in outcome.follow_ups])
        if outcome.watch:
            yield q_many(self.sql.insert_watch, outcome.watch)
        if outcome.counts:
            yield q_many(self.sql.count, outcome.counts)
        return True

    # ----------------------------------------------------------------- sessions

    async def load_session(self, peer: str) -> Session | None:
        found = await self._one(self.sql.select_session, peer)
        if found is None:
            return None
        peer_, state, slots, flow_version, updated_at, version = found
        return Session(peer_, state, json.loads(slots), flow_version, updated_at, version)

    # ----------------------------------------------------------------- bindings

    async def get_binding(self, peer: str) -> Binding | None:
        found = await self._one(self.sql.get_binding, peer)
        return None if found is None else Binding(*found)

    async def put_binding(self, binding: Binding) -> None:
        def put() -> Script[None]:
            yield q_changed(self.sql.put_binding, binding.peer, binding.email, binding.caller_id, binding.name,
                            binding.bound_at)
            yield q_changed(self.sql.put_owner, binding.email, binding.peer, binding.bound_at)

        await self._script(put, Kind.PUT_TX)

    async def delete_binding(self, peer: str) -> None:
        await self._do(q_changed(self.sql.delete_binding, peer), Kind.WRITE)

    # ----------------------------------------------------------------- sign-in codes

    async def get_code(self, peer: str) -> PendingCode | None:
        found = await self._one(self.sql.get_code, peer)
        if found is None:
            return None
        peer_, email, code_hash, salt, created_at, expires_at, attempts = found
        return PendingCode(peer_, email, bytes(code_hash), bytes(salt), created_at, expires_at, attempts)

    async def reserve_send(self, peer: str, email: str, at: float, since: float, *, peer_cap: int,
                           others_cap: int) -> bool:
        def reserve() -> Script[bool]:
            if self.sql.lock_address is not None:  # PostgreSQL: one reservation per address at a time
                yield q_value(self.sql.lock_address, email)
            return bool((yield q_changed(self.sql.reserve_send, peer, email, at, since, peer_cap, others_cap)) == 1)

        return await self._script(reserve, Kind.WRITE)

    async def release_send(self, peer: str, email: str, at: float) -> None:
        await self._do(q_changed(self.sql.release_send, peer, email, at), Kind.PUT)

    async def code_send_stats(self, peer: str, email: str, since: float) -> SendStats:
        """Sends at or after since: by this peer, to this email, by the pair, the pair's latest."""
        by_peer, by_email, by_pair, last_pair, first_peer, first_others = await self._one(
            self.sql.code_send_stats, peer, email, since)
        return SendStats(int(by_peer), int(by_email), int(by_pair), last_pair, first_peer, first_others)

    # ----------------------------------------------------------------- inbox and kept replies

    async def seen_event(self, event_id: str) -> bool:
        return await self._do(q_value(self.sql.seen_event, event_id), Kind.READ) is not None

    async def inbox_add(self, event_id: str, peer: str, body: str) -> bool:
        # Not repeatable (a second run would answer "duplicate"): a WRITE.
        added = await self._do(q_changed(self.sql.inbox_add, event_id, peer, body, time.time(), self.process),
                               Kind.WRITE)
        return bool(added == 1)

    async def inbox_pending(self, limit: int = 1000, received_before: float = math.inf, *,
                            gone_only: bool = False) -> list[InboxEvent]:
        found = await (self._rows(self.sql.inbox_pending_gone, limit, self.process) if gone_only
                       else self._rows(self.sql.inbox_pending, limit, received_before))
        return [InboxEvent(e, p or "", b or "", r) for e, p, b, r in found]

    async def inbox_mark_handled(self, event_ids: Sequence[str]) -> None:
        await self._update_each(self.sql.mark_handled, event_ids)

    async def replies_unsent(self, limit: int = 1000, handled_before: float = math.inf, *,
                             gone_only: bool = False) -> list[UnsentReplies]:
        found = await (self._rows(self.sql.replies_unsent_gone, limit, self.process) if gone_only
                       else self._rows(self.sql.replies_unsent, limit, handled_before))
        return [UnsentReplies(e, p or "", r, bool(o)) for e, p, r, o in found]

    async def replies_sent(self, event_ids: Sequence[str]) -> None:
        await self._update_each(self.sql.replies_sent, event_ids)

    # ----------------------------------------------------------------- leases and cursors

    async def lease_acquire(self, name: str, holder: str, now: float, until: float) -> bool:
        # Repeating it leaves the same state (the holder's own lease, renewed): safe to retry.
        taken = await self._do(q_changed(self.sql.acquire_lease, name, holder, until, now), Kind.PUT)
        return bool(taken == 1)

    async def lease_release(self, name: str, holder: str) -> None:
        await self._do(q_changed(self.sql.release_lease, name, holder), Kind.PUT)

    async def get_cursor(self, name: str) -> str | None:
        found = await self._do(q_value(self.sql.get_cursor, name), Kind.READ)
        return None if found is None else str(found)

    async def put_cursor(self, name: str, value: str) -> None:
        await self._do(q_changed(self.sql.put_cursor, name, value, time.time()), Kind.PUT)

    # ----------------------------------------------------------------- outbox

    async def outbox_due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        return [outbox_item(r) for r in await self._rows(self.sql.outbox_due, now, limit)]

    async def outbox_get(self, item_id: str) -> OutboxItem | None:
        found = await self._one(self.sql.outbox_get, item_id)
        return None if found is None else outbox_item(found)

    async def outbox_save(self, item: OutboxItem) -> None:
        await self._do(q_changed(self.sql.outbox_save, item.attempts, item.next_at, item.updated_at, item.last_error,
                                 json_text(item.progress), item.held, item.id), Kind.PUT)

    async def outbox_lease(self, item_id: str, held_until: float, until: float, attempts: int = 0) -> bool:
        moved = await self._do(q_changed(self.sql.outbox_lease, until, attempts, attempts >= 0, item_id, held_until,
                                         self.process),
                               Kind.WRITE)
        return bool(moved == 1)

    async def outbox_finish(self, outcome: OutboxOutcome) -> bool:
        return await self._script(partial(self._apply_outcome, outcome_rows(outcome)), Kind.WRITE)

    async def outbox_list(self, states: Sequence[str] = (), limit: int = 100) -> list[OutboxItem]:
        wanted = list(dict.fromkeys(states))
        found = await self._rows(self.sql.outbox_list(len(wanted)), limit,
                                 *(self.sql.dialect.list_args(wanted) if wanted else ()))
        return [outbox_item(r) for r in found]

    async def outbox_summary(self) -> OutboxSummary:
        def summary() -> Script[OutboxSummary]:
            # Pending rows through the partial index outbox_due; failed ones are few (an operator's).
            pending, oldest = yield q_row(self.sql.outbox_pending_summary)
            failed = yield q_value(self.sql.outbox_failed_count)
            return OutboxSummary(int(pending), int(failed or 0), None if oldest is None else float(oldest))

        return await self._script(summary, Kind.READ)

    async def outbox_untold(self, finished_before: float, limit: int = 100) -> list[OutboxItem]:
        return [outbox_item(r) for r in await self._rows(self.sql.outbox_untold, finished_before, limit)]

    async def outbox_tell(self, item_id: str, notice: Notice | None) -> bool:
        def tell() -> Script[bool]:
            if (yield q_changed(self.sql.outbox_tell, item_id)) != 1:
                return False
            if notice is not None:
                yield q_changed(self.sql.insert_notice, *notice_row(notice))
            return True

        return await self._script(tell, Kind.WRITE)

    async def outbox_retry(self, item_id: str, now: float) -> bool:
        retried = await self._do(q_changed(self.sql.outbox_retry, now, item_id), Kind.WRITE)
        return bool(retried == 1)

    async def outbox_drop(self, item_id: str) -> OutboxItem | None:
        found = await self._do(q_row(self.sql.outbox_drop, item_id), Kind.WRITE)
        return None if found is None else outbox_item(found)

    # ----------------------------------------------------------------- notices

    async def notices_add(self, notices: Sequence[Notice]) -> None:
        if notices:
            await self._do(q_many(self.sql.insert_notice, [notice_row(n) for n in notices]), Kind.PUT_TX)

    async def notices_unsent(self, limit: int = 100) -> list[Notice]:
        return [notice_of(r) for r in await self._rows(self.sql.notices_unsent, limit)]

    async def notices_sent(self, notice_ids: Sequence[str]) -> None:
        await self._update_each(self.sql.notices_sent, notice_ids)

    # ----------------------------------------------------------------- watched tickets

    async def watch_add(self, tickets: Sequence[WatchedTicket]) -> None:
        now = time.time()
        if tickets:
            await self._do(q_many(self.sql.insert_watch, [_watch_row(t, now) for t in tickets]), Kind.PUT_TX)

    async def watch_list(self, after: tuple[str, str] = ("", ""), limit: int = 500) -> list[WatchedTicket]:
        return [watched_of(r) for r in await self._rows(self.sql.watch_list, after[0], after[1], limit)]

    async def watch_of_peer(self, peer: str) -> list[WatchedTicket]:
        return [watched_of(r) for r in await self._rows(self.sql.watch_of_peer, peer)]

    async def watch_update(self, seen: Sequence[WatchedTicket], notices: Sequence[Notice], *,
                           started: float | None = None, checked: Sequence[tuple[str, str]] = ()) -> None:
        before = -1.0 if started is None else started  # no poke is made before 0
        updates = [(t.number, t.state, t.updated_at, t.active, t.comment_after, t.asked_at, t.table, t.sys_id,
                    before) for t in seen]
        notice_rows = [notice_row(n) for n in notices]
        unpokes = [(table, sys_id, before) for table, sys_id in checked] if started is not None else []

        def update() -> Script[None]:
            if updates:
                yield q_many(self.sql.watch_update, updates)
            if unpokes:
                yield q_many(self.sql.watch_unpoke, unpokes)
            if notice_rows:
                yield q_many(self.sql.insert_notice, notice_rows)

        if updates or notice_rows or unpokes:
            await self._script(update, Kind.PUT_TX)

    async def watch_poke(self, table: str, sys_id: str) -> bool:
        poked = await self._do(q_changed(self.sql.watch_poke, time.time(), table, sys_id), Kind.PUT)
        return bool(poked)

    async def watch_poked(self, limit: int = 500) -> list[WatchedTicket]:
        return [watched_of(r) for r in await self._rows(self.sql.watch_poked, limit)]

    async def watch_drop(self, keys: Sequence[tuple[str, str]]) -> None:
        if keys:
            await self._do(q_many(self.sql.watch_drop, [(table, sys_id) for table, sys_id in keys]), Kind.PUT_TX)

    # ----------------------------------------------------------------- counters

    async def counts(self, since_day: str = "") -> list[DayCount]:
        return [DayCount(n, d, int(c)) for n, d, c in await self._rows(self.sql.counts, since_day)]

    async def idle_states(self, idle_before: float) -> dict[str, int]:
        return {str(state): int(n) for state, n in await self._rows(self.sql.idle_states, idle_before)}

    async def prune_counts(self, before_day: str) -> int:
        # A day's rows are few (a counter per name and label): one statement, however many days.
        deleted = await self._do(q_changed(self.sql.prune_counts, before_day), Kind.PUT)
        return int(deleted or 0)

    # ----------------------------------------------------------------- upkeep

    async def prune(self, older_than: float, *, sessions_before: float | None = None,
                    codes_before: float | None = None) -> int:
        """Delete what is done with and older than the given time: handled inbox events, code
        sends, expired codes, sent notices, and outbox items done and told; and sessions (drafts
        included) not stepped since sessions_before, and sign-in codes expired before
        codes_before, if given.

        Keeps the tables bounded; run it periodically with a horizon longer than the channel
        can replay events (VK: hours) and the longest send-rate window. Returns rows deleted.
        """

        def delete() -> Script[int]:
            deleted = 0
            for sql in self.sql.prune:
                deleted += yield q_changed(sql, older_than)
            if sessions_before is not None:
                deleted += yield q_changed(self.sql.prune_sessions, sessions_before)
            if codes_before is not None:
                deleted += yield q_changed(self.sql.prune_codes, codes_before)
            return deleted

        return await self._script(delete, Kind.WRITE)

    # ----------------------------------------------------------------- personal data

    async def forget(self, *, peer: str | None = None, email: str | None = None, force: bool = False,
                     keep_session: bool = False, keep_send_log: bool = False) -> Forgotten:
        if (peer is None) == (email is None):
            raise ValueError("forget needs a peer or an e-mail address, not both")
        address = None if email is None else email.strip().lower()
        now = time.time()
        sql = self.sql

        def forget() -> Script[Forgotten]:
            if address is not None:
                found = yield q_rows(sql.forget_peers_of, address)
                peers = sorted(str(r[0]) for r in found)
            else:
                assert peer is not None
                peers = [peer]
            if not force:
                pending: list[str] = []
                for p in peers:
                    unfinished = yield q_rows(sql.forget_pending, p)
                    pending += [str(r[0]) for r in unfinished]
                if pending:
                    return Forgotten(tuple(peers), {}, (), tuple(pending))
            removed = dict.fromkeys(FORGET_KINDS, 0)
            files: list[str] = []
            for p in peers:
                if not keep_session:
                    slots = yield q_value(sql.forget_slots, p)
                    if slots is not None:
                        files += file_ids_within(json.loads(slots))
                for kind, statement in sql.forget_by_peer.items():
                    if kind != "sessions" or not keep_session:
                        removed[kind] += yield q_changed(statement, p)
                # The bot's own step keeps the record of codes mailed (auth_sends: so that deleting
                # cannot reset how many an address may get; it goes with retention), never the
                # peer ↔ address link (auth_owners).
                for n, statement in enumerate(sql.forget_send_log):
                    if n == 0 and keep_send_log:
                        continue
                    removed["sign-in log"] += yield q_changed(statement, p)
                removed["inbox events"] += yield (q_changed(sql.forget_inbox_handled, p) if keep_session
                                                  else q_changed(sql.forget_inbox, p, now))
                for (payload,) in (yield q_rows(sql.forget_outbox, p, force)):
                    removed["outbox items"] += 1
                    files += file_ids_within(json.loads(payload).get("files"))
            if address is not None:  # what is left under the address itself, whoever's peer it was
                for n, statement in enumerate(sql.forget_send_log_of):
                    if n == 0 and keep_send_log:
                        continue
                    removed["codes" if n == 2 else "sign-in log"] += yield q_changed(statement, address)
            return Forgotten(tuple(peers), removed, tuple(dict.fromkeys(files)))

        return await self._script(forget, Kind.WRITE)

    # ----------------------------------------------------------------- helpers

    async def _do(self, query: Query, kind: Kind) -> Any:
        """One statement as a call of its own."""
        return await self._script(partial(_single, query), kind)

    async def _one(self, sql: str, *args: Any) -> Any:
        return await self._do(q_row(sql, *args), Kind.READ)

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        found: list[Any] = await self._do(q_rows(sql, *args), Kind.READ)
        return found

    async def _update_each(self, sql_for: Callable[[int], str], ids_: Sequence[str]) -> None:
        """Mark these ids (an UPDATE with $1 the time now, then the list): marks are repeatable."""
        ids = list(ids_)
        if not ids:
            return
        now = time.time()
        dialect = self.sql.dialect

        def mark() -> Script[None]:
            for chunk in dialect.chunks(ids):
                yield q_changed(sql_for(len(chunk)), now, *dialect.list_args(chunk))

        await self._script(mark, Kind.PUT)


def _single(query: Query) -> Script[Any]:
    return (yield query)

