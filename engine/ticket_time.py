"""SimpleOne's ticket times ("YYYY-MM-DD HH:MM:SS", UTC), read as epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_updated_at(value: str) -> float | None:
    """A ticket's time ("YYYY-MM-DD HH:MM:SS", UTC) as epoch seconds; None if it cannot be read."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
