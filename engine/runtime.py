"""The engine: one user event in, the session stepped and committed, one reply out.

Per event: restore the peer's session (cached), resolve what the user did into an event or an
input, let the compiled machine route it, run the entered states' actions, render the reply,
commit the session — and only then hand the reply back to the channel.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from engine import picker
from engine.actions import REGISTRY
from engine.actions.context import ActionContext, Services
from engine.actions.registry import ActionRegistry
from engine.inputs import check_file, check_text, limits
from engine.machine import PICK_INTERNAL
from engine.model import RETURN, FlowSet, InputSpec, SayPart, StateSpec
from engine.ports import FileSpoolFull, Incoming, IncomingFile, OutboxItem, Session, SpooledFile
from engine.replies import Button, Reply, dump_replies
from engine.sessions import PeerLocks, SessionCache
from engine.templates import lookup
from engine.text import normalize_text

log = logging.getLogger(__name__)

RETURN_SLOT = "_return"
MAX_RETURN_DEPTH = 5
MAX_HOPS = 12  # transitions chained by action outcomes within one event
MAX_MATCH_LENGTH = 200  # longer text is never a button label or a command
MAX_PAYLOAD_LENGTH = 1024
KEEP_ON_RESET = ("user",)


class FlowSource(Protocol):
    """Where the engine reads the flow set for each event (hot reload swaps it)."""

    @property
    def current(self) -> FlowSet: ...


class StaticFlows:
    def __init__(self, flow_set: FlowSet) -> None:
        self._flow_set = flow_set

    @property
    def current(self) -> FlowSet:
        return self._flow_set


def render_say(parts: Sequence[SayPart], values: dict[str, Any]) -> str:
    out = []
    for part in parts:
        if part.when and not lookup(values, part.when):
            continue
        if part.unless and lookup(values, part.unless):
            continue
        out.append(part.template.render(values))
    return "\n".join(out).strip()


def parse_payload(raw: str) -> tuple[str, int | None] | None:
    if len(raw) > MAX_PAYLOAD_LENGTH:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("e"), str):
        return None
    index = data.get("i")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        return None
    return data["e"], index


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

    async def handle(self, peer: str, incoming: Incoming, *, deduped: bool = False,
                     keep_replies: bool = False) -> list[Reply]:
        """Handle one user event; the replies are returned only after the step is committed.

        An event whose id was handled before is dropped (no replies). deduped: the channel has
        already made sure of that (the callback inbox, a long-poll batch check), saving a read —
        on storage of one process only.
        keep_replies: the replies are committed with the step, for the channel to resend after a
        crash until it marks them sent (Storage.replies_sent).
        """
        async with self.locks.hold(peer):
            try:
                async with self.services.storage.peer_lock(peer):
                    return await self._handle(peer, incoming, deduped=deduped, keep_replies=keep_replies)
            except Exception:
                log.exception("storage failed for %s; the step was not saved", peer)
                self.sessions.forget(peer)
            return [self.unsaved_reply()]

    async def _handle(self, peer: str, incoming: Incoming, *, deduped: bool, keep_replies: bool) -> list[Reply]:
        """handle() under the peer's locks, in this process and across processes."""
        # On shared storage a channel's check proves nothing: another process may take up the
        # same event meanwhile (a restarted worker resuming its inbox, a second poller). Under
        # the peer's lock this read is the one that counts.
        if (incoming.event_id and (not deduped or self.shared)
                and await self.services.storage.seen_event(incoming.event_id)):
            log.debug("event %s already handled; dropped", incoming.event_id)
            return []
        # A version conflict means another writer stepped this session: redo on fresh
        # data. Actions that read SimpleOne or mail a code would run again; the peer's
        # lock across processes keeps that to a lock lost with its connection.
        for attempt in range(self.max_redo):
            if attempt and incoming.event_id and await self.services.storage.seen_event(incoming.event_id):
                log.info("event %s was handled by another writer; dropped", incoming.event_id)
                return []
            turn = Turn(self, self.flows.current, peer, await self.sessions.load(peer))
            reply = await turn.run(incoming)
            kept = dump_replies([reply]) if keep_replies and incoming.event_id else None
            queue = self.services.outbox
            reserved = bool(turn.outbox) and queue is not None and queue.reserve(turn.outbox)
            if await self.sessions.commit(turn.session, turn.expected_version, incoming.event_id, kept,
                                          outbox=turn.outbox):
                if turn.outbox:
                    return [await self.settle(peer, turn, reply, incoming.event_id if kept else None,
                                              reserved)]
                return [reply]
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
        try:
            follow = Turn(self, self.flows.current, peer, await self.sessions.load(peer))
            settled = await follow.settle(list(done.values()))
            if settled is None:
                return reply
            for outcome in handed:
                outcome.item.told = outcome.item.id in follow.settled
            kept = dump_replies([settled]) if kept_for else None
            recorded = await self.sessions.commit(follow.session, follow.expected_version, None, kept,
                                                  outbox=follow.outbox, reply_of=kept_for, finish=handed)
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


class Turn:
    """One event's work on one session."""

    def __init__(self, engine: Engine, flows: FlowSet, peer: str, session: Session | None) -> None:
        self.engine = engine
        self.services = engine.services
        self.flows = flows
        self.texts: list[str] = []
        self.show_state = False
        self.fresh = session is None
        self.pending_discard: list[str] = []
        self.outbox: list[OutboxItem] = []  # work for SimpleOne, committed with this step
        self.settled: list[str] = []  # outbox items whose outcome this step tells
        now = self.services.clock()
        if session is None:
            session = Session(peer, flows.bot.start, {}, flows.version, now, 0)
        self.session = session
        if session.state not in flows.states:
            self._reset(session, "state_gone")
        elif now - session.updated_at > self.services.idle_timeout and session.state != flows.bot.start:
            self._reset(session, "expired")
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
            if name in self.flows.file_slots and isinstance(value, list):
                self.pending_discard.extend(str(v.get("id")) for v in value if isinstance(v, dict))
        session.slots = {k: session.slots[k] for k in KEEP_ON_RESET if k in session.slots}
        session.state = self.flows.bot.start
        self.fresh = True
        self.message(notice)

    def message(self, name: str, extra: dict[str, Any] | None = None) -> None:
        tpl = self.flows.bot.messages.get(name)
        if tpl is not None:
            self.texts.append(tpl.render({**self.slots, **(extra or {})}))

    def say(self, parts: Sequence[SayPart], extra: dict[str, Any] | None = None) -> None:
        text = render_say(parts, {**self.slots, **extra} if extra else self.slots)
        if text:
            self.texts.append(text)

    # ------------------------------------------------------------------ the step

    async def run(self, incoming: Incoming) -> Reply:
        try:
            for file_id in self.pending_discard:
                await self.services.spool.discard(file_id)
            if self.fresh:
                await self.enter(self.flows.bot.start)
                resolved = self.resolve(incoming)
                if resolved is not None:
                    await self.dispatch(*resolved)
                else:
                    # A first word is a greeting: the menu answers it; only what cannot be
                    # taken at all is said (a sticker, a file that did not come through).
                    self.show_state = True
                    if incoming.unsupported:
                        self.message("unsupported_attachment")
                    for name in incoming.failed:
                        self.message("file_failed", {"file": {"name": name}})
            else:
                await self.consume(incoming)
            return self.reply()
        except Exception:
            log.exception("step failed for %s in state %s", self.session.peer, self.session.state)
            return await self.recover()

    async def settle(self, items: Sequence[OutboxItem]) -> Reply | None:
        """Fire the outcome event of each finished item the current state waits for; None if it
        waits for none of them (the user has moved on: the outcome goes out as a notice).
        self.settled: the items told here."""
        handled = False
        try:
            for item in items:
                result = item.result or {}
                event = str(result.get("event") or "")
                if not event or not self.flows.machine.handles(self.session.state, event):
                    continue
                for name, value in dict(result.get("vars") or {}).items():
                    previous = self.slots.get(name)
                    merge = isinstance(previous, dict) and isinstance(value, dict)
                    self.slots[name] = {**previous, **value} if merge else value  # type: ignore[dict-item]
                await self.fire(event)
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
        self.message("error")
        return self.reply()

    async def consume(self, incoming: Incoming) -> None:
        for name in incoming.failed:
            self.message("file_failed", {"file": {"name": name}})
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
            await self.dispatch(*resolved)
            return
        inp = self.state.input
        has_files = bool(incoming.files or incoming.oversized)
        if inp is not None and inp.kind == "attachments":
            await self.take_files(inp, incoming)
        elif inp is not None and (incoming.text.strip() or not has_files or inp.files_slot):
            await self.take_text(inp, incoming)
        elif incoming.files or incoming.oversized:
            self.message("files_not_expected")
        elif not incoming.unsupported:
            self.message("stray")

    def resolve(self, incoming: Incoming) -> tuple[str, int | None] | None:
        """A button press, a typed label, list item or command; None when it is none of these."""
        offered = self.offered_buttons()
        if incoming.payload:
            parsed = parse_payload(incoming.payload)
            if parsed is not None:
                event, index = parsed
                if any(b.event == event and b.index == index for b in offered):
                    return parsed
                if index is None and event in self.flows.bot.global_on:
                    return parsed
        text = incoming.text.strip()
        if not text or len(text) > MAX_MATCH_LENGTH:
            return None
        norm = normalize_text(text)
        for button in offered:
            if normalize_text(button.label) == norm:
                return button.event, button.index
        st = self.state
        if st.pick is not None:
            index = picker.match(picker.view(self.flows, st, self.slots), text, norm)
            if index is not None:
                return "pick", index
        command = self.flows.bot.commands.get(norm)
        if command is not None:
            return command, None
        return None

    async def dispatch(self, event: str, index: int | None) -> None:
        st = self.state
        if st.pick is not None:
            v = picker.view(self.flows, st, self.slots)
            if event == "back" and v.group != picker.TOP:
                event = "pick_up"
            if event in PICK_INTERNAL:
                outcome = picker.navigate(self.flows, st, self.slots, event, index)
                if outcome is None:
                    self.show_state = True
                    return
                event = outcome
        await self.fire(event)

    async def fire(self, event: str) -> None:
        machine, bot = self.flows.machine, self.flows.bot
        for _ in range(MAX_HOPS):
            step = machine.fire(self.session.state, event)
            if step is None or step.spec is None:
                log.info("event %r is not handled in %s", event, self.session.state)
                self.message("stray")
                return
            spec = step.spec
            stack = self.slots.get(RETURN_SLOT)
            # A global event (menu, help, cancel…) abandons any call in progress, and so must
            # the places it would have returned to.
            stack = list(stack) if isinstance(stack, list) and not step.is_global else []
            dest = step.dest
            if dest == RETURN:
                dest = stack.pop() if stack else (spec.otherwise or bot.start)
                if dest not in self.flows.states:  # a stale entry from an older flow set
                    dest = spec.otherwise or bot.start
            if spec.then:
                stack = [*stack, spec.then][-MAX_RETURN_DEPTH:]
            if stack:
                self.slots[RETURN_SLOT] = stack
            else:
                self.slots.pop(RETURN_SLOT, None)
            for name in spec.clear:
                await self.clear_slot(name)
            self.slots.update(spec.set)
            self.say(spec.say)
            outcome = await self.enter(dest, event)
            if outcome is None:
                return
            event = outcome
        log.error("more than %d chained transitions from %s; back to the start", MAX_HOPS, self.session.state)
        self.session.state = bot.start
        self.message("error")

    async def enter(self, dest: str, event: str | None = None) -> str | None:
        """Move to dest and run its actions; returns the first action outcome, if any."""
        previous = self.session.state
        self.session.state = dest
        self.show_state = True
        self.engine.entered[dest] += 1
        if dest == self.flows.bot.start:
            self.slots.pop(RETURN_SLOT, None)
        st = self.flows.states[dest]
        # A list keeps its page and group when the user steps back into it (Назад from the
        # description, К списку from a ticket); any other way in starts afresh.
        if st.pick is not None and not (event == "back" and previous.partition(".")[0] == dest.partition(".")[0]):
            picker.reset(self.flows, st, self.slots)
        for name in st.enter:
            info = self.engine.registry.get(name)
            if info is None:
                raise LookupError(f"unknown action {name!r} in {dest}")
            outcome = await info.fn(ActionContext(self.session.peer, self.slots, self.flows, self.services,
                                                  self.expected_version, self.outbox))
            if outcome:
                return outcome
        return None

    # ------------------------------------------------------------------ input

    async def take_text(self, inp: InputSpec, incoming: Incoming) -> None:
        # Files sent along are kept first, whatever becomes of the text: nothing sent is lost.
        if inp.files_slot and (incoming.files or incoming.oversized):
            target = self.flows.file_slots.get(inp.files_slot)
            if target is not None:
                await self.take_files(target, Incoming(files=incoming.files, oversized=incoming.oversized),
                                      accepted=inp.accepted)
        verdict = check_text(inp, incoming.text)
        if not verdict.ok:
            self.input_error(inp, verdict.error, verdict.vars)
            return
        self.slots[inp.slot] = verdict.value
        await self.fire("ok")

    async def take_files(self, inp: InputSpec, incoming: Incoming,
                         accepted: Sequence[SayPart] | None = None) -> None:
        """Keep valid files in inp.slot; accepted: the text said per file (default: the input's)."""
        files = [f for f in self.slots.get(inp.slot) or [] if isinstance(f, dict)]
        candidates: list[IncomingFile | tuple[str, int]] = [*incoming.files, *incoming.oversized]
        for file in candidates:
            verdict = check_file(inp, file, len(files))
            if isinstance(file, tuple) and verdict.ok:
                # Too big for the channel to fetch, whatever this step would take.
                verdict.error = "file_too_big"
            if not verdict.ok:
                self.input_error(inp, verdict.error, verdict.vars)
                continue
            if isinstance(file, tuple):
                continue
            try:
                stored = await self.services.spool.put(self.session.peer, file.name, file.mime, file.data)
            except FileSpoolFull as exc:
                log.error("spool full, file of %s refused: %s", self.session.peer, exc)
                self.message("busy")
                continue
            files.append(stored.as_slot())
            self.say(inp.accepted if accepted is None else accepted,
                     {**limits(inp), **verdict.vars, "count": len(files)})
        self.slots[inp.slot] = files
        text = incoming.text.strip()
        if text and inp.text_slot:
            previous = str(self.slots.get(inp.text_slot) or "")
            self.slots[inp.text_slot] = f"{previous}\n{text}".strip()[: inp.max_length]
            self.say(inp.noted, {**limits(inp), "count": len(files)})
        elif text and not incoming.files:
            self.message("stray")

    def input_error(self, inp: InputSpec, error: str | None, extra: dict[str, Any]) -> None:
        tpl = inp.errors.get(error or "")
        if tpl is None:
            self.message("stray")
            return
        self.texts.append(tpl.render({**self.slots, **limits(inp), **extra}))

    async def clear_slot(self, name: str) -> None:
        value = self.slots.pop(name, None)
        if name in self.flows.file_slots and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    await self.services.spool.discard(SpooledFile.from_slot(item).id)

    # ------------------------------------------------------------------ output

    def offered_buttons(self) -> list[Button]:
        return [b for row in self.buttons() for b in row]

    def buttons(self) -> list[list[Button]]:
        st = self.state
        rows: list[list[Button]] = []
        if st.pick is not None:
            v = picker.view(self.flows, st, self.slots)
            rows.extend(picker.buttons(self.flows, st, v, self.flows.machine.handles(st.name, "back")))
        specs = [*st.buttons, *(self.flows.bot.footer if st.footer else ())]
        for row in specs:
            shown = [Button(b.label, b.event, color=b.color) for b in row
                     if not (b.when and not lookup(self.slots, b.when))
                     and not (b.unless and lookup(self.slots, b.unless))]
            if shown:
                rows.append(shown)
        return rows

    def reply(self) -> Reply:
        texts = list(self.texts)
        st = self.state
        if self.show_state or not texts:
            text = render_say(st.say, {**self.slots, **limits(st.input)} if st.input else self.slots)
            if text:
                texts.append(text)
            if st.pick is not None:
                v = picker.view(self.flows, st, self.slots)
                lines = picker.lines(self.flows, v, numbered=st.pick.source == "catalog")
                if lines:
                    texts.append("\n".join(lines))
        return Reply("\n\n".join(t for t in texts if t) or "…", self.buttons(), inline=st.inline)
