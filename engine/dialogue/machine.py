"""The flow set compiled once onto one `transitions` machine, which does the routing.

Every flow's states are states of one `Machine` ("flow.state" names: nesting them in a
HierarchicalMachine made a trigger 5-6x dearer, see bench/trigger.py). The machine decides
everything about an event; nothing beside it second-guesses it:
- `when`/`unless` of a transition are its conditions/unless, over the session's slots;
- `set`/`clear`/`say` are its `before` callback, the return stack (`then` pushes, `return`
  pops) too: a transition to 'return' goes to its 'else' when the stack is empty, else is one
  guarded transition per place the stack's top may name, then the 'else' again;
- global events (bot.global) are transitions from every state that lacks its own (or whose own
  are all guarded), added last, so a state's own transition wins; taking one drops the stack;
- arriving notes the state whose enter actions are to run;
- flows' drafts (`draft:` in a flow file) are forgotten by the same callback, by the rules of
  `forgotten_flows` below.
Paging within a pick list is the picker's (engine/dialogue/picker.py): it changes no state, and
as internal transitions it cost one more trigger per pick; a choice comes back
to the machine as the event 'chosen'.
No model is attached and none is ever added: the engine triggers an event on a throw-away
`Dialogue` per event (engine/dialogue/model.py) and runs the effects it noted afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast
from weakref import WeakKeyDictionary

from transitions import EventData, Machine

from engine import figures
from engine.dialogue import picker
from engine.dialogue.model import Dialogue
from engine.flows.model import HERE, RETURN, Alternatives, FlowSet, TransitionSpec, render_say
from engine.flows.templates import lookup
from engine.ports.files import slot_file_ids

RETURN_SLOT = "_return"
MAX_RETURN_DEPTH = 5
DEFAULT_TEXT_LIMIT = 4000  # a slot no text input writes: as much as a SimpleOne description holds

Callback = Callable[[EventData], Any]


def _dialogue(event: EventData) -> Dialogue:
    return cast(Dialogue, event.model)


def _stack(slots: dict[str, Any]) -> list[str]:
    stack = slots.get(RETURN_SLOT)
    return [str(s) for s in stack] if isinstance(stack, list) else []


def _stack_empty(event: EventData) -> bool:
    return not _stack(_dialogue(event).slots)


def _set_stack(slots: dict[str, Any], stack: list[str]) -> None:
    if stack:
        slots[RETURN_SLOT] = stack[-MAX_RETURN_DEPTH:]
    else:
        slots.pop(RETURN_SLOT, None)


def flow_of(state: str) -> str:
    return state.partition(".")[0]


def forgotten_flows(drafts: Mapping[str, Sequence[str]], source_flow: str, stack_before: Sequence[str],
                    dest_flow: str, stack_after: Sequence[str]) -> list[str]:
    """The flows with a draft that a move leaves with no way back: open before it (the flow of the
    step it is from, or named on the return stack: a detour with `then:` comes back to it) and
    not after it."""
    open_before = {source_flow, *(flow_of(s) for s in stack_before)}
    open_after = {dest_flow, *(flow_of(s) for s in stack_after)}
    return [flow for flow in drafts if flow in open_before and flow not in open_after]


def open_flows(drafts: Mapping[str, Sequence[str]], source_flow: str, stack: Sequence[str]) -> list[str]:
    """The flows with a draft open at a step: its own, and those named on the return stack."""
    open_now = {source_flow, *(flow_of(s) for s in stack)}
    return [flow for flow in drafts if flow in open_now]


_compiled: WeakKeyDictionary[FlowSet, DialogueMachine] = WeakKeyDictionary()


def machine_of(flows: FlowSet) -> DialogueMachine:
    """The flow set's machine, compiled once (the loader compiles it before a flow set is used,
    so that a reload swaps in a ready one); it lives as long as the flow set."""
    machine = _compiled.get(flows)
    if machine is None:
        machine = _compiled[flows] = DialogueMachine(flows)
    return machine


class DialogueMachine:
    """Compiles a flow set's states onto a `transitions.Machine`; `trigger` steps a Dialogue."""

    def __init__(self, flows: FlowSet) -> None:
        # Parts of the flow set, never the flow set itself: it is the key the machine is kept
        # under (machine_of), and a strong reference back would keep both alive for ever.
        # Callbacks that need the whole flow set (the picker) take the dialogue's.
        self.states = flows.states
        self.global_on = flows.bot.global_on
        self.start = flows.bot.start
        self.resume = flows.bot.resume
        self.file_slots = flows.file_slots
        # Each flow's draft, and all of them (what a global event or the main menu forgets).
        self.drafts = {name: flow.draft for name, flow in flows.flows.items() if flow.draft}
        self.all_drafts = tuple(dict.fromkeys(slot for draft in self.drafts.values() for slot in draft))
        # What a slot's text inputs allow, for text appended to it by a transition.
        self.text_limits: dict[str, int] = {}
        for st in flows.states.values():
            if st.input is not None and st.input.kind == "text":
                self.text_limits[st.input.slot] = min(st.input.max_length,
                                                      self.text_limits.get(st.input.slot, st.input.max_length))
        self.machine = Machine(
            model=None,
            states=list(flows.states),
            initial=flows.bot.start,
            auto_transitions=False,
            ignore_invalid_triggers=True,
            send_event=True,
        )
        # Where a 'return' may lead: the states some 'then' names first (the usual case), then
        # every other state, for entries an older flow set pushed (a reload renamed a 'then').
        thens = sorted({t.then for alts in self._all_alternatives() for t in alts if t.then and t.then in flows.states})
        self.return_targets = [*thens, *(name for name in flows.states if name not in thens)]
        # What the flows declare each state handles (own and global transitions), for showing
        # buttons and for outcomes told later; the routing itself is the machine's.
        self.declared: set[tuple[str, str]] = set()
        for name, st in flows.states.items():
            for event, alternatives in st.on.items():
                self._add(name, event, alternatives, is_global=False)
        # Global events last: transitions tries a state's own transitions first, and falls
        # through to the global one when all of the state's own are guarded and none holds.
        for event, alternatives in flows.bot.global_on.items():
            for name, st in flows.states.items():
                own = st.on.get(event)
                if not own or own[-1].when or own[-1].unless:
                    self._add(name, event, alternatives, is_global=True)

    # ------------------------------------------------------------------ running

    def handles(self, state: str, event: str) -> bool:
        return (state, event) in self.declared

    def trigger(self, dialogue: Dialogue, event: str, index: int | None = None) -> bool:
        found = self.machine.events.get(event)
        if found is None:
            return False
        taken: bool = found.trigger(dialogue, index=index)
        return taken

    # ------------------------------------------------------------------ compiling

    def _all_alternatives(self) -> Iterable[Alternatives]:
        for st in self.states.values():
            yield from st.on.values()
        yield from self.global_on.values()

    def _add(self, source: str, event: str, alternatives: Alternatives, *, is_global: bool) -> None:
        self.declared.add((source, event))
        for spec in alternatives:
            guards: dict[str, Any] = {
                "conditions": [self._slot_set(w) for w in spec.when],
                "unless": [self._slot_set(u) for u in spec.unless],
            }
            if spec.to != RETURN:
                self.machine.add_transition(event, source, spec.to, **guards,
                                            before=[self._take(spec, event, source, spec.to, is_global, pop=False)])
                continue
            # 'return' goes to the top of the return stack: with nothing on it, to its 'else' (tried
            # first: the usual case costs one condition); otherwise one transition per place the
            # top may name, the flow set's 'then's before other states; a top that names no state
            # of this flow set falls through to the 'else' too. A global event has dropped the
            # stack, so it has only the 'else'.
            fallback = spec.otherwise if spec.otherwise is not None and spec.otherwise in self.states else self.start
            to_fallback = self._take(spec, event, source, fallback, is_global, pop=True)
            if not is_global:
                for alt in spec.otherwise_when:  # a list 'else': its guarded items first, in order
                    when = [self._slot_set(w) for w in alt.when]
                    unless = [self._slot_set(u) for u in alt.unless]
                    self.machine.add_transition(
                        event, source, alt.to, before=[self._take(spec, event, source, alt.to, is_global, pop=True)],
                        conditions=[_stack_empty, *guards["conditions"], *when], unless=[*guards["unless"], *unless])
                self.machine.add_transition(event, source, fallback, before=[to_fallback],
                                            conditions=[_stack_empty, *guards["conditions"]], unless=guards["unless"])
                for target in self.return_targets:
                    self.machine.add_transition(event, source, target,
                                                before=[self._take(spec, event, source, target, is_global, pop=True,
                                                                   returning=True)],
                                                conditions=[self._returns_to(target), *guards["conditions"]],
                                                unless=guards["unless"])
            self.machine.add_transition(event, source, fallback, before=[to_fallback], **guards)

    def _count_left(self, dialogue: Dialogue, flows: Sequence[str], source: str, stack: Sequence[str],
                    finished: bool) -> None:
        """Count the dialogues with a draft this move leaves unfinished, by where the user was in
        each: the step itself when it is that flow's, else the flow's step they stepped aside
        from (a detour to help, the idle question bot.resume), the newest on the return stack."""
        source_flow = flow_of(source)
        for flow in flows:
            if finished and flow == source_flow:
                continue
            where = source if flow == source_flow else next(
                (s for s in reversed(stack) if flow_of(s) == flow), source)
            dialogue.counted.append(f"{figures.LEFT}:{flow}:{where}")

    # ------------------------------------------------------------------ conditions

    @staticmethod
    def _slot_set(path: str) -> Callback:
        def slot_set(event: EventData) -> bool:
            return bool(lookup(_dialogue(event).slots, path))
        return slot_set

    @staticmethod
    def _returns_to(target: str) -> Callback:
        def returns_to(event: EventData) -> bool:
            stack = _stack(_dialogue(event).slots)
            return bool(stack) and stack[-1] == target
        return returns_to

    # ------------------------------------------------------------------ callbacks

    def _take(self, spec: TransitionSpec, event_name: str, source: str, dest: str, is_global: bool, *,
              pop: bool, returning: bool = False) -> Callback:
        """Taking the transition, in one callback run before the state changes: its effect on the
        slots and the return stack, what it says, then arriving at dest (one callback rather than
        a state's on_enter too: each costs transitions a resolve per trigger). `returning`: to the
        place the top of the return stack names."""
        dest_spec = self.states[dest]
        to_start = dest == self.start
        # A detour taken again from where it leads (help from help) keeps the way back it had.
        detour_in_place = spec.then == HERE and source == dest
        # Every draft is forgotten by a global event that is no detour, and on arriving at the
        # start other than back from a detour; otherwise those of the flows left (forgotten_flows).
        forget_all = bool(self.all_drafts) and ((is_global and spec.then != HERE) or (to_start and not returning))
        source_flow, dest_flow = flow_of(source), flow_of(dest)
        forget_own = self.drafts.get(source_flow, ()) if spec.forget_draft else ()
        # A dialogue that ends at a `free_text` step (sent, solved) is not left when the user moves
        # on; one finished by forget_draft is not either (figures.LEFT).
        ended = self.states[source].free_text
        # A list keeps its page and group when the user steps back into it (Назад from the
        # description, К списку from a ticket, also through a step that reads the list again);
        # any other way in starts afresh.
        has_pick = dest_spec.pick is not None
        same_flow = source.partition(".")[0] == dest.partition(".")[0]

        def take(event: EventData) -> None:
            dialogue = _dialogue(event)
            slots = dialogue.slots
            # A global event (menu, help, cancel…) abandons any call in progress, and so must
            # the places it would have returned to.
            before = _stack(slots)
            stack = [] if is_global and not detour_in_place else list(before)
            if pop and stack:
                stack.pop()
            if spec.then and not detour_in_place:
                stack.append(source if spec.then == HERE else spec.then)
            _set_stack(slots, stack)
            # What the transition says is about where the user was: rendered before its effects
            # (so that "the draft was deleted" can depend on there having been one).
            text = render_say(spec.say, slots)
            if text:
                dialogue.said.append(text)
            left: Sequence[str] = ()
            if forget_all:
                forget: Iterable[str] = (*spec.clear, *self.all_drafts)
                left = open_flows(self.drafts, source_flow, before)
            elif self.drafts:
                left = forgotten_flows(self.drafts, source_flow, before, dest_flow, [] if to_start else stack)
                forget = (*spec.clear, *forget_own, *(slot for flow in left for slot in self.drafts[flow]))
            else:
                forget = spec.clear
            if left and not ended:
                self._count_left(dialogue, left, source, before, spec.forget_draft)
            for name in forget:
                value = slots.pop(name, None)
                if name in self.file_slots:
                    dialogue.discard.extend(slot_file_ids(value))
            for target, origin in spec.append.items():
                added = str(slots.pop(origin, "") or "").strip()
                if added:
                    text = f"{str(slots.get(target) or '').strip()}\n{added}".strip()
                    slots[target] = text[: self.text_limits.get(target, DEFAULT_TEXT_LIMIT)]
            slots.update(spec.set)
            if spec.count:
                dialogue.counted.append(spec.count)
            dialogue.show_state = True
            dialogue.arrived = dest
            if to_start:
                slots.pop(RETURN_SLOT, None)
            if has_pick and not (same_flow and (event_name == "back" or dialogue.going_back)):
                picker.reset(dialogue.flows, dest_spec, slots)
        return take
