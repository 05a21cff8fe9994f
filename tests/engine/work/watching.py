"""What the ticket watcher's tests share: the emulator's tickets, the rows followed, a storage
that dies before its commit. The fixtures (clock, emulator, client, storage, make_watcher) are in
conftest.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.storage.sqlite import SqliteStorage
from emulators.simpleone.server import RunningEmulator
from engine.ports import Notice, WatchedTicket

INC = "itsm_incident"
REQ = "itsm_request"
PEER = "vk:100"
DAY = 86400.0


def new_ticket(emulator: RunningEmulator, table: str = INC, subject: str = "Не печатает принтер") -> str:
    return emulator.state.add_record(table, {"subject": subject, "caller": "caller-1"})


def record(emulator: RunningEmulator, table: str, sys_id: str) -> dict[str, str]:
    found = emulator.state.record(table, sys_id)
    assert found is not None
    return found


async def watched(storage: SqliteStorage) -> dict[tuple[str, str], WatchedTicket]:
    return {(w.table, w.sys_id): w for w in await storage.watch_list(limit=10_000)}


class CrashingStorage:
    """SQLite whose watch_update fails `crashes` times before anything is written (a crash)."""

    def __init__(self, inner: SqliteStorage, crashes: int = 1) -> None:
        self.inner = inner
        self.crashes = crashes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def watch_update(self, seen: Sequence[WatchedTicket], notices: Sequence[Notice], **poked: Any) -> None:
        if self.crashes > 0:
            self.crashes -= 1
            raise RuntimeError("process killed before the commit")
        await self.inner.watch_update(seen, notices, **poked)
