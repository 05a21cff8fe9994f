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

    @property
    def payload(self) -> str:
        """The compact JSON payload a channel attaches to the button (VK caps it at 255)."""
        if _PLAIN.fullmatch(self.event):  # every flow event: no escaping needed, built cheaply
            return f'{{"e":"{self.event}"}}' if self.index is None else f'{{"e":"{self.event}","i":{self.index}}}'
        data: dict[str, object] = {"e": self.event}
        if self.index is not None:
            data["i"] = self.index
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
                "b": [[[b.label, b.event, b.index, b.color] for b in row] for row in self.buttons]}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Reply:
        rows = [[Button(str(label), str(event), index, color) for label, event, index, color in row]
                for row in data.get("b", [])]
        return cls(str(data.get("t", "")), rows, bool(data.get("n")))


def dump_replies(replies: list[Reply]) -> str:
    return json.dumps([r.as_data() for r in replies], ensure_ascii=False, separators=(",", ":"))


def load_replies(text: str) -> list[Reply]:
    return [Reply.from_data(item) for item in json.loads(text)]
