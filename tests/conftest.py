"""Fixtures shared by the engine and application tests: the shipped flows, a world with the
SimpleOne emulator on loopback, and a harness that talks to the real engine."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.storage.sqlite import SqliteStorage, open_sqlite
from emulators.mail_sink import MemoryMailSink
from engine.actions.context import AuthPolicy, Services
from engine.convtest import START_TIME
from engine.dialogue.runtime import Engine
from engine.flows.model import FlowSet
from engine.flows.source import StaticFlows
from engine.load import load_flow_set
from engine.ports import Binding, Incoming, IncomingFile
from engine.replies import Reply
from engine.work.outbox import OutboxWorker
from engine.work.ticket_outbox import ticket_outbox
from supportbot.conversation_world import EmulatorWorld
from tests.postgres_db import scratch_database

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"


@pytest.fixture(scope="session", autouse=True)
def _cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The bot's commands keep validated flow files under XDG_CACHE_HOME (ValidFlowCache): the
    commands tests run keep theirs in a temporary directory, not in the home of whoever runs them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(scope="session")
def flow_set() -> FlowSet:
    result = load_flow_set([FLOWS])
    assert result.flow_set is not None, [str(f) for f in result.findings]
    return result.flow_set


@pytest.fixture
async def scratch_postgres() -> AsyncIterator[str]:
    """The DSN of a fresh database on the server SUPPORTBOT_TEST_POSTGRES_URL names, dropped
    afterwards; skipped without it (failed in CI)."""
    async with scratch_database() as dsn:
        yield dsn


@pytest.fixture
async def world(flow_set: FlowSet) -> AsyncIterator[EmulatorWorld]:
    w = await EmulatorWorld.start(flow_set.tickets.tables)
    yield w
    await w.close()


@dataclass
class Harness:
    """One user talking to the real engine; SimpleOne is the emulator over HTTP."""

    engine: Engine
    storage: SqliteStorage
    mailer: MemoryMailSink
    world: EmulatorWorld
    now: list[float]
    outbox: OutboxWorker
    peer: str = "test:1"
    last: Reply | None = None
    replies: list[Reply] = field(default_factory=list)

    async def send(self, incoming: Incoming, peer: str | None = None) -> Reply:
        out = await self.engine.handle(peer or self.peer, incoming)
        assert len(out) == 1, out
        self.last = out[0]
        self.replies.append(out[0])
        return out[0]

    async def say(self, text: str, peer: str | None = None) -> Reply:
        return await self.send(Incoming(text=text), peer)

    async def press(self, label: str) -> Reply:
        assert self.last is not None
        for row in self.last.buttons:
            for button in row:
                if button.label == label:
                    return await self.send(Incoming(text=label, payload=button.payload))
        raise AssertionError(f"no button {label!r} in {self.last.labels()}")

    async def attach(self, *names: str, size: int = 1000, text: str = "") -> Reply:
        files = [IncomingFile(n, "application/octet-stream", b"x" * size) for n in names]
        return await self.send(Incoming(text=text, files=files))

    async def sign_in(self, email: str, peer: str | None = None) -> None:
        person = await self.world.tickets.find_person(email)
        assert person is not None
        await self.storage.put_binding(Binding(peer or self.peer, email, person.sys_id, person.name, self.now[0]))

    async def describe(self, email: str, text: str, group: str = "2", entry: str = "5") -> None:
        """Sign in and go from the menu through the catalogue to a typed description."""
        await self.sign_in(email)
        for typed in ("Начать", "Создать заявку", group, entry, text):
            await self.say(typed)

    async def seed_tickets(self, email: str, count: int) -> None:
        """Sign in and give the user `count` open tickets in the emulator."""
        await self.sign_in(email)
        binding = await self.storage.get_binding(self.peer)
        assert binding is not None
        for n in range(count):
            self.world.emulator.state.add_record(
                "itsm_incident", {"caller": binding.caller_id, "subject": f"Заявка номер {n}", "active": "1"})

    def state(self) -> str:
        cached = self.engine.sessions._cache.get(self.peer)
        assert cached is not None
        return cached.state


@pytest.fixture
async def harness(flow_set: FlowSet, world: EmulatorWorld, tmp_path: Path) -> AsyncIterator[Harness]:
    storage = await open_sqlite(tmp_path / "bot.db")
    now = [START_TIME]
    mailer = MemoryMailSink()
    services = Services(storage, world.tickets, mailer, world.spool, AuthPolicy(), clock=lambda: now[0])
    flows = StaticFlows(flow_set)
    worker = ticket_outbox(services, flows)
    h = Harness(Engine(flows, services), storage, mailer, world, now, worker)
    working = asyncio.create_task(worker.run())
    yield h
    working.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await working
    await storage.close()


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """A private copy of the shipped flows (with their conversation tests) to break at will."""
    target = tmp_path / "flows"
    shutil.copytree(FLOWS, target)
    return target
