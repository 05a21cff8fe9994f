"""The outbox worker: sends the SimpleOne work that steps committed, until it is done.

A step that submits a ticket or a comment writes an OutboxItem in its own transaction
(StepCommit.outbox); nothing reaches SimpleOne before that commit. This worker then:

- takes due items oldest first, one peer's items in order, several peers at once;
- runs each through its kind's executor with a per-kind timeout;
- on a transient failure (timeout, dropped connection, 5xx, an HTML page) saves the attempt and
  tries again after an exponential backoff with jitter, while a circuit breaker stops hammering
  a SimpleOne that is down; after `give_up_after` it stops and says so;
- on a refusal that no retry can fix (4xx) keeps the item as failed, with the error, for an admin;
- tells the user the outcome: the engine, which waits a few seconds for it under the peer's
  lock, tells it in its own answer; otherwise a notice is stored in the same transaction as the
  outcome, and sent by the channel.

Executors are idempotent by construction: the item's id is written into what they create and
looked up before any write is repeated (see engine/work/ticket_work.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine import figures
from engine.ports import (
    OUTBOX_DONE,
    OUTBOX_FAILED,
    OUTBOX_PENDING,
    Notice,
    OutboxItem,
    OutboxOutcome,
    OutboxState,
    OutboxStore,
    TicketSystemRejected,
    TicketSystemUnavailable,
    WatchedTicket,
)
from engine.ports.telemetry import NULL_TELEMETRY, OUTBOX_FINISHED, OUTBOX_RETRIED, Telemetry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """How hard the worker tries; the values come from configuration."""

    wait: float = 5.0  # how long a submitting user's answer waits for SimpleOne
    timeouts: Mapping[str, float] = field(default_factory=lambda: {"ticket.upload": 120.0})
    default_timeout: float = 30.0
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    give_up_after: float = 86400.0  # a transient failure this long is told as a failure
    concurrency: int = 16  # items in SimpleOne's hands at once
    breaker_threshold: int = 5  # consecutive transient failures that open the circuit
    breaker_cooldown: float = 15.0  # first open period; doubles while probes fail
    breaker_cooldown_cap: float = 300.0
    sweep_every: float = 5.0  # also the longest a kick can be missed
    lease_margin: float = 5.0  # a claimed item is hidden this long past its timeout
    handover_timeout: float = 10.0  # how long an outcome waits for the waiting step to record it
    # An outcome nobody told (the waiting answer did not commit) is sent as a notice after this.
    tell_grace: float = 30.0

    def timeout_for(self, kind: str) -> float:
        return self.timeouts.get(kind, self.default_timeout)

    def backoff(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Delay before try number attempts + 1: exponential, capped, with "equal jitter" so that
        retries of many items spread out but none comes back at once."""
        delay = min(self.backoff_cap, self.backoff_base * 2.0 ** max(0, attempts - 1))
        return delay / 2 + delay / 2 * rand()


class Permit(enum.Enum):
    """What the breaker lets an attempt be."""

    NONE = 0  # not now
    CALL = 1  # closed: a normal call
    PROBE = 2  # half-open: the one call that decides whether SimpleOne is back


class CircuitBreaker:
    """Closed → open after `threshold` consecutive failures → half-open after a cooldown (one
    probe goes through) → closed on the probe's success, open again for twice as long on its
    failure. Only the probe's verdict moves a half-open breaker."""

    def __init__(self, policy: OutboxPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._failures = 0
        self._cooldown = policy.breaker_cooldown
        self._open_until: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._open_until is None:
            return "closed"
        return "half-open" if self._clock() >= self._open_until else "open"

    def retry_in(self) -> float:
        """Seconds until a call may be tried; 0 when closed or ready for a probe."""
        if self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def can_try(self) -> bool:
        """Whether a call would be let through now (closed, or half-open with no probe out)."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._probing)

    def allow(self) -> Permit:
        state = self.state
        if state == "closed":
            return Permit.CALL
        if state == "half-open" and not self._probing:
            self._probing = True
            return Permit.PROBE
        return Permit.NONE

    def success(self, permit: Permit = Permit.CALL) -> None:
        if permit is Permit.PROBE or self._open_until is None:
            if self._open_until is not None:
                log.info("SimpleOne answers again; circuit closed")
            self._failures = 0
            self._cooldown = self._policy.breaker_cooldown
            self._open_until = None
            self._probing = False

    def failure(self, permit: Permit = Permit.CALL) -> None:
        if permit is Permit.PROBE:
            self._cooldown = min(self._cooldown * 2, self._policy.breaker_cooldown_cap)
        elif self._open_until is not None:
            return  # a call let through before the circuit opened: already counted as down
        else:
            self._failures += 1
            if self._failures < self._policy.breaker_threshold:
                return
        self._probing = False
        self._open_until = self._clock() + self._cooldown
        log.warning("SimpleOne is failing; circuit open for %.0f s", self._cooldown)

    def release(self, permit: Permit) -> None:
        """A probe that ended with neither verdict (cancelled, a bug) lets the next one go."""
        if permit is Permit.PROBE:
            self._probing = False


@dataclass(slots=True)
class WorkDone:
    """What an executor achieved. result is what the user is told: {"event": name the waiting
    step fires, "vars": slots it sets, "notice": the bot message said if told later}."""

    result: dict[str, Any]
    follow_ups: list[OutboxItem] = field(default_factory=list)
    watch: list[WatchedTicket] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)  # counters the outcome moves (engine/figures.py)


class WorkFailed(Exception):
    """A refusal no retry can fix; result as in WorkDone (an event such as "rejected")."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


class Defer(Exception):
    """Not now, but nothing failed: try again at `until` (by the worker's clock)."""

    def __init__(self, until: float, why: str) -> None:
        super().__init__(why)
        self.until = until


class Checkpoint(Protocol):
    async def __call__(self, item: OutboxItem) -> None: ...


Executor = Callable[[OutboxItem, Checkpoint], Awaitable[WorkDone]]
NoticeRenderer = Callable[[OutboxItem, str], Notice | None]


def gave_up_result(item: OutboxItem) -> dict[str, Any]:
    return {"event": "rejected", "vars": dict(item.payload.get("vars") or {}), "notice": item.payload.get("gave_up")}


class OutboxWorker:
    """Runs in every process that handles events. Items are claimed in storage for each
    attempt (a lease), so two workers — or two rounds of one — never run the same item."""

    def __init__(self, storage: OutboxStore, executors: Mapping[str, Executor], render: NoticeRenderer,
                 policy: OutboxPolicy | None = None, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, telemetry: Telemetry = NULL_TELEMETRY) -> None:
        self.telemetry = telemetry
        self.storage = storage
        self.executors = dict(executors)
        self.render = render
        self.policy = policy or OutboxPolicy()
        self.clock = clock
        self.breaker = CircuitBreaker(self.policy, monotonic)
        self._kick = asyncio.Event()
        # Steps waiting for an item's outcome; None as a result: it will not come soon.
        self._waiters: dict[str, asyncio.Future[OutboxItem | None]] = {}
        self._handovers: dict[str, tuple[OutboxOutcome, asyncio.Future[bool]]] = {}
        self._inflight: set[str] = set()
        self._in_hand: dict[str, OutboxItem] = {}  # the copies the chains run, by id
        self._given_back = False  # a chain gave items back: look again when it is done
        self._chains: set[asyncio.Task[int]] = set()
        self._slots = asyncio.Semaphore(max(1, self.policy.concurrency))
        self._last_sweep = -math.inf
        self._wakes: list[float] = []  # when deferred items come due (a heap)
        self._round_started = -math.inf
        self._deferred: set[str] = set()  # put off a moment: whoever waits keeps waiting
        # How long each kind of item stays claimed: see _lease_end.
        self._leases = {kind: self._lease_end_for(kind, 0.0) for kind in self.executors}
        self._backlog = False  # the last round's take was cut short by the room left
        self._taking = 0  # takes in progress
        self.tries = 0  # attempts made, for tests and benchmarks

    # ------------------------------------------------------------------ the engine's side

    def kick(self) -> None:
        """New work was committed: look now rather than at the next sweep."""
        self._kick.set()

    def reserve(self, items: Sequence[OutboxItem]) -> bool:
        """Before the step commits: the new items are written already claimed by this worker
        (their first attempt counted, hidden by a lease), so that start() runs them at once
        with no claim round trip. Not while SimpleOne is known down: then they are simply due."""
        # Items on an existing record wait for older ones on it: they go through the due query.
        if self.breaker.state != "closed" or any(item.record is not None for item in items):
            return False
        now = self.clock()
        for item in items:
            item.attempts += 1
            item.next_at = self._lease_end(item, now)
            item.held = True
        return True

    def _lease_end(self, item: OutboxItem, now: float) -> float:
        return self._lease_end_for(item.kind, now)

    def _lease_end_for(self, kind: str, now: float) -> float:
        """How long a claimed item stays this worker's: its attempt, the handover to a waiting
        step, and a margin; a worker that dies leaves it due again then."""
        return now + self.policy.timeout_for(kind) + self.policy.handover_timeout + self.policy.lease_margin

    def start(self, items: Sequence[OutboxItem]) -> None:
        """After the step committed: run the items reserve() took, one chain per peer."""
        by_peer: dict[str, list[OutboxItem]] = {}
        for item in items:
            if item.id not in self._inflight:
                self._inflight.add(item.id)
                self._in_hand[item.id] = item
                by_peer.setdefault(item.peer, []).append(item)
        for chain in by_peer.values():
            self._start_chain(chain)

    def wait_budget(self) -> float:
        """How long a submitting user's answer may wait: none while SimpleOne is known down."""
        return self.policy.wait if self.breaker.state == "closed" else 0.0

    async def wait(self, item_ids: Sequence[str], within: float) -> dict[str, OutboxItem]:
        """The items among these that finished within `within` seconds. While an item is waited
        for, its outcome is left to the waiter to tell; once the wait ends, the worker tells it."""
        if within <= 0 or not item_ids:
            return {}
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[OutboxItem | None]] = {
            i: self._waiters.setdefault(i, loop.create_future()) for i in item_ids}
        try:
            # The first word on any item ends the wait (a failed try included: it will take
            # longer than a user should wait); what is not told now goes out as a notice.
            await asyncio.wait(futures.values(), timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for i, f in futures.items():
                if self._waiters.get(i) is f:
                    del self._waiters[i]
                if not f.done():
                    f.cancel()
        finished = (f.result() for f in futures.values() if f.done() and not f.cancelled())
        return {item.id: item for item in finished if item is not None and item.state != OUTBOX_PENDING}

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Work until cancelled: start what is due as it comes, never waiting for a slow item
        before looking at new ones."""
        try:
            while True:
                try:
                    await self.run_once(wait=False)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox round failed; trying again shortly")
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the kick does, and the worker would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._next_wake()):
                        await self._kick.wait()
                self._kick.clear()
        finally:
            for task in list(self._chains):
                task.cancel()
            await asyncio.gather(*self._chains, return_exceptions=True)

    def _next_wake(self) -> float:
        wake = self.policy.sweep_every
        retry = self.breaker.retry_in()
        if retry > 0:
            wake = min(wake, retry)
        # Wake times the last round started after have been served by it.
        while self._wakes and self._wakes[0] <= self._round_started:
            heapq.heappop(self._wakes)
        if self._wakes:
            wake = min(wake, max(0.01, self._wakes[0] - self.clock()))
        return wake

    async def run_once(self, *, wait: bool = True) -> int:
        """Start the due items (one task per peer's chain), tell untold outcomes; with wait, also
        wait for the started chains. Returns the items started."""
        now = self.clock()
        self._round_started = now
        started: list[asyncio.Task[int]] = []
        count = 0
        room = 2 * self.policy.concurrency - len(self._inflight)
        # Not while a probe decides whether SimpleOne is back: what is taken would only be given
        # back, round after round, until it ends (the chain's end looks again).
        if self.breaker.can_try() and room > 0:
            # Waited for before this query began, so committed: if not due now, not soon either.
            waiting = [i for i, f in self._waiters.items() if not f.done()]
            # Claimed at once (each attempt counted, hidden by a lease), skipping what another
            # worker is claiming at the same moment; no more than the slots will soon run, so
            # leases are not spent waiting here while other workers have room.
            self._taking += 1  # claimed in storage before they are in hand: drain() must wait
            try:
                due = await self.storage.outbox_take(now, self._leases, limit=room)
            finally:
                self._taking -= 1
            self._backlog = len(due) == room
            self._release_waiters(waiting, {i.id for i in due})
            # From here to the tasks' start nothing awaits: a concurrent round sees these in flight.
            by_peer: dict[str, list[OutboxItem]] = {}
            count = 0
            for item in due:
                held = self._in_hand.get(item.id)
                if held is not None:
                    # In hand already: its lease ran out while it waited for a slot. The copy in
                    # hand takes the new claim over (its renewal compares next_at); never a
                    # second run beside it.
                    held.next_at, held.attempts = item.next_at, item.attempts
                    continue
                self._inflight.add(item.id)
                self._in_hand[item.id] = item
                by_peer.setdefault(item.peer, []).append(item)
                count += 1
            for chain in by_peer.values():
                started.append(self._start_chain(chain))
        if now - self._last_sweep >= self.policy.sweep_every:
            self._last_sweep = now
            await self.tell_untold()
        if wait and started:
            await asyncio.gather(*started, return_exceptions=True)
        return count

    def _release_waiters(self, waiting: Sequence[str], due: set[str]) -> None:
        """Items waited for that are neither due nor in hand (behind an older one on their
        record, or in a backoff): end the wait now rather than at its timeout."""
        for item_id in waiting:
            waiter = self._waiters.get(item_id)
            if (item_id not in due and item_id not in self._inflight and item_id not in self._deferred
                    and waiter is not None and not waiter.done()):
                waiter.set_result(None)

    def _start_chain(self, chain: list[OutboxItem]) -> asyncio.Task[int]:
        task = asyncio.create_task(self._run_chain(chain))
        self._chains.add(task)
        task.add_done_callback(self._chain_done)
        return task

    def _chain_done(self, task: asyncio.Task[int]) -> None:
        self._chains.discard(task)
        # The last round left due items for want of room, or this chain gave some back (its
        # SimpleOne call failed, or a probe was out): look again now that this one is done.
        if self._backlog or self._given_back:
            self._given_back = False
            self.kick()
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox chain failed: %r", task.exception())

    async def _run_chain(self, items: list[OutboxItem]) -> int:
        """One peer's due items, in order; a transient failure leaves the rest for later. They
        are this worker's already (while the lease lasts): reserved with their step, or taken."""
        tried = 0
        try:
            for n, item in enumerate(items):
                async with self._slots:
                    permit = self.breaker.allow()
                    if permit is Permit.NONE:
                        await self._unreserve(items[n:])
                        break
                    try:
                        renewed = await self._renew(item)
                    except BaseException:
                        self.breaker.release(permit)
                        raise
                    if not renewed:
                        self.breaker.release(permit)
                        continue  # the lease ran out while it waited and another worker took it
                    tried += 1
                    if not await self.attempt(item, permit):
                        await self._unreserve(items[n + 1:])
                        break
        finally:
            for item in items:
                self._inflight.discard(item.id)
                if self._in_hand.get(item.id) is item:
                    del self._in_hand[item.id]
        return tried

    async def _renew(self, item: OutboxItem) -> bool:
        """A reserved item that waited for a slot gets a fresh lease before its try, unless its
        lease ended meanwhile and another worker claimed it. Fresh ones need no round trip."""
        now = self.clock()
        until = self._lease_end(item, now)
        if until - item.next_at <= self.policy.lease_margin:
            return True
        if not await self.storage.outbox_lease(item.id, item.next_at, until):
            return False
        item.next_at = until
        return True

    async def _unreserve(self, items: Sequence[OutboxItem]) -> None:
        """Reserved items this worker will not try now are made due again at once, rather than
        hidden until their lease ends, with the attempt counted for them given back; not if
        another worker has taken them meanwhile."""
        now = self.clock()
        for item in items:
            if await self.storage.outbox_lease(item.id, item.next_at, now, attempts=-1):
                item.next_at = now
                item.attempts = max(0, item.attempts - 1)
                item.held = False
        if items:
            self._given_back = True

    async def attempt(self, item: OutboxItem, permit: Permit = Permit.CALL) -> bool:
        """Try one item this worker holds (reserved or taken) once; False if it stays pending."""
        self._inflight.add(item.id)
        try:
            self.tries += 1
            self._deferred.discard(item.id)
            return await self._attempt(item, permit)
        except asyncio.CancelledError:
            self.breaker.release(permit)
            raise
        except Exception:
            # A bug or a storage failure: not SimpleOne's fault, so the breaker is left alone,
            # and the item is tried again after a backoff like any failure.
            log.exception("outbox %s (%s) attempt failed unexpectedly", item.id, item.kind)
            self.breaker.release(permit)
            try:
                await self._retry_later(item, "internal error; see the log")
            except Exception:
                # The item stays pending with its old next_at; a later round takes it up again.
                log.exception("outbox %s: could not put off its retry; a later round takes it up", item.id)
            return False
        finally:
            self._inflight.discard(item.id)

    async def _attempt(self, item: OutboxItem, permit: Permit) -> bool:
        executor = self.executors.get(item.kind)
        if executor is None:
            self.breaker.release(permit)
            await self._finish(item, OUTBOX_FAILED, gave_up_result(item), f"no executor for outbox kind {item.kind!r}")
            return True
        try:
            async with asyncio.timeout(self.policy.timeout_for(item.kind)):
                done = await executor(item, self._checkpoint)
        except Defer as exc:
            self.breaker.success(permit)
            await self._retry_later(item, str(exc), at=exc.until)
            return False
        except WorkFailed as exc:
            self.breaker.success(permit)  # SimpleOne answered; it just said no
            log.error("outbox %s (%s) refused for good: %s", item.id, item.kind, exc)
            await self._finish(item, OUTBOX_FAILED, exc.result, str(exc))
            return True
        except (TicketSystemUnavailable, TimeoutError) as exc:
            self.breaker.failure(permit)
            await self._retry_later(item, str(exc) or "timed out")
            return False
        except TicketSystemRejected as exc:
            # An executor turns refusals into WorkFailed; one that slipped through is kept too.
            self.breaker.success(permit)
            log.error("outbox %s (%s) refused: %s", item.id, item.kind, exc)
            await self._finish(item, OUTBOX_FAILED, gave_up_result(item), str(exc))
            return True
        self.breaker.success(permit)
        await self._finish(item, OUTBOX_DONE, done.result, "", done.follow_ups, done.watch, done.counts)
        return True

    async def _checkpoint(self, item: OutboxItem) -> None:
        item.updated_at = self.clock()
        await self.storage.outbox_save(item)

    async def _retry_later(self, item: OutboxItem, error: str, *, at: float | None = None) -> None:
        now = self.clock()
        item.last_error = error[:500]
        item.held = False  # the attempt is over: an admin's retry may bring it forward
        if at is not None:  # deferred, not failed: whoever waits may still hear within the wait
            item.next_at = at
            item.updated_at = now
            await self.storage.outbox_save(item)
            self._deferred.add(item.id)
            heapq.heappush(self._wakes, at)
            self.kick()  # the loop sleeps until then, not until its next sweep
            return
        since = item.retried_at if item.retried_at is not None else item.created_at
        if now - since >= self.policy.give_up_after:
            log.error("outbox %s (%s) still failing after %.0f h; given up: %s", item.id, item.kind,
                      (now - since) / 3600, error)
            await self._finish(item, OUTBOX_FAILED, gave_up_result(item), error)
            return
        item.next_at = now + self.policy.backoff(item.attempts)
        item.updated_at = now
        self.telemetry.count(OUTBOX_RETRIED, kind=item.kind)
        log.warning("outbox %s (%s) attempt %d failed, next in %.0f s: %s", item.id, item.kind, item.attempts,
                    item.next_at - now, error)
        await self.storage.outbox_save(item)
        # Whoever waits for it hears now that it will take longer, rather than at the timeout.
        waiter = self._waiters.get(item.id)
        if waiter is not None and not waiter.done():
            waiter.set_result(item)

    async def _finish(self, item: OutboxItem, state: OutboxState, result: dict[str, Any], error: str,
                      follow_ups: Sequence[OutboxItem] = (), watch: Sequence[WatchedTicket] = (),
                      counts: Sequence[str] = ()) -> None:
        item.state = state
        item.result = result
        item.last_error = error[:500]
        item.updated_at = self.clock()
        if state == OUTBOX_FAILED:
            counts = [*counts, figures.labelled(figures.OUTBOX_FAILED, item.kind)]
        waiter = self._waiters.get(item.id)
        handed = (waiter is not None and not waiter.done()
                  and await self._hand_over(item, waiter, follow_ups, watch, counts))
        if not handed:
            # Nobody is waiting (or the waiting step did not record it): told by a notice,
            # stored in the same transaction as the outcome.
            notice = self.render(item, self._notice_name(item))
            item.told = True
            outcome = OutboxOutcome(item, [notice] if notice is not None else [], list(follow_ups), list(watch),
                                    list(counts))
            if not await self.storage.outbox_finish(outcome):
                log.info("outbox %s was finished or dropped meanwhile; this outcome is not recorded again", item.id)
                return
        self.telemetry.count(OUTBOX_FINISHED, kind=item.kind, state=state)
        if follow_ups or item.record is not None:
            self.kick()  # follow-ups, or items that waited for this one on its record, may be due

    async def _hand_over(self, item: OutboxItem, waiter: asyncio.Future[OutboxItem | None],
                         follow_ups: Sequence[OutboxItem], watch: Sequence[WatchedTicket],
                         counts: Sequence[str] = ()) -> bool:
        """Leave the outcome to the step waiting for it, which tells it and records it in its
        own commit (one round trip instead of two); True once that commit is done."""
        item.told = False  # the step marks what it tells
        ack: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._handovers[item.id] = (OutboxOutcome(item, (), list(follow_ups), list(watch), list(counts)), ack)
        waiter.set_result(item)
        try:
            async with asyncio.timeout(self.policy.handover_timeout):
                return await asyncio.shield(ack)
        except TimeoutError:
            log.warning("outbox %s: the waiting step did not record the outcome in time; recording it here",
                        item.id)
            return False
        finally:
            self._handovers.pop(item.id, None)

    def handed_over(self, item_ids: Sequence[str]) -> list[OutboxOutcome]:
        return [self._handovers[i][0] for i in item_ids if i in self._handovers]

    def acknowledge(self, item_ids: Sequence[str], recorded: bool) -> None:
        for i in item_ids:
            entry = self._handovers.get(i)
            if entry is not None and not entry[1].done():
                entry[1].set_result(recorded)

    @staticmethod
    def _notice_name(item: OutboxItem) -> str:
        result = item.result or {}
        return str(result.get("notice") or "")

    async def tell_untold(self) -> int:
        """Outcomes whose waiting answer never committed (a crash, a conflict): tell them now."""
        told = 0
        for item in await self.storage.outbox_untold(self.clock() - self.policy.tell_grace):
            if item.id in self._waiters:
                continue
            if await self.storage.outbox_tell(item.id, self.render(item, self._notice_name(item))):
                told += 1
        return told

    async def drain(self, seconds: float = 10.0) -> None:
        """Run rounds until nothing is due (tests, and `chat` before it exits)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.run_once()
            if self._inflight or self._taking:
                await asyncio.sleep(0.01)  # the background round has some in hand
                continue
            due = await self.storage.outbox_due(self.clock(), limit=1)
            if not due or self.breaker.state == "open":
                return


__all__ = [
    "OUTBOX_DONE",
    "OUTBOX_FAILED",
    "OUTBOX_PENDING",
    "CircuitBreaker",
    "Defer",
    "Executor",
    "OutboxPolicy",
    "OutboxWorker",
    "Permit",
    "WorkDone",
    "WorkFailed",
]
