"""SimpleOne's ticket times ("YYYY-MM-DD HH:MM:SS", UTC): read as epoch seconds, and shown to
people as they read a date ("02.12.2026, 03:19" in their time zone)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def parse_updated_at(value: str) -> float | None:
    """A ticket's time ("YYYY-MM-DD HH:MM:SS", UTC) as epoch seconds; None if it cannot be read."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@cache
def zone(name: str) -> ZoneInfo:
    """The time zone by its IANA name (flowlint refuses an unknown one)."""
    return ZoneInfo(name)


def known_zone(name: str) -> bool:
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def local_time(value: str, zone_name: str) -> str:
    """A ticket's time as "DD.MM.YYYY, HH:MM" in the zone; as it came if it cannot be read."""
    seconds = parse_updated_at(value)
    if seconds is None:
        return value
    return datetime.fromtimestamp(seconds, zone(zone_name)).strftime("%d.%m.%Y, %H:%M")
