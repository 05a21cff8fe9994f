"""What a state shows: the cached button rows are the rows its conditions give, for every state."""

from __future__ import annotations

import itertools
from typing import Any

from engine.dialogue.render import own_buttons
from engine.flows.model import FlowSet, holds
from engine.replies import Button


def built(flows: FlowSet, state: str, slots: dict[str, Any]) -> list[list[Button]]:
    st = flows.states[state]
    rows = []
    for row in [*st.buttons, *(flows.bot.footer if st.footer else ())]:
        shown = [Button(b.label, b.event, color=b.color) for b in row if holds(slots, b.when, b.unless)]
        if shown:
            rows.append(shown)
    return rows


def test_every_states_cached_buttons_follow_its_conditions(flow_set: FlowSet) -> None:
    checked = 0
    for name, st in flow_set.states.items():
        names = sorted({n for row in st.buttons for b in row for n in (*b.when, *b.unless)})
        for values in itertools.product((False, True), repeat=min(len(names), 4)):
            slots: dict[str, Any] = {}
            for dotted, on in zip(names, values, strict=False):
                *path, last = dotted.split(".")
                place = slots
                for key in path:
                    place = place.setdefault(key, {})
                if on and isinstance(place, dict):
                    place[last] = True
            # Twice: the second answer comes from the cache and must not differ.
            assert own_buttons(flow_set, st, slots) == built(flow_set, name, slots) == own_buttons(flow_set, st, slots)
            checked += 1
    assert checked > len(flow_set.states)  # some states have conditional buttons
