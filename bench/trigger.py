"""What the compiled machine's trigger costs, as a share of a whole engine step, in one run.

The engine's routing is `transitions` (engine/dialogue/machine.py): every event of a step is a trigger on
one Machine with the flows' guards as conditions and their slot effects as callbacks. This
bench runs the engine path of bench/engine.py (SQLite, 1 k stored sessions, users one after
another and then at once) with DialogueMachine.trigger timed, and prints the triggers' share of
the steps' time (target: at most 5 %). It also prints what one trigger costs on the flat
machine against the same transitions nested per flow in a HierarchicalMachine (why flows are
"flow.state" names rather than nested states).

Run: .venv/bin/python bench/trigger.py [--users 100] [--repeat 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transitions import Machine
from transitions.extensions.nesting import HierarchicalMachine, NestedState

from bench.engine import AS_DEPLOYED, measure_sqlite
from engine.dialogue.machine import DialogueMachine
from engine.dialogue.model import Dialogue
from engine.dialogue.runtime import Engine
from engine.flows.model import RETURN, FlowSet
from engine.load import load_flow_set
from engine.ports import Incoming
from engine.replies import Reply

FLOWS = Path(__file__).resolve().parent.parent / "flows"
# Events of the create-ticket dialogue as the machine sees them: (from state, event).
SAMPLE = [("main.menu", "create"), ("auth.gate", "signed_in"), ("create_ticket.choose_service", "chosen"),
          ("create_ticket.describe", "ok"), ("create_ticket.attach", "done"), ("create_ticket.confirm", "submit"),
          ("create_ticket.describe", "menu")]


class TimedTrigger:
    """DialogueMachine.trigger, timed: the seconds spent in it and the number of calls."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.real = DialogueMachine.trigger

    def method(self) -> Any:
        def trigger(machine: DialogueMachine, dialogue: Dialogue, event: str, index: int | None = None) -> bool:
            began = time.perf_counter()
            try:
                return self.real(machine, dialogue, event, index)
            finally:
                self.seconds += time.perf_counter() - began
                self.calls += 1
        return trigger


def share_of_a_step(flow_set: FlowSet, users: int) -> None:
    timed = TimedTrigger()
    handled = 0
    real_handle = Engine.handle

    async def handle(engine: Engine, peer: str, incoming: Incoming, **kwargs: Any) -> list[Reply]:
        nonlocal handled
        handled += 1  # the warm-up's events too: its triggers are timed as well
        return await real_handle(engine, peer, incoming, **kwargs)

    DialogueMachine.trigger = timed.method()  # type: ignore[method-assign]
    Engine.handle = handle  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
            done, _ = asyncio.run(measure_sqlite(flow_set, 1000, users, Path(tmp)))
    finally:
        DialogueMachine.trigger = timed.real  # type: ignore[method-assign]
        Engine.handle = real_handle  # type: ignore[method-assign]
    per_trigger = timed.seconds / timed.calls * 1e6
    triggers_per_event = timed.calls / max(handled, 1)
    for name, phase in done[AS_DEPLOYED].items():
        step = phase.time / phase.events * 1e6
        share = per_trigger * triggers_per_event / step
        print(f"  {name:>4}: {phase.rate:7.0f} events/s, {step:6.1f} µs per event, of which triggers {share:.1%}")
    print(f"  {timed.calls} triggers for {handled} events ({triggers_per_event:.2f} each), {per_trigger:.1f} µs each")


class _Dotted(NestedState):
    separator = "."


class _Nested(HierarchicalMachine):
    state_cls = _Dotted


def flat_against_nested(flow_set: FlowSet, repeat: int) -> None:
    """The same transitions (no callbacks), flat and nested per flow; µs per trigger."""
    flat = Machine(model=None, states=list(flow_set.states), initial=flow_set.bot.start,
                   auto_transitions=False, ignore_invalid_triggers=True, send_event=True)
    nested = _Nested(model=None, initial=flow_set.bot.start, auto_transitions=False,
                     ignore_invalid_triggers=True, send_event=True,
                     states=[{"name": f, "children": [s.split(".", 1)[1] for s in spec.states]}
                             for f, spec in flow_set.flows.items()])
    for name, st in flow_set.states.items():
        for event, alternatives in st.on.items():
            dest = alternatives[0].to
            flat.add_transition(event, name, None if dest == RETURN else dest)
            nested.add_transition(event, name, None if dest == RETURN else dest)
    for event, alternatives in flow_set.bot.global_on.items():
        nested.add_transition(event, list(flow_set.flows), alternatives[0].to)  # inherited by children
        for name, st in flow_set.states.items():
            if event not in st.on:
                flat.add_transition(event, name, alternatives[0].to)

    def timed(fire: Any) -> float:
        began = time.perf_counter()
        for n in range(repeat):
            state, event = SAMPLE[n % len(SAMPLE)]
            fire(Dialogue(flow_set, state, {}), event)
        return (time.perf_counter() - began) / repeat * 1e6

    flat_us = timed(lambda d, e: flat.events[e].trigger(d))
    nested_us = timed(lambda d, e: nested.trigger_event(d, e))
    flat_us = (flat_us + timed(lambda d, e: flat.events[e].trigger(d))) / 2  # A B A: a slow spell hits both
    print(f"  flat Machine {flat_us:.1f} µs per trigger, HierarchicalMachine {nested_us:.1f} µs "
          f"({nested_us / flat_us:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20000)
    args = parser.parse_args()
    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    print(f"engine path on SQLite, 1 k stored sessions, {args.users} users one after another, then at once:")
    share_of_a_step(flow_set, args.users)
    print(f"one trigger over {len(SAMPLE)} dialogue events, {args.repeat} times:")
    flat_against_nested(flow_set, args.repeat)


if __name__ == "__main__":
    main()
