"""`supportbot outbox`: what is waiting for SimpleOne, and an admin's hands on it.

The running bot picks up a retried item within seconds (its worker looks for due items every
few seconds); this command only changes the database, so it works whether the bot runs or not.
"""

from __future__ import annotations

import json
import time
from typing import TextIO

from adapters.spool import DiskSpool
from engine.actions.ticket_items import spooled_files
from engine.ports import OUTBOX_DONE, OUTBOX_FAILED, OUTBOX_PENDING, OutboxItem
from supportbot.app import open_storage
from supportbot.config import Config

STATES = {"pending": (OUTBOX_PENDING,), "failed": (OUTBOX_FAILED,), "done": (OUTBOX_DONE,),
          "open": (OUTBOX_PENDING, OUTBOX_FAILED), "all": ()}


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def describe_item(item: OutboxItem, now: float) -> str:
    """One line per item: what it is, for whom, how it stands."""
    p = item.payload
    what = str(p.get("number") or p.get("table") or "")
    status = str(item.state)
    if item.state == OUTBOX_PENDING:
        status += f", try {item.attempts + 1} in {_age(item.next_at - now)}" if item.next_at > now else ", due now"
    elif item.result:
        status += f" ({item.result.get('event')})"
    line = f"{item.id}  {item.kind:<15} {item.peer:<16} {what:<14} {_age(now - item.created_at):>4} old  {status}"
    if item.last_error:
        line += f"\n    last error: {item.last_error}"
    return line


async def outbox_command(config: Config, action: str, item_id: str | None, state: str, out: TextIO) -> int:
    storage = await open_storage(config.database_url, synchronous=config.sqlite_synchronous)
    now = time.time()
    try:
        if action == "list":
            items = await storage.outbox_list(STATES[state], limit=1000)
            for listed in items:
                out.write(describe_item(listed, now) + "\n")
            out.write(f"{len(items)} item(s) {state}\n")
            return 0
        assert item_id is not None
        item = await storage.outbox_get(item_id)
        if item is None:
            out.write(f"no outbox item {item_id}\n")
            return 1
        if action == "show":
            out.write(describe_item(item, now) + "\n")
            data = {"payload": item.payload, "progress": item.progress, "result": item.result, "told": item.told}
            out.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
            return 0
        if action == "retry":
            if not await storage.outbox_retry(item_id, now):
                if item.state == OUTBOX_PENDING and item.held and item.next_at > now:
                    out.write(f"{item_id} is being tried by a worker right now (for up to {item.next_at - now:.0f} s);"
                              " a second try at once could create a second ticket\n")
                else:
                    out.write(f"{item_id} is {item.state}: nothing to retry\n")
                return 1
            out.write(f"{item_id} will be tried again at once\n")
            return 0
        dropped = await storage.outbox_drop(item_id)
        if dropped is None:
            out.write(f"{item_id} is {item.state}: only pending or failed items can be dropped\n")
            return 1
        spool = DiskSpool(config.spool_dir, max_bytes=config.spool_max_bytes)
        files = spooled_files(dropped.payload.get("files"))
        for f in files:
            await spool.discard(f.id)
        out.write(f"{item_id} dropped with {len(files)} file(s); the user is not told\n")
        return 0
    finally:
        await storage.close()
