"""Fixtures of the ticket watcher's tests: the SimpleOne emulator on a manual clock over HTTP, the
real client, SQLite with the tickets' caller signed in, and a watcher factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig
from adapters.storage.sqlite import SqliteStorage, open_sqlite
from emulators.simpleone.server import RunningEmulator, start_emulator
from emulators.simpleone.state import ManualClock
from engine.flows.model import FlowSet
from engine.flows.source import StaticFlows
from engine.ports import Binding
from engine.work.status_watch import StatusWatcher
from tests.engine.work.watching import PEER


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def emulator(clock: ManualClock) -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(clock=clock)
    yield running
    await running.close()


@pytest.fixture
async def client(emulator: RunningEmulator) -> AsyncIterator[SimpleOneClient]:
    made = SimpleOneClient(SimpleOneConfig(emulator.url, username="bot", password="bot-password", read_timeout=5.0))
    yield made
    await made.close()


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    opened = await open_sqlite(tmp_path / "db")
    for peer in (PEER, "vk:200"):  # signed in as the tickets' caller
        await opened.put_binding(Binding(peer, f"{peer[3:]}@ranepa.ru", "caller-1", "Caller", 0.0))
    yield opened
    await opened.close()


@pytest.fixture
def make_watcher(storage: SqliteStorage, client: SimpleOneClient, flow_set: FlowSet,
                 clock: ManualClock) -> Any:
    def make(store: Any = None, **options: Any) -> StatusWatcher:
        # The watcher's clock is the emulator's: sys_updated_at and "now" agree.
        return StatusWatcher(store or storage, client, StaticFlows(flow_set), clock=lambda: clock.now.timestamp(),
                             **options)

    return make
