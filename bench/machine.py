"""What the machine was doing while a benchmark ran: the numbers mean little on a busy one."""

from __future__ import annotations

from pathlib import Path


def cpu_sample() -> tuple[int, int] | None:
    """Busy and total CPU time of the whole machine so far (Linux /proc/stat; None elsewhere):
    whether the runs had CPU to spare, the database server and anything else running included."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)
