"""Channel-neutral replies: text, a grid of buttons, nothing channel-specific.

Each channel adapter renders them within its own limits (VK: shared/reference/vk-api.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_PLAIN = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    event: str
    # Index into a pick list, for buttons generated from the catalogue or a ticket list.
    index: int | None = None
    color: str | None = None  # primary | secondary | positive | negative
    # The ticket a notice's button is about ("Ответить" under an agent's message): its number,
    # taken as if typed (a global event's slot `number`; the ticket is looked up among the
    # user's own, so a forged one finds nothing).
    number: str | None = None

    @property
    def payload(self) -> str:
        """The compact JSON payload a channel attaches to the button (VK caps it at 255)."""
        if _PLAIN.fullmatch(self.event) and self.number is None:  # flow events: built cheaply
            return f'{{"e":"{self.event}"}}' if self.index is None else f'{{"e":"{self.event}","i":{self.index}}}'
        data: dict[str, object] = {"e": self.event}
        if self.index is not None:
            data["i"] = self.index
        if self.number is not None:
            data["n"] = self.number
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@dataclass(slots=True)
class Reply:
    text: str
    buttons: list[list[Button]] = field(default_factory=list)
    # Buttons inside the message rather than under the input field (VK: stricter limits).
    inline: bool = False

    def labels(self) -> list[str]:
        return [b.label for row in self.buttons for b in row]

    def as_data(self) -> dict[str, object]:
        """JSON-ready, to keep a reply until the channel has delivered it."""
        return {"t": self.text, "n": self.inline,
                "b": buttons_data(self.buttons)}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Reply:
        return cls(str(data.get("t", "")), buttons_from_data(data.get("b", [])), bool(data.get("n")))


def buttons_data(rows: list[list[Button]]) -> list[list[list[object]]]:
    """A button grid as JSON-ready lists (a number only where a button has one)."""
    def one(b: Button) -> list[object]:
        data: list[object] = [b.label, b.event, b.index, b.color]
        return [*data, b.number] if b.number is not None else data

    return [[one(b) for b in row] for row in rows]


def buttons_from_data(rows: Any) -> list[list[Button]]:
    """The grid buttons_data wrote (rows kept before numbers existed have four fields)."""
    return [[Button(str(b[0]), str(b[1]), b[2], b[3], str(b[4]) if len(b) > 4 and b[4] is not None else None)
             for b in row] for row in rows]


def dump_replies(replies: list[Reply]) -> str:
    return json.dumps([r.as_data() for r in replies], ensure_ascii=False, separators=(",", ":"))


def load_replies(text: str) -> list[Reply]:
    return [Reply.from_data(item) for item in json.loads(text)]
