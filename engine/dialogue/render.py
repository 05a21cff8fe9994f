"""What a state shows: its text over the session's slots, its buttons, the reply as a whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.dialogue import picker
from engine.dialogue.inputs import limits
from engine.dialogue.machine import machine_of
from engine.flows.model import FlowSet, StateSpec, holds, render_say
from engine.replies import Button, Reply


def state_buttons(flows: FlowSet, st: StateSpec, slots: dict[str, Any]) -> list[list[Button]]:
    """The state's buttons as the user sees them now: the pick list's, its own, the footer."""
    rows: list[list[Button]] = []
    if st.pick is not None:
        v = picker.view(flows, st, slots)
        rows.extend(picker.buttons(flows, st, v, machine_of(flows).handles(st.name, "back")))
    specs = [*st.buttons, *(flows.bot.footer if st.footer else ())]
    for row in specs:
        shown = [Button(b.label, b.event, color=b.color) for b in row
                 if holds(slots, b.when, b.unless)]
        if shown:
            rows.append(shown)
    return rows


def state_text(flows: FlowSet, st: StateSpec, slots: dict[str, Any]) -> list[str]:
    """What the state says when shown: its text, then a pick list's visible page."""
    texts = []
    text = render_say(st.say, {**slots, **limits(st.input)} if st.input else slots)
    if text:
        texts.append(text)
    if st.pick is not None:
        v = picker.view(flows, st, slots)
        lines = picker.lines(flows, v, numbered=st.pick.source == "catalog")
        if lines:
            texts.append("\n".join(lines))
    return texts


def reply(flows: FlowSet, st: StateSpec, slots: dict[str, Any], said: Sequence[str], show_state: bool) -> Reply:
    """The step's one reply: what was said along the way, then (if shown) the state itself."""
    texts = list(said)
    if show_state or not texts:
        texts.extend(state_text(flows, st, slots))
    return Reply("\n\n".join(t for t in texts if t) or "…", state_buttons(flows, st, slots), inline=st.inline)
