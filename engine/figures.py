"""Counters the engine itself writes for `supportbot stats` (the flows name theirs with `count:`).

Every counter is a row per day and name (engine/ports/counters.py), written with the step or
the outbox outcome it counts. The flows' names match `[a-z][a-z0-9_]*`; the engine's carry a
label after a colon, so the two can never clash:

- `ticket_created:<group id>`: a ticket SimpleOne registered, by catalogue group;
- `ticket_wait:<bound>`: how long from «Отправить» (the outbox item's creation) to the ticket's
  number, as a histogram: one counter per bucket (WAIT_BUCKETS, upper bounds in seconds, `inf`
  above the last). A median is read from the buckets summed over the days asked for; nothing is
  kept per ticket, so it lives exactly as long as the other counters (their retention);
- `outbox_failed:<kind>`: outbox work SimpleOne refused or that was given up;
- `left:<flow>:<state>`: a dialogue with a draft (`draft:`) left without finishing, by the
  step the user was at (see engine/dialogue/machine.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

TICKET_CREATED: Final = "ticket_created"
TICKET_WAIT: Final = "ticket_wait"
OUTBOX_FAILED: Final = "outbox_failed"
LEFT: Final = "left"

# Seconds: dense where SimpleOne usually answers (a few seconds), coarse for outages.
WAIT_BUCKETS: Final = (1, 2, 3, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
ABOVE: Final = "inf"


def utc_day(at: float) -> str:
    """The day a counter counts on ("YYYY-MM-DD", UTC), as storage writes it."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def labelled(name: str, label: str) -> str:
    return f"{name}:{label}"


def wait_bucket(seconds: float) -> str:
    """The bucket a wait falls in: its upper bound in seconds, or ABOVE."""
    for bound in WAIT_BUCKETS:
        if seconds <= bound:
            return str(bound)
    return ABOVE


def bucket_bound(label: str) -> float:
    """A bucket's upper bound (infinity for ABOVE); ValueError for a label that is no bucket."""
    return float("inf") if label == ABOVE else float(int(label))


def median_bound(buckets: Mapping[str, int]) -> float | None:
    """The upper bound of the bucket holding the median wait (the middle ticket waited at most
    this long), or None with nothing counted. Labels that are no bucket are skipped."""
    known = sorted((bucket_bound(k), n) for k, n in buckets.items() if k == ABOVE or k.isdigit())
    total = sum(n for _, n in known)
    if total <= 0:
        return None
    seen = 0
    for bound, n in known:
        seen += n
        if 2 * seen >= total:
            return bound
    return known[-1][0]
