"""The flow set compiled once onto one `transitions` machine.

No model is attached and none is ever added: per event the engine puts the session's state
on a throw-away model, triggers the event, and reads the new state back. A Machine or
add_model per user would cost ~40 KiB and ~1 ms each (a known `transitions` issue).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from transitions import Machine

from engine.model import RETURN, BotSettings, StateSpec, TransitionSpec

# Engine-internal navigation inside a pick state: handled in place, the state does not change.
PICK_INTERNAL = ("pick", "pick_next", "pick_prev", "pick_up")


class _Model:
    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


@dataclass(frozen=True, slots=True)
class Step:
    spec: TransitionSpec | None  # None for internal pick navigation
    dest: str  # the new state, or RETURN when the engine must pop its return stack
    is_global: bool = False  # taken from bot.global: the user left whatever they were doing


class CompiledMachine:
    def __init__(self, states: Mapping[str, StateSpec], bot: BotSettings) -> None:
        self._specs: dict[tuple[str, str], TransitionSpec] = {}
        self._global = frozenset(id(t) for t in bot.global_on.values())
        self.machine = Machine(
            model=None,
            states=list(states),
            initial=bot.start,
            auto_transitions=False,
            ignore_invalid_triggers=True,
        )
        for name, st in states.items():
            for event, t in st.on.items():
                self._add(name, event, t)
            if st.pick is not None:
                for event in PICK_INTERNAL:
                    self.machine.add_transition(event, name, None)
        # Global events last: transitions tries a state's own transitions first.
        for event, t in bot.global_on.items():
            for name in states:
                if (name, event) not in self._specs:
                    self._add(name, event, t)
        self._handled: dict[str, frozenset[str]] = {
            name: frozenset(ev for ev, trans in self.machine.events.items() if name in trans.transitions)
            for name in states
        }

    def _add(self, source: str, event: str, t: TransitionSpec) -> None:
        # 'return' has no fixed destination: an internal transition, resolved by the engine.
        self.machine.add_transition(event, source, None if t.to == RETURN else t.to)
        self._specs[(source, event)] = t

    def handles(self, state: str, event: str) -> bool:
        return event in self._handled.get(state, ())

    def fire(self, state: str, event: str) -> Step | None:
        """The transition `event` takes from `state`, or None if it is not handled there."""
        if not self.handles(state, event):
            return None
        model = _Model(state)
        if not self.machine.events[event].trigger(model):
            return None
        spec = self._specs.get((state, event))
        is_global = spec is not None and id(spec) in self._global
        if spec is not None and spec.to == RETURN:
            return Step(spec, RETURN, is_global)
        return Step(spec, model.state, is_global)
