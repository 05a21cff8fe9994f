"""What a ticket's outbox item is: its kinds, the record it writes to, its marker and files.

Shared by the ticket actions, which write the items with the step, and the ticket work that
carries them out (engine/work/ticket_work.py).
"""

from __future__ import annotations

import re
from typing import Final

from engine.ports import SpooledFile

__all__ = ["COMMENT", "CREATE", "MOVE", "UPLOAD", "marker", "record_of", "spooled_files", "without_marker"]

CREATE = "ticket.create"
COMMENT = "ticket.comment"
UPLOAD = "ticket.upload"
# The user's own move on a ticket (reopen, confirm, withdraw, rate): fields and a comment in one write.
MOVE = "ticket.move"


def marker(item_id: str) -> str:
    return f"[sb:{item_id}]"


_MARKERS: Final = re.compile(r"\s*\[sb:[0-9a-f]{1,32}\]")


def without_marker(text: str) -> str:
    """A ticket's description as its user wrote it: the markers the bot added taken out."""
    return _MARKERS.sub("", text).strip()


def spooled_files(value: object) -> list[SpooledFile]:
    """The files a file slot, or a ticket item's "files", holds (as SpooledFile.as_slot wrote them)."""
    if not isinstance(value, list):
        return []
    return [SpooledFile.from_slot(f) for f in value if isinstance(f, dict)]


def record_of(table: str, sys_id: str) -> str:
    """The key that keeps work on one SimpleOne record in order (OutboxItem.record)."""
    return f"{table}/{sys_id}"
