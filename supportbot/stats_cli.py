"""`supportbot stats`: what the flows count (`count:` on a transition), per day and in all: how
many tickets the catalogue's self-help hints saved, for one."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TextIO

from supportbot.app import open_storage
from supportbot.config import Config


async def stats_command(config: Config, days: int, out: TextIO, now: float | None = None) -> int:
    since = (datetime.fromtimestamp(now if now is not None else time.time(), UTC) - timedelta(days=days - 1))
    storage = await open_storage(config.database_url)
    try:
        counts = await storage.counts(since.strftime("%Y-%m-%d"))
    finally:
        await storage.close()
    by_name: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for c in counts:
        by_name[c.name].append((c.day, c.count))
    if not by_name:
        out.write(f"nothing counted in the last {days} day(s)\n")
        return 0
    for name, per_day in sorted(by_name.items()):
        out.write(f"{name}: {sum(n for _, n in per_day)} in the last {days} day(s)\n")
        for day, n in per_day:
            out.write(f"  {day}  {n}\n")
    return 0
