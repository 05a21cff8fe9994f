"""What the user did, as an event: a button's payload, a typed label, list item or command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.dialogue import picker
from engine.flows.model import FlowSet, StateSpec
from engine.flows.text import normalize_text
from engine.ports import Incoming
from engine.replies import Button
from engine.text_safety import loads_bounded

MAX_MATCH_LENGTH = 200  # longer text is never a button label or a command
MAX_PAYLOAD_LENGTH = 1024
MAX_PAYLOAD_DEPTH = 4  # ours is one object: {"e": …, "i": …}


def _payload_data(raw: str) -> dict[str, Any] | None:
    if len(raw) > MAX_PAYLOAD_LENGTH:
        return None
    try:
        data = loads_bounded(raw, MAX_PAYLOAD_DEPTH)
    except ValueError:  # TooDeep included
        return None
    if not isinstance(data, dict) or not isinstance(data.get("e"), str):
        return None
    return data


def parse_payload(raw: str) -> tuple[str, int | None] | None:
    """A button's payload as (event, index); None for anything else, however malformed."""
    data = _payload_data(raw)
    if data is None:
        return None
    index = data.get("i")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        return None
    return data["e"], index


def payload_names_ticket(raw: str) -> bool:
    """Whether the payload carries a ticket number ("n"): a notice's button."""
    data = _payload_data(raw)
    return data is not None and "n" in data


def payload_number(flows: FlowSet, raw: str) -> str | None:
    """The ticket number a notice's button carries ("n"), if it has the shape of one (the
    bot.patterns that fill the slot `number`); anything else is ignored, as if not there."""
    data = _payload_data(raw)
    number = data.get("n") if data is not None else None
    if not isinstance(number, str) or len(number) > 64:
        return None
    for p in flows.bot.patterns:
        if p.slot == "number" and p.regex.fullmatch(number.strip()):
            return number.strip().upper()
    return None


def resolve(flows: FlowSet, st: StateSpec, slots: dict[str, Any], offered: Sequence[Button],
            incoming: Incoming) -> tuple[str, int | None] | None:
    """The event the user raised in state `st`; None when what they sent is none of these.

    A payload counts only for a button offered now (or a global event): a forged or stale one
    is treated as if nothing was pressed."""
    if incoming.payload:
        parsed = parse_payload(incoming.payload)
        if parsed is not None:
            event, index = parsed
            if index is None and event in flows.bot.global_on and payload_names_ticket(incoming.payload):
                # A notice's button (it names its ticket): the global event, whatever the step
                # the user is at does with an event of that name.
                return parsed
            if any(b.event == event and b.index == index for b in offered):
                return parsed
            if index is None and event in flows.bot.global_on:
                return parsed
    text = incoming.text.strip()
    if not text or len(text) > MAX_MATCH_LENGTH:
        return None
    norm = normalize_text(text)
    for button in offered:
        if normalize_text(button.label) == norm:
            return button.event, button.index
    # A label the step shows at other times for the same thing as a button shown now ("Готово"
    # typed while «Без файлов» stands for it): that event too.
    shown = {b.event for b in offered if b.index is None}
    for row in st.buttons:
        for spec in row:
            if spec.event in shown and normalize_text(spec.label) == norm:
                return spec.event, None
    if st.pick is not None:
        index = picker.match(picker.view(flows, st, slots), text, norm)
        if index is not None:
            return "pick", index
    # Typed commands work at every step, text inputs included, unless the input opts out.
    if st.input is None or st.input.commands:
        command = flows.typed_commands.get(norm)
        if command is not None:
            return command, None
    return None


MAX_PATTERN_WORDS = 4  # a longer message is about something; a pattern in it is not a command


def pattern(flows: FlowSet, st: StateSpec, incoming: Incoming) -> tuple[str, str, str] | None:
    """A typed text of one of bot.patterns' shapes (a ticket number): (event, slot, what matched)."""
    text = incoming.text.strip()
    if (not flows.bot.patterns or not text or len(text) > MAX_MATCH_LENGTH or len(text.split()) > MAX_PATTERN_WORDS
            or (st.input is not None and not st.input.commands)):
        return None
    for p in flows.bot.patterns:
        found = p.regex.search(text)
        if found is not None:
            return p.event, p.slot, found.group(0).upper()
    return None
