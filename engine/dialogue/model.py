"""The light model the compiled machine steps: one session's state and slots, for one event.

`transitions` reads and writes `state` on it; the machine's conditions read `slots`, and its
callbacks write `slots` and note what must happen after the transition (XState's "pure
transition, effects after"): texts to say, files to discard, the state whose actions to run.
The engine runs those effects, then commits. One is made per trigger and never added to the
machine (a model per user would cost ~40 KiB and ~1 ms each).
"""

from __future__ import annotations

from typing import Any

from engine.flows.model import FlowSet


class Dialogue:
    __slots__ = ("arrived", "counted", "discard", "flows", "going_back", "said", "show_state", "slots", "state")

    def __init__(self, flows: FlowSet, state: str, slots: dict[str, Any], *, going_back: bool = False) -> None:
        self.flows = flows  # the flow set the machine was compiled from
        self.state = state
        self.slots = slots
        # The user's event was Назад: a list reached on the way (through a step that reloads it)
        # keeps its page.
        self.going_back = going_back
        self.said: list[str] = []  # texts the transitions said, in order
        self.show_state = False  # the reply shows the current state (its text and buttons)
        self.discard: list[str] = []  # spooled files of cleared slots, discarded after the step
        self.arrived: str | None = None  # a state entered whose enter actions are still to run
        self.counted: list[str] = []  # counters the transitions named, counted with the step
