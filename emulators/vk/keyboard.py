"""The fake VK server's keyboard check: what `messages.send` refuses with error 911.

The rules are dev.vk.com's (bots, keyboards): a JSON object with `buttons` (rows of buttons),
optional booleans `one_time` and `inline` (not both); a regular keyboard has at most 10 rows
and 40 buttons, an inline one at most 6 rows and 10 buttons; at most 5 buttons in a row; a
text or callback button has a label of 1..40 characters, an optional payload of at most 255
characters of JSON, and an optional colour; `buttons: []` hides the keyboard. The payload may be
a string holding JSON text or a JSON object/array inline (vkbottle's Keyboard sends the latter,
and VK takes it). Where the documentation is silent the check is strict (an empty row, a number
as the payload), so a bot that passes here does not depend on VK being lenient.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# VK's side of the rules, stated apart from the bot's engine/flows/vk_limits.py on purpose: a check
# that read the bot's numbers would pass any mistake in them.
MAX_ROWS = 10
MAX_BUTTONS = 40
MAX_INLINE_ROWS = 6
MAX_INLINE_BUTTONS = 10
MAX_PER_ROW = 5
MAX_LABEL = 40
MAX_PAYLOAD = 255
COLORS = frozenset({"primary", "secondary", "negative", "positive"})
LABELLED = frozenset({"text", "callback", "open_link"})
COLOURED = frozenset({"text", "callback"})
# Shapes the emulator accepts without looking inside (the bot does not send them).
OPAQUE = frozenset({"location", "vkpay", "open_app"})
ACTION_TYPES = LABELLED | OPAQUE


class KeyboardError(ValueError):
    """A keyboard VK would refuse; the message names the first problem found."""


def parse_keyboard(text: str) -> dict[str, Any]:
    """The keyboard as a dict if VK would accept it; KeyboardError naming the problem if not."""
    try:
        keyboard = json.loads(text)
    except ValueError:
        raise KeyboardError("keyboard is not valid JSON") from None
    check_keyboard(keyboard)
    assert isinstance(keyboard, dict)  # check_keyboard raised otherwise
    return keyboard


def check_keyboard(keyboard: object) -> None:
    if not isinstance(keyboard, dict):
        raise KeyboardError("keyboard should be an object")
    for flag in ("one_time", "inline"):
        if flag in keyboard and not isinstance(keyboard[flag], bool):
            raise KeyboardError(f"{flag} should be a boolean")
    inline = keyboard.get("inline") is True
    if inline and keyboard.get("one_time") is True:
        raise KeyboardError("one_time is not allowed for an inline keyboard")
    rows = keyboard.get("buttons")
    if rows is None:
        raise KeyboardError("buttons is required")
    if not isinstance(rows, list):
        raise KeyboardError("buttons should be an array of rows")
    max_rows, max_buttons = (MAX_INLINE_ROWS, MAX_INLINE_BUTTONS) if inline else (MAX_ROWS, MAX_BUTTONS)
    kind = "an inline" if inline else "a"
    if len(rows) > max_rows:
        raise KeyboardError(f"{kind} keyboard has at most {max_rows} rows, got {len(rows)}")
    total = 0
    for r, row in enumerate(rows):
        if not isinstance(row, list):
            raise KeyboardError(f"buttons[{r}] should be an array of buttons")
        if not row:
            raise KeyboardError(f"buttons[{r}] is an empty row")
        if len(row) > MAX_PER_ROW:
            raise KeyboardError(f"buttons[{r}] has {len(row)} buttons, at most {MAX_PER_ROW} fit in a row")
        total += len(row)
        for b, button in enumerate(row):
            _check_button(button, f"buttons[{r}][{b}]")
    if total > max_buttons:
        raise KeyboardError(f"{kind} keyboard has at most {max_buttons} buttons, got {total}")


def _check_button(button: object, where: str) -> None:
    if not isinstance(button, dict):
        raise KeyboardError(f"{where} should be an object")
    action = button.get("action")
    if not isinstance(action, dict):
        raise KeyboardError(f"{where}.action is required and should be an object")
    kind = action.get("type")
    if kind not in ACTION_TYPES:
        raise KeyboardError(f"{where}.action.type {kind!r} is unknown")
    if "color" in button:
        if kind not in COLOURED:
            raise KeyboardError(f"{where}.color is only allowed on text and callback buttons")
        if button["color"] not in COLORS:
            raise KeyboardError(f"{where}.color {button['color']!r} is not one of {sorted(COLORS)}")
    if kind in OPAQUE:
        return
    _check_label(action, where)
    if "payload" in action:
        _check_payload(action["payload"], where)
    if kind == "open_link":
        link = action.get("link")
        if not isinstance(link, str) or not link.startswith(("http://", "https://")):
            raise KeyboardError(f"{where}.action.link should be an http(s) URL")


def _check_label(action: Mapping[str, Any], where: str) -> None:
    label = action.get("label")
    if not isinstance(label, str):
        raise KeyboardError(f"{where}.action.label is required and should be a string")
    if not label:
        raise KeyboardError(f"{where}.action.label is empty")
    if len(label) > MAX_LABEL:
        raise KeyboardError(f"{where}.action.label is longer than {MAX_LABEL} characters ({len(label)})")


def payload_text(payload: object) -> str:
    """A button's payload as the string VK puts into the message it produces."""
    if isinstance(payload, str):
        return payload
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _check_payload(payload: object, where: str) -> None:
    if not isinstance(payload, str | dict | list):
        raise KeyboardError(f"{where}.action.payload should be JSON text or a JSON object")
    if not isinstance(payload, str):
        payload = payload_text(payload)  # an inline object counts as its compact JSON
    if len(payload) > MAX_PAYLOAD:
        raise KeyboardError(f"{where}.action.payload is longer than {MAX_PAYLOAD} characters ({len(payload)})")
    try:
        json.loads(payload)
    except ValueError:
        raise KeyboardError(f"{where}.action.payload is not valid JSON") from None


def labels(keyboard: Mapping[str, Any] | None) -> list[str]:
    """The labels of a keyboard's labelled buttons, row by row (for assertions and `press`)."""
    if keyboard is None:
        return []
    return [
        str(button["action"]["label"])
        for row in keyboard.get("buttons", [])
        for button in row
        if button["action"].get("type") in LABELLED
    ]
