"""The engine: one user event in, the session stepped and committed, one reply out.

Per event, under the peer's lock: load the session (cached on storage one process owns), let
a Turn resolve what the user did and trigger it on the compiled machine, run the effects its
transitions named, render the reply, commit the step — and only then hand the reply back to
the channel (engine/dialogue/turn.py has the turn, engine/dialogue/machine.py the routing).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from engine.actions import REGISTRY
from engine.actions.context import Services
from engine.actions.registry import ActionRegistry
from engine.dialogue.sessions import PeerLocks, SessionCache
from engine.dialogue.turn import AlreadyHandled, Turn
from engine.flows.source import FlowSource
from engine.log_context import about, in_state
from engine.ports import Incoming, channel_of
from engine.ports.telemetry import EVENTS_DEDUPLICATED, EVENTS_HANDLED, EVENTS_RECEIVED, STEP_SECONDS
from engine.replies import Button, Reply, dump_replies

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, flows: FlowSource, services: Services, *, registry: ActionRegistry = REGISTRY,
                 cache_size: int = 10_000, max_redo: int = 3) -> None:
        self.flows = flows
        self.services = services
        self.registry = registry
        # A storage shared by several processes: another may have stepped a session since this
        # one cached it, so every step reads it afresh (under the peer's lock, see handle).
        self.shared = services.storage.shared
        self.sessions = SessionCache(services.storage, 0 if self.shared else cache_size)
        self.locks = PeerLocks()
        self.max_redo = max_redo
        # How often each state was entered: bounded by the number of states; for metrics and
        # for checking that conversation tests reach every state.
        self.entered: Counter[str] = Counter()

    async def handle(self, peer: str, incoming: Incoming, *, keep_replies: bool = False) -> list[Reply]:
        """Handle one user event; the replies are returned only after the step is committed.

        An event whose id was handled before is dropped (no replies): the inbox's key decides at
        the commit, which refuses a second step for the same event, so no read comes before it
        (DESIGN, invariant 3). Until the commit a step changes nothing outside it: files it
        discards go after the commit, files it stored go if it is refused, and an action that
        acts outside the step (a sign-in letter) first makes sure the event is new.
        keep_replies: the replies are committed with the step, for the channel to resend after a
        crash until it marks them sent (Storage.replies_sent).
        """
        telemetry = self.services.telemetry
        channel = channel_of(peer)
        telemetry.count(EVENTS_RECEIVED, channel=channel)
        telemetry.active(peer)
        started = time.perf_counter()
        try:
            with about(peer, incoming.event_id):
                return await self._handle_locked(peer, incoming, keep_replies=keep_replies)
        finally:
            telemetry.observe(STEP_SECONDS, time.perf_counter() - started, channel=channel)

    async def _handle_locked(self, peer: str, incoming: Incoming, *, keep_replies: bool) -> list[Reply]:
        async with self.locks.hold(peer):
            try:
                async with self.services.storage.peer_lock(peer):
                    return await self._handle(peer, incoming, keep_replies=keep_replies)
            except Exception:
                log.exception("storage failed for %s; the step was not saved", peer)
                self.sessions.forget(peer)
            return [self.unsaved_reply()]

    async def _handle(self, peer: str, incoming: Incoming, *, keep_replies: bool) -> list[Reply]:
        """handle() under the peer's locks, in this process and across processes."""
        # A refused commit means the event was handled already (a duplicate), or another writer
        # stepped this session: then the step is redone on fresh data. Actions that read
        # SimpleOne would run again; the peer's lock across processes keeps that to a lock lost
        # with its connection.
        for _ in range(self.max_redo):
            turn = Turn(self, self.flows.current, peer, await self.sessions.load(peer))
            in_state(turn.session.state)
            try:
                reply = await turn.run(incoming)
                in_state(turn.session.state)
            except AlreadyHandled:
                log.info("event %s was handled already; dropped", incoming.event_id)
                self.services.telemetry.count(EVENTS_DEDUPLICATED, channel=channel_of(peer))
                await turn.refused()
                return []
            kept = dump_replies([reply]) if keep_replies and incoming.event_id else None
            queue = self.services.outbox
            reserved = bool(turn.outbox) and queue is not None and queue.reserve(turn.outbox)
            if await self.sessions.commit(turn.session, turn.expected_version, incoming.event_id, kept,
                                          outbox=turn.outbox, sign_in=turn.sign_in.writes(), watch=turn.watch,
                                          counts=turn.counts):
                await turn.committed()
                self.services.telemetry.count(EVENTS_HANDLED, channel=channel_of(peer))
                if turn.outbox:
                    return [await self.settle(peer, turn, reply, incoming.event_id if kept else None,
                                              reserved)]
                return [reply]
            await turn.refused()
            if incoming.event_id and await self.services.storage.seen_event(incoming.event_id):
                log.info("event %s was handled already; dropped", incoming.event_id)
                self.services.telemetry.count(EVENTS_DEDUPLICATED, channel=channel_of(peer))
                return []
            log.warning("session of %s was changed by another writer; redoing the step", peer)
        log.error("could not commit a step for %s after %d tries", peer, self.max_redo)
        return [self.unsaved_reply()]

    async def settle(self, peer: str, turn: Turn, reply: Reply, kept_for: str | None, reserved: bool) -> Reply:
        """After a step that queued SimpleOne work: wait a little for its outcome, still holding
        the peer's lock, and if it comes, tell it in a follow-up step instead of `reply`.

        `reply` (already committed) is what holds if the outcome is late, or if this follow-up
        never commits: the worker then tells the outcome as a notice. kept_for: the event whose
        kept replies the follow-up's replace, so that a resend after a crash is the newest.
        """
        queue = self.services.outbox
        if queue is None:
            return reply
        if reserved:
            queue.start(turn.outbox)
        else:
            queue.kick()
        try:
            done = await queue.wait([item.id for item in turn.outbox], queue.wait_budget())
        except Exception:
            log.exception("waiting for the outbox failed for %s; the outcome goes out as a notice", peer)
            return reply
        if not done:
            return reply
        # The worker left these outcomes for this step to record: told and recorded at once.
        handed = queue.handed_over(list(done))
        recorded = False
        follow: Turn | None = None
        try:
            follow = Turn(self, self.flows.current, peer, await self.sessions.load(peer))
            settled = await follow.settle(list(done.values()))
            if settled is None:
                return reply
            for outcome in handed:
                outcome.item.told = outcome.item.id in follow.settled
            kept = dump_replies([settled]) if kept_for else None
            recorded = await self.sessions.commit(follow.session, follow.expected_version, None, kept,
                                                  outbox=follow.outbox, reply_of=kept_for, finish=handed,
                                                  sign_in=follow.sign_in.writes(), watch=follow.watch,
                                                  counts=follow.counts)
            if recorded:
                if follow.outbox:
                    queue.kick()
                return settled
            log.warning("the outcome step of %s did not commit; the outcome goes out as a notice", peer)
        except Exception:
            log.exception("telling an outbox outcome to %s failed; it goes out as a notice", peer)
            self.sessions.forget(peer)
        finally:
            queue.acknowledge([o.item.id for o in handed], recorded)
            if follow is not None:
                await (follow.committed() if recorded else follow.refused())
        return reply

    def message(self, name: str) -> Reply:
        """One of bot.messages on its own, for channels (e.g. the group-chat pointer)."""
        return Reply(self.flows.current.bot.messages[name].render({}))

    def unsaved_reply(self) -> Reply:
        """What the user hears when their step could not be saved: try again, nothing happened."""
        flows = self.flows.current
        tpl = flows.bot.messages["error"]
        buttons = [[Button(b.label, b.event, color=b.color) for b in row] for row in flows.bot.footer]
        return Reply(tpl.render({}), buttons)
