"""The counters port: how often something the flows count happened, per day (a self-help
hint that solved the problem instead of a ticket, say), written with the step that did it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DayCount:
    name: str
    day: str  # "YYYY-MM-DD", UTC
    count: int


class Counters(Protocol):
    async def counts(self, since_day: str = "") -> list[DayCount]:
        """Every counter's count per day from since_day on (inclusive), by name then day."""
        ...

    async def idle_states(self, idle_before: float) -> dict[str, int]:
        """How many sessions wait at each state, untouched since before idle_before: where
        people stopped answering (a snapshot, not counted per day)."""
        ...

    async def prune_counts(self, before_day: str) -> int:
        """Forget the counts of days before before_day ("YYYY-MM-DD"); rows deleted."""
        ...
