"""Neutral replies as VK messages: a keyboard that VK accepts, whatever the reply holds.

VK refuses a whole message (error 911) for one bad button, so the rules of dev.vk.com are
enforced here, after the flows were already linted against them: rows of at most 5, at most
10 rows / 40 buttons (inline: 6 / 10), labels of at most 40 characters (a shortened label's
full text goes into the message), payloads of at most 255 characters.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from engine.flows.vk_limits import KEYBOARD_LIMITS, MAX_MESSAGE_LENGTH, MAX_PAYLOAD, MAX_PER_ROW, shorten
from engine.replies import Button, Reply

log = logging.getLogger(__name__)

COLORS = frozenset({"primary", "secondary", "positive", "negative"})


@dataclass(frozen=True, slots=True)
class VkMessage:
    text: str
    keyboard: str  # JSON; '{"buttons":[],"one_time":false}' hides a previous keyboard


def _button(b: Button) -> dict[str, object]:
    out: dict[str, object] = {"action": {"type": "text", "label": shorten(b.label), "payload": b.payload}}
    if b.color in COLORS:
        out["color"] = b.color
    return out


def _fit(rows: list[list[Button]], max_rows: int, max_buttons: int) -> list[list[Button]]:
    """Rows within VK's limits: long rows split, and if still too tall, buttons packed 5 a row."""
    split = [row[i : i + MAX_PER_ROW] for row in rows for i in range(0, len(row), MAX_PER_ROW)]
    buttons = [b for row in split for b in row]
    if len(split) <= max_rows and len(buttons) <= max_buttons:
        return split
    log.error("a reply with %d buttons in %d rows exceeds VK's keyboard; packing it", len(buttons), len(split))
    kept = buttons[:max_buttons]
    packed = [kept[i : i + MAX_PER_ROW] for i in range(0, len(kept), MAX_PER_ROW)]
    return packed[:max_rows]


# A keyboard's JSON and the labels it shortened, by the grid it was rendered from: a state's
# buttons repeat from reply to reply, and rendering them (payloads, shortening, JSON) was a
# twentieth of the bot's CPU under load. Bounded: the oldest entry goes when it is full.
_Grid = tuple[bool, tuple[tuple[Button, ...], ...]]
_RENDERED: dict[_Grid, tuple[str, tuple[str, ...]]] = {}
RENDERED_KEPT = 1024


def _render_keyboard(rows_in: list[list[Button]], inline: bool) -> tuple[str, tuple[str, ...]]:
    """The keyboard's JSON and the full labels of the buttons whose labels were shortened."""
    max_rows, max_buttons = KEYBOARD_LIMITS[inline]
    rows = [[b for b in row if len(b.payload) <= MAX_PAYLOAD] for row in rows_in]
    if sum(map(len, rows)) != sum(map(len, rows_in)):
        log.error("buttons with payloads over %d characters dropped", MAX_PAYLOAD)
    rows = _fit([row for row in rows if row], max_rows, max_buttons)
    shortened = tuple(b.label for row in rows for b in row if shorten(b.label) != b.label)
    keyboard: dict[str, object] = {"buttons": [[_button(b) for b in row] for row in rows]}
    if inline:
        keyboard["inline"] = True
    else:
        keyboard["one_time"] = False
    return json.dumps(keyboard, ensure_ascii=False, separators=(",", ":")), shortened


def render(reply: Reply) -> VkMessage:
    grid: _Grid = (reply.inline, tuple(map(tuple, reply.buttons)))
    rendered = _RENDERED.get(grid)
    if rendered is None:
        rendered = _render_keyboard(reply.buttons, reply.inline)
        if len(_RENDERED) >= RENDERED_KEPT:
            del _RENDERED[next(iter(_RENDERED))]
        _RENDERED[grid] = rendered
    keyboard, shortened = rendered
    text = reply.text
    if shortened:
        missing = [label for label in shortened if label not in text]
        if missing:
            text = text + "\n\n" + "\n".join(missing)
    return VkMessage(text, keyboard)


def split_text(text: str, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Messages of at most limit characters, cut at paragraph, line or word ends when possible."""
    text = text.strip() or "…"
    chunks: list[str] = []
    while len(text) > limit:
        # The latest paragraph end in the second half of the window, else a line end, else a space.
        for mark in ("\n\n", "\n", " "):
            cut = text.rfind(mark, limit // 2, limit)
            if cut > 0:
                break
        else:
            cut = limit
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    chunks.append(text)
    return chunks
