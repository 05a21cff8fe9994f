"""One event's work on one session: what the user did, the machine's transitions, their
effects (actions, discarded files), and the reply."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from engine.actions.context import ActionContext, Services
from engine.actions.registry import ActionRegistry
from engine.actions.sign_in_draft import SignInDraft
from engine.dialogue import matching, picker, render
from engine.dialogue.inputs import limits
from engine.dialogue.intake import Intake
from engine.dialogue.machine import RETURN_SLOT, machine_of
from engine.dialogue.model import Dialogue
from engine.dialogue.sessions import copy_json
from engine.flows.model import TYPED, FlowSet, InputSpec, SayPart, StateSpec, render_say
from engine.ports import Incoming, OutboxItem, Session, WatchedTicket
from engine.ports.files import FileSpool, SpooledFile, slot_file_ids
from engine.ports.telemetry import ACTION_OUTCOMES, FLOW_COUNTS, OUTBOX_QUEUED, PICKS
from engine.replies import Reply
from engine.text_safety import clean_file_name

log = logging.getLogger(__name__)

MAX_HOPS = 12  # transitions chained by outcomes within one event
# Messages that say the step did not understand what the user sent.
MISUNDERSTOOD = frozenset({"stray", "stale_button"})
KEEP_ON_RESET = ("user",)


class AlreadyHandled(Exception):
    """The event was handled before (a duplicate): its step must not go on."""


class StepSpool:
    """The file spool as one step uses it: nothing it does outlives a step that is not
    committed. Files it stores are remembered (discarded if the step is refused), files it
    discards are only noted (discarded once the step is committed)."""

    def __init__(self, spool: FileSpool) -> None:
        self.spool = spool
        self.stored: list[str] = []
        self.discarded: list[str] = []

    async def put(self, peer: str, name: str, mime: str, data: bytes) -> SpooledFile:
        stored = await self.spool.put(peer, name, mime, data)
        self.stored.append(stored.id)
        return stored

    def path(self, file_id: str) -> Path:
        return self.spool.path(file_id)

    async def discard(self, file_id: str) -> None:
        self.discarded.append(file_id)

    def undo(self) -> None:
        """The step is undone (after a bug): the files it stored go at its commit, and the
        draft keeps those it would have discarded."""
        self.discarded = list(self.stored)

    async def finish(self, committed: bool) -> None:
        """After the commit (or the refusal) of the step: discard what it let go."""
        for file_id in self.discarded if committed else self.stored:
            try:
                await self.spool.discard(file_id)
            except Exception:  # a file left behind is swept by housekeeping; the step stands
                log.exception("discarding spooled file %s failed", file_id)
        self.stored, self.discarded = [], []


class SessionReader(Protocol):
    async def load(self, peer: str) -> Session | None: ...


class TurnHost(Protocol):
    """What a turn uses of the engine that runs it (engine.dialogue.runtime.Engine)."""

    @property
    def services(self) -> Services: ...

    @property
    def registry(self) -> ActionRegistry: ...

    @property
    def sessions(self) -> SessionReader: ...

    @property
    def entered(self) -> Counter[str]:
        """How often each state was entered (by committed steps)."""
        ...


class Turn:
    """One event's work on one session."""

    def __init__(self, engine: TurnHost, flows: FlowSet, peer: str, session: Session | None) -> None:
        self.engine = engine
        self.services: Services = engine.services
        self.flows = flows
        self.texts: list[str] = []
        self.show_state = False
        self.fresh = session is None
        self.resumed = False  # an idle dialogue taken up again (its draft kept)
        self.misunderstood = False  # the step answered that it did not understand
        # A first message the start cannot take is answered with the start alone, not "не понял".
        self.quiet_stray = False
        self.spool = StepSpool(engine.services.spool)
        self.entered: Counter[str] = Counter()  # added to the engine's when the step commits
        self.event_id: str | None = None
        self.new_event = False  # made sure the event was never handled (see confirm_new)
        self.outbox: list[OutboxItem] = []  # work for SimpleOne, committed with this step
        self.settled: list[str] = []  # outbox items whose outcome this step tells
        self.sign_in = SignInDraft(self.services.storage, peer)  # committed with this step
        self.watch: list[WatchedTicket] = []  # tickets followed from this step's commit on
        self.counts: list[str] = []  # counters the step's transitions named
        # For metrics, reported when the step commits: (action, outcome) of each action that ended
        # with one, and (state, list slot) of each pick-list choice.
        self.outcomes: list[tuple[str, str]] = []
        self.picks: list[tuple[str, str]] = []
        now = self.services.clock()
        if session is None:
            session = Session(peer, flows.bot.start, {}, flows.version, now, 0)
        self.session = session
        if session.state not in flows.states:
            self._reset(session, "state_gone")
        elif now - session.updated_at > self.services.idle_timeout and session.state != flows.bot.start:
            # Idle a long while: the draft stays; the message is taken where the user left off
            # if it fits there, or they are asked whether to go on or start again (run()).
            self.resumed = True
        self.expected_version = session.version
        session.updated_at = now
        session.flow_version = flows.version

    # ------------------------------------------------------------------ helpers

    @property
    def slots(self) -> dict[str, Any]:
        return self.session.slots

    @property
    def state(self) -> StateSpec:
        return self.flows.states[self.session.state]

    def _reset(self, session: Session, notice: str) -> None:
        for name, value in session.slots.items():
            if name in self.flows.file_slots:
                self.spool.discarded.extend(slot_file_ids(value))
        session.slots = {k: session.slots[k] for k in KEEP_ON_RESET if k in session.slots}
        session.state = self.flows.bot.start
        self.fresh = True
        self.message(notice)

    def message(self, name: str, extra: dict[str, Any] | None = None) -> None:
        if name in MISUNDERSTOOD:
            self.misunderstood = True
            if self.quiet_stray and name == "stray":
                self.show_state = True
                return
        text = self.render_message(name, extra)
        if text:
            self.texts.append(text)

    def say(self, parts: Sequence[SayPart], extra: dict[str, Any] | None = None) -> None:
        text = render_say(parts, {**self.slots, **extra} if extra else self.slots)
        if text:
            self.texts.append(text)

    def input_error(self, inp: InputSpec, error: str | None, extra: dict[str, Any]) -> None:
        tpl = inp.errors.get(error or "")
        if tpl is None:
            self.message("stray")
            return
        self.texts.append(tpl.render({**self.slots, **limits(inp), **extra}))

    def intake(self) -> Intake:
        return Intake(self.flows, self.spool, self.session.peer, self.slots, self)

    # ------------------------------------------------------------------ the step

    async def run(self, incoming: Incoming) -> Reply:
        """The step, not committed yet; raises AlreadyHandled for a duplicate found on the way."""
        self.event_id = incoming.event_id
        try:
            if self.fresh:
                # The first message is taken at the start like any other (a problem in the
                # user's words starts a ticket); what the start cannot take shows it.
                await self.arrive(self.flows.bot.start)
                self.quiet_stray = True
                await self.consume(incoming)
            elif self.resumed:
                await self.resume(incoming)
            else:
                await self.consume(incoming)
            return self.reply()
        except AlreadyHandled:
            raise
        except Exception:
            log.exception("step failed for %s in state %s", self.session.peer, self.session.state)
            return await self.recover()

    async def committed(self) -> None:
        self.engine.entered.update(self.entered)
        self.report()
        await self.spool.finish(True)

    def report(self) -> None:
        """What the committed step did, for metrics (only committed steps count: a step redone
        after a refused commit is counted once)."""
        telemetry = self.services.telemetry
        for action, outcome in self.outcomes:
            telemetry.count(ACTION_OUTCOMES, action=action, outcome=outcome)
        for counter in self.counts:
            telemetry.count(FLOW_COUNTS, counter=counter)
        for state, source in self.picks:
            telemetry.count(PICKS, state=state, source=source)
        for item in self.outbox:
            telemetry.count(OUTBOX_QUEUED, kind=item.kind)

    async def refused(self) -> None:
        await self.spool.finish(False)

    async def confirm_new(self) -> None:
        """Before anything that acts outside the step (a letter sent): make sure the event was
        not handled already, since the commit that would refuse a duplicate comes after it."""
        if self.event_id is None or self.new_event:
            return
        if await self.services.storage.seen_event(self.event_id):
            raise AlreadyHandled(self.event_id)
        self.new_event = True

    async def resume(self, incoming: Incoming) -> None:
        """An idle dialogue taken up again: the message where the user left off, with a word
        that the draft was kept; or, if it does not fit there, the question whether to go on
        (back to that step) or start again (bot.resume)."""
        left_at, slots_before = self.session.state, copy_json(self.slots)
        counted, outcomes, picks = len(self.counts), len(self.outcomes), len(self.picks)
        await self.consume(incoming)
        resume = self.flows.bot.resume
        if not self.misunderstood or resume is None or resume not in self.flows.states:
            self.texts.insert(0, self.render_message("expired"))
            return
        self.session.state, self.texts, self.show_state, self.misunderstood = left_at, [], False, False
        # The message was not taken there: nothing it did counts (counters, metrics alike).
        del self.counts[counted:], self.outcomes[outcomes:], self.picks[picks:]
        self.slots.clear()
        self.slots.update(slots_before)
        self.spool.undo()  # the draft as it was keeps its files; files that message brought go
        await self.arrive(resume)
        self.slots[RETURN_SLOT] = [left_at]

    def render_message(self, name: str, extra: dict[str, Any] | None = None) -> str:
        tpl = self.flows.bot.messages.get(name)
        return tpl.render({**self.slots, **extra} if extra else self.slots) if tpl is not None else ""

    async def settle(self, items: Sequence[OutboxItem]) -> Reply | None:
        """Fire the outcome event of each finished item the current state waits for; None if it
        waits for none of them (the user has moved on: the outcome goes out as a notice).
        self.settled: the items told here."""
        handled = False
        try:
            for item in items:
                result = item.result or {}
                event = str(result.get("event") or "")
                if not event or not machine_of(self.flows).handles(self.session.state, event):
                    continue
                before = dict(self.slots)
                for name, value in dict(result.get("vars") or {}).items():
                    previous = self.slots.get(name)
                    merge = isinstance(previous, dict) and isinstance(value, dict)
                    self.slots[name] = {**previous, **value} if merge else value  # type: ignore[dict-item]
                if not await self.fire(event, quiet=True):
                    # Declared but guarded off: not told here, so the notice tells it.
                    self.slots.clear()
                    self.slots.update(before)
                    continue
                self.settled.append(item.id)
                handled = True
        except Exception:
            log.exception("outcome step failed for %s in state %s", self.session.peer, self.session.state)
            return None
        return self.reply() if handled else None

    async def recover(self) -> Reply:
        """After a bug: keep the session as it was before this event, say so, show its buttons."""
        before = await self.engine.sessions.load(self.session.peer)
        self.session = before or Session(self.session.peer, self.flows.bot.start, {}, self.flows.version,
                                         self.services.clock(), 0)
        if self.session.state not in self.flows.states:
            self.session.state = self.flows.bot.start
        self.expected_version = self.session.version
        self.session.updated_at = self.services.clock()
        self.texts = []
        self.show_state = False
        self.outbox.clear()  # the step is undone, and so is what it queued: the draft still has it
        self.counts.clear()
        self.outcomes.clear()
        self.picks.clear()
        self.spool.undo()
        self.entered.clear()
        self.message("error")
        return self.reply()

    async def consume(self, incoming: Incoming) -> None:
        for name in incoming.failed:
            self.message("file_failed", {"file": {"name": clean_file_name(name)}})
        if not (incoming.text.strip() or incoming.payload or incoming.files or incoming.oversized
                or incoming.unsupported):
            if incoming.failed:
                return
            self.show_state = True  # nothing to act on (a greeting, a bare forward): show where we are
            return
        if incoming.unsupported:
            self.message("unsupported_attachment")
            if not (incoming.text.strip() or incoming.files or incoming.payload):
                return
        resolved = self.resolve(incoming)
        if resolved is not None:
            await self.fire(*resolved)
            return
        inp = self.state.input
        has_files = bool(incoming.files or incoming.oversized)
        number = picker.typed_number(incoming.text) if self.state.pick is not None else None
        if number is not None and not has_files:
            # A number the list has no item for (an item's number was matched above): say which
            # numbers it has, rather than take the number as text.
            count = len(picker.view(self.flows, self.state, self.slots).items)
            self.message("no_such_item", {"number": number, "count": count})
            return
        start = self.flows.states[self.flows.bot.start]
        if inp is None and self.state.free_text and start.input is not None and (incoming.text.strip() or has_files):
            # A dialogue has ended here: what the user writes next is a new request, as at the start,
            # which forgets every draft as a move to the start does (machine.py).
            await self.forget(machine_of(self.flows).all_drafts)
            await self.arrive(start.name)
            await self.consume(incoming)
            return
        if incoming.payload and not incoming.text.strip() and not has_files:
            # A press of a button this step does not offer (an old keyboard, a forged payload):
            # never the step's input.
            self.message("stale_button")
            return
        if inp is not None and inp.kind == "attachments":
            if await self.intake().files(inp, incoming):
                await self.fire(TYPED)
        elif inp is not None and (incoming.text.strip() or not has_files or inp.files_slot):
            if await self.intake().text(inp, incoming):
                await self.fire("ok")
        elif incoming.files or incoming.oversized:
            self.message("files_not_expected")
        elif not incoming.unsupported:
            self.message("stray")

    def resolve(self, incoming: Incoming) -> tuple[str, int | None] | None:
        offered = [b for row in render.state_buttons(self.flows, self.state, self.slots) for b in row]
        resolved = matching.resolve(self.flows, self.state, self.slots, offered, incoming)
        if (resolved is not None and incoming.payload and resolved[0] in self.flows.bot.global_on
                and matching.payload_names_ticket(incoming.payload)):
            # A notice's button names its ticket: as if its number were typed with the command.
            # One that is not a ticket number leaves none (never a number typed earlier).
            number = matching.payload_number(self.flows, incoming.payload)
            if number is not None:
                self.slots["number"] = number
            else:
                self.slots.pop("number", None)
        if resolved is None and not incoming.payload:
            typed = matching.pattern(self.flows, self.state, incoming)
            if typed is not None:
                event, slot, value = typed
                self.slots[slot] = value
                return event, None
        return resolved

    async def fire(self, event: str, index: int | None = None, *, quiet: bool = False) -> bool:
        """Trigger `event` on the machine, run what its transition named, and go on with an
        action's outcome as the next trigger. In a pick list the user's event may first move
        within the list, or become 'chosen'. False when the first trigger was not taken (said to
        the user as not understood, unless quiet)."""
        machine = machine_of(self.flows)
        if self.state.pick is not None:
            moved, event = self.page(self.state, event, index)
            if moved:
                return True
        going_back = event == "back"
        for hop in range(MAX_HOPS):
            dialogue = Dialogue(self.flows, self.session.state, self.slots, going_back=going_back)
            if not machine.trigger(dialogue, event, index):
                log.info("event %r is not handled in %s", event, self.session.state)
                if hop or not quiet:
                    self.message("stray")
                return hop > 0
            self.session.state = dialogue.state
            self.texts.extend(dialogue.said)
            self.counts.extend(dialogue.counted)
            self.show_state = self.show_state or dialogue.show_state
            for file_id in dialogue.discard:
                await self.spool.discard(file_id)
            outcome = await self.run_actions(dialogue.arrived) if dialogue.arrived else None
            if outcome is None:
                return True
            event, index = outcome, None
        log.error("more than %d chained transitions from %s; back to the start", MAX_HOPS, self.session.state)
        self.session.state = self.flows.bot.start
        self.message("error")
        return True

    async def forget(self, names: Sequence[str]) -> None:
        """Clear these slots, discarding the spooled files of file slots."""
        for name in names:
            value = self.slots.pop(name, None)
            if name in self.flows.file_slots:
                for file_id in slot_file_ids(value):
                    await self.spool.discard(file_id)

    def page(self, st: StateSpec, event: str, index: int | None) -> tuple[bool, str]:
        """A pick list's own events: paging, opening a group, Назад inside a group. (True, _)
        when the user moved within the list; else the event for the machine ('chosen' when
        an item was picked)."""
        if event == "back" and picker.view(self.flows, st, self.slots).group != picker.TOP:
            event = "pick_up"
        if event not in picker.NAVIGATION:
            return False, event
        outcome = picker.navigate(self.flows, st, self.slots, event, index)
        if outcome is None:
            self.show_state = True
            return True, event
        if outcome == "chosen" and st.pick is not None:
            self.picks.append((st.name, st.pick.source))
        return False, outcome

    async def arrive(self, state: str) -> None:
        """Enter `state` without a transition (a new or reset dialogue) and go on from there."""
        self.session.state = state
        self.show_state = True
        self.slots.pop(RETURN_SLOT, None)
        st = self.flows.states[state]
        if st.pick is not None:
            picker.reset(self.flows, st, self.slots)
        # Its actions' outcome leads on like any other (flowlint makes sure the state handles it).
        outcome = await self.run_actions(state)
        if outcome:
            await self.fire(outcome)

    async def run_actions(self, state: str) -> str | None:
        """The entered state's actions, in order, up to the first that ends with an outcome."""
        self.entered[state] += 1
        for name in self.flows.states[state].enter:
            info = self.engine.registry.get(name)
            if info is None:
                raise LookupError(f"unknown action {name!r} in {state}")
            if info.outside:
                await self.confirm_new()
            outcome = await info.fn(ActionContext(self.session.peer, self.slots, self.flows, self.services,
                                                  self.sign_in, self.outbox, self.watch))
            if outcome:
                self.outcomes.append((name, outcome))
                return outcome
        return None

    def reply(self) -> Reply:
        return render.reply(self.flows, self.state, self.slots, self.texts, self.show_state)
