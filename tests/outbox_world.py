"""A driver for outbox fault tests: several users talk to the real engine, the outbox worker
sends their tickets to the SimpleOne emulator over HTTP, time is a manual clock.

One manual clock drives the engine, the worker (its backoff and, through `monotonic`, its
circuit breaker) and the emulator's timestamps, so a ten-minute outage takes no real ten
minutes and `sys_updated_at` moves only when the test says so. Only the HTTP timeouts are real:
the client's read timeout is short, so a hanging request resolves in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig
from adapters.storage.sqlite import SqliteStorage, open_sqlite
from emulators.mail_sink import MemoryMailSink
from engine.actions.context import AuthPolicy, Services
from engine.actions.ticket_items import COMMENT, CREATE, marker
from engine.convtest import START_TIME
from engine.dialogue.runtime import Engine
from engine.flows.model import FlowSet
from engine.flows.source import StaticFlows
from engine.ports import OUTBOX_DONE, OUTBOX_PENDING, Binding, Incoming, Notice, OutboxItem
from engine.replies import Reply
from engine.work.notices import outbox_notices
from engine.work.outbox import OutboxPolicy, OutboxWorker
from engine.work.ticket_moves import move_executors
from engine.work.ticket_work import ticket_executors
from supportbot.conversation_world import EmulatorWorld

# Short real timeouts: a hung request costs READ_TIMEOUT of wall time, not 30 s.
READ_TIMEOUT = 0.3
# The worker's own per-attempt timeout stays above the client's, so the client's wins.
POLICY = OutboxPolicy(wait=2.0, tell_grace=0.0, default_timeout=5.0)
STEP = 30.0  # simulated seconds between worker rounds while settling
INCIDENTS = "/rest/v1/table/itsm_incident"

QUEUED = "номер заявки придёт сообщением"
CREATED_RE = re.compile(r"Заявка (INC\d+) создана")
NOTICED_RE = re.compile(r"под номером (INC\d+)")
NUMBER_RE = re.compile(r"INC\d+")


@dataclass
class User:
    peer: str
    email: str
    caller_id: str
    text: str  # the unique description this user types
    replies: list[Reply] = field(default_factory=list)

    @property
    def last(self) -> Reply:
        return self.replies[-1]


@dataclass
class Rig:
    world: EmulatorWorld
    storage: SqliteStorage
    client: SimpleOneClient
    engine: Engine
    worker: OutboxWorker
    now: list[float]
    task: asyncio.Task[None]
    restore_clock: Callable[[], datetime]
    users: list[User] = field(default_factory=list)
    breaker_states: list[str] = field(default_factory=list)  # seen after each settling round

    @classmethod
    async def open(cls, world: EmulatorWorld, flow_set: FlowSet, db: Path, *,
                   policy: OutboxPolicy = POLICY, read_timeout: float = READ_TIMEOUT) -> Rig:
        now = [START_TIME]

        def clock() -> float:
            return now[0]

        state = world.emulator.state
        restore = state.clock
        state.clock = lambda: datetime.fromtimestamp(now[0], UTC)
        storage = await open_sqlite(db)
        client = SimpleOneClient(SimpleOneConfig(world.emulator.url, username="bot", password="bot-password",
                                                 connect_timeout=2.0, read_timeout=read_timeout))
        flows = StaticFlows(flow_set)
        services = Services(storage, client, MemoryMailSink(), world.spool, AuthPolicy(), clock=clock)
        executors = {**ticket_executors(client, world.spool, clock, journal=lambda: flows.current.tickets.journal),
                     **move_executors(client)}
        worker = OutboxWorker(storage, executors, outbox_notices(flows, clock),
                              policy, clock=clock, monotonic=clock)
        services.outbox = worker
        task = asyncio.create_task(worker.run())
        return cls(world, storage, client, Engine(flows, services), worker, now, task, restore)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.client.close()
        await self.storage.close()
        self.world.emulator.state.clock = self.restore_clock

    # ------------------------------------------------------------------ talking

    async def send(self, user: User, incoming: Incoming) -> Reply:
        out = await self.engine.handle(user.peer, incoming)
        assert len(out) == 1, out
        user.replies.append(out[0])
        return out[0]

    async def say(self, user: User, text: str) -> Reply:
        return await self.send(user, Incoming(text=text))

    async def press(self, user: User, label: str) -> Reply:
        for row in user.last.buttons:
            for button in row:
                if button.label == label:
                    return await self.send(user, Incoming(text=label, payload=button.payload))
        raise AssertionError(f"{user.peer}: no button {label!r} in {user.last.labels()}: {user.last.text}")

    async def sign_in(self, n: int) -> User:
        """User n, bound to the emulator's person for un@ranepa.ru (created on first look-up)."""
        email = f"u{n}@ranepa.ru"
        person = await self.client.find_person(email)
        assert person is not None, email
        await self.storage.put_binding(Binding(f"fault:{n}", email, person.sys_id, person.name, self.now[0]))
        text = f"Пользователь {n}: не открывается сетевая папка, код {uuid.uuid4().hex}"
        user = User(f"fault:{n}", email, person.sys_id, text)
        self.users.append(user)
        return user

    async def sign_in_all(self, count: int) -> list[User]:
        return [await self.sign_in(n) for n in range(1, count + 1)]

    async def draft(self, user: User) -> None:
        """From hello to the check screen: nothing here reaches SimpleOne."""
        await self.say(user, "Начать")
        await self.press(user, "Создать заявку")
        await self.say(user, "2")  # Сопровождение сервисов сотрудника
        await self.say(user, "5")  # Сетевые ресурсы → itsm_incident
        await self.say(user, user.text)
        await self.press(user, "Без файлов")
        assert "Проверьте заявку" in user.last.text, user.last.text

    async def submit(self, user: User) -> Reply:
        reply = await self.press(user, "Отправить")
        assert CREATED_RE.search(reply.text) or QUEUED in reply.text, reply.text
        return reply

    async def create_all(self, users: Sequence[User]) -> None:
        await asyncio.gather(*(self.draft(u) for u in users))
        await asyncio.gather(*(self.submit(u) for u in users))

    # ------------------------------------------------------------------ time

    async def pending(self) -> list[OutboxItem]:
        return await self.storage.outbox_list([OUTBOX_PENDING], limit=1000)

    async def advance(self, seconds: float = STEP) -> None:
        """Simulated time passes; the worker does what has come due."""
        self.now[0] += seconds
        await self.worker.drain()
        self.breaker_states.append(self.worker.breaker.state)

    async def settle(self, max_steps: int = 120) -> int:
        """Advance until no outbox item is pending, then one more round (untold outcomes go out
        as notices in a round's sweep); returns the simulated seconds it took."""
        for step in range(max_steps):
            if not await self.pending():
                self.now[0] += STEP
                await self.worker.run_once()
                return step * int(STEP)
            await self.advance()
        items = await self.pending()
        raise AssertionError(f"the outbox never settled: {[(i.kind, i.attempts, i.last_error) for i in items]}")

    # ------------------------------------------------------------------ what must hold

    def tickets(self) -> list[dict[str, str]]:
        state = self.world.emulator.state
        return [r for table in self.world.ticket_tables for r in state.records(table)]

    async def notices(self) -> list[Notice]:
        return await self.storage.notices_unsent(limit=1000)

    async def check_tickets(self, users: Sequence[User] | None = None) -> dict[str, str]:
        """Every ticket exists exactly once, with its text intact and its marker; every user
        learned exactly one number, that ticket's; no outbox item is left failed or untold.
        Returns peer → number."""
        users = list(self.users if users is None else users)
        items = await self.storage.outbox_list(limit=1000)
        assert [(i.kind, i.state, i.last_error) for i in items if i.state != OUTBOX_DONE] == []
        assert [i.id for i in items if not i.told] == []
        notices = await self.notices()
        tickets = self.tickets()
        assert len(tickets) == len(users), [t["number"] for t in tickets]
        numbers: dict[str, str] = {}
        for user in users:
            mine = [t for t in tickets if user.text in t.get("description", "")]
            assert len(mine) == 1, (user.peer, [t["number"] for t in mine])
            ticket = mine[0]
            creates = [i for i in items if i.peer == user.peer and i.kind == CREATE]
            assert len(creates) == 1, user.peer
            assert ticket["caller"] == user.caller_id
            # Nothing typed was lost: the description starts with the text as typed.
            assert ticket["description"].startswith(user.text + "\n"), ticket["description"]
            assert ticket["description"].endswith(marker(creates[0].id))
            submit = next(r for r in reversed(user.replies) if CREATED_RE.search(r.text) or QUEUED in r.text)
            in_reply = CREATED_RE.findall(submit.text)
            peer_notices = [n.text for n in notices if n.peer == user.peer]
            in_notices = [m for text in peer_notices for m in NOTICED_RE.findall(text)]
            # Told once: in the answer to "Отправить" or, after "Заявка принята", by one notice.
            assert (in_reply and not in_notices) or (QUEUED in submit.text and len(in_notices) == 1), \
                (user.peer, submit.text, peer_notices)
            assert [*in_reply, *in_notices] == [ticket["number"]]
            said = " ".join([*(r.text for r in user.replies), *peer_notices])
            assert set(NUMBER_RE.findall(said)) == {ticket["number"]}, said
            numbers[user.peer] = ticket["number"]
        assert len(set(numbers.values())) == len(users)
        return numbers

    async def comment_items(self) -> list[OutboxItem]:
        return [i for i in await self.storage.outbox_list(limit=1000) if i.kind == COMMENT]

    def requests_since(self, mark: int) -> list[tuple[str, str, int]]:
        return [(e.method, e.path, e.status) for e in self.world.emulator.state.request_log[mark:]]
