"""What a state shows: its text over the session's slots, its buttons, the reply as a whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

from engine.dialogue import picker
from engine.dialogue.inputs import limits
from engine.dialogue.machine import machine_of
from engine.flows.model import FlowSet, StateSpec, holds, render_say
from engine.replies import Button, Reply

# A flow set's own button rows per state and outcome of their conditions: built once, shared by
# every reply that shows them (no one changes a reply's buttons); they live as long as the flow set.
_OwnRows = dict[tuple[str, tuple[bool, ...]], list[list[Button]]]
_own_rows: WeakKeyDictionary[FlowSet, _OwnRows] = WeakKeyDictionary()


def state_buttons(flows: FlowSet, st: StateSpec, slots: dict[str, Any]) -> list[list[Button]]:
    """The state's buttons as the user sees them now: the pick list's, its own, the footer."""
    own = own_buttons(flows, st, slots)
    if st.pick is None:
        return own
    v = picker.view(flows, st, slots)
    return [*picker.buttons(flows, st, v, machine_of(flows).handles(st.name, "back")), *own]


def own_buttons(flows: FlowSet, st: StateSpec, slots: dict[str, Any]) -> list[list[Button]]:
    """The state's own buttons and the footer, as their conditions on the slots leave them."""
    specs = [*st.buttons, *(flows.bot.footer if st.footer else ())]
    key = (st.name, tuple(holds(slots, b.when, b.unless) for row in specs for b in row if b.when or b.unless))
    cache = _own_rows.get(flows)
    if cache is None:
        cache = _own_rows[flows] = {}
    rows = cache.get(key)
    if rows is None:
        rows = []
        for row in specs:
            shown = [Button(b.label, b.event, color=b.color) for b in row if holds(slots, b.when, b.unless)]
            if shown:
                rows.append(shown)
        cache[key] = rows
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
