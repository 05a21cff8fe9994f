"""The engine path without any channel: event in → step → session committed to SQLite → reply out.

For 1 k, 100 k and 1 M stored sessions it prints events per second (users one after another,
and 100 users at once: group commit), p50/p99 step latency, and the memory one cached session
costs. Numbers only; nothing is asserted (DESIGN: "Speed and size").

SimpleOne is the emulator's state called in process (no HTTP), so the numbers are the engine's
and SQLite's, not the loopback's.

Run: .venv/bin/python bench/engine.py [--sizes 1000,100000,1000000] [--users 100]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.simpleone.emulator_state import EmulatorState
from adapters.spool import DiskSpool
from adapters.sqlite import open_sqlite
from engine.actions.context import AuthPolicy, Services
from engine.flowset import load_flow_set
from engine.model import FlowSet
from engine.ports import Attachment, Binding, Incoming, MailMessage, Person, Ticket, TicketRef, Upload
from engine.runtime import Engine, StaticFlows
from engine.ticket_work import ticket_outbox

FLOWS = Path(__file__).resolve().parent.parent / "flows"
# The 7-step create-ticket dialogue of a signed-in user.
DIALOGUE = ["Начать", "Создать заявку", "2", "6",
            "Не запускается Microsoft Word на ноутбуке в ауд. 305, пишет ошибку лицензии.",
            "Без файлов", "Отправить"]


class InProcessSimpleOne:
    """The emulator's tables without the HTTP in between (bench only: isolates the engine)."""

    def __init__(self) -> None:
        self.state = EmulatorState(auto_users_domains=("ranepa.ru",))
        self.people: dict[str, str] = {}

    async def find_person(self, email: str) -> Person | None:
        if email not in self.people:
            self.people[email] = self.state.add_user(email, "Bench", "User")
        return Person(self.people[email], email, "Bench User")

    async def create_ticket(self, table: str, fields: Mapping[str, str]) -> TicketRef:
        sys_id = self.state.create(table, fields, author="bot")
        record = self.state.record(table, sys_id) or {}
        return TicketRef(table, sys_id, record.get("number", ""))

    async def find_ticket_by_marker(self, table: str, caller_id: str, marker: str) -> TicketRef | None:
        for record in self.state.table(table).values():
            if record.get("caller") == caller_id and marker in record.get("description", ""):
                return TicketRef(table, record["sys_id"], record.get("number", ""))
        return None

    async def list_tickets(self, caller_id: str, tables: Sequence[str], *, active_only: bool,
                           limit: int) -> list[Ticket]:
        return []

    async def get_ticket(self, table: str, sys_id: str) -> Ticket | None:
        return None

    async def get_tickets(self, table: str, sys_ids: Sequence[str]) -> list[Ticket]:
        return []

    async def list_attachments(self, table: str, sys_id: str) -> list[Attachment]:
        return []

    async def add_comment(self, table: str, sys_id: str, field: str, text: str) -> None:
        return None

    async def upload_files(self, table: str, sys_id: str, files: Sequence[Upload]) -> None:
        return None

    async def close(self) -> None:
        return None


class NoMail:
    async def send(self, message: MailMessage) -> None:
        return None


def populate(path: Path, count: int, flow_version: str) -> None:
    """Stored sessions of idle users, written straight into the adapter's table."""
    slots = json.dumps({"user": {"email": "someone@ranepa.ru", "name": "Someone", "caller_id": "1"},
                        "description": "Старый черновик заявки о принтере в аудитории 305"}, ensure_ascii=False)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO sessions (peer, state, slots, flow_version, version, updated_at) VALUES (?, ?, ?, ?, 1, ?)",
            ((f"idle:{i}", "main.menu", slots, flow_version, time.time()) for i in range(count)))
    conn.close()


async def run_size(flow_set: FlowSet, size: int, users: int, tmp: Path) -> dict[str, float]:
    db = tmp / f"bench-{size}.db"
    storage = await open_sqlite(db)
    await storage.close()
    populate(db, size, flow_set.version)
    storage = await open_sqlite(db)
    tickets = InProcessSimpleOne()
    services = Services(storage, tickets, NoMail(), DiskSpool(tmp / "spool"), AuthPolicy(), idle_timeout=1e9)
    flows = StaticFlows(flow_set)
    # The submit goes through the outbox as in the bot: committed, created, told in a follow-up step.
    worker = ticket_outbox(services, flows)
    working = asyncio.create_task(worker.run())
    engine = Engine(flows, services)
    rnd = random.Random(size)

    async def sign_in(peer: str) -> None:
        person = await tickets.find_person(f"{peer.replace(':', '-')}@ranepa.ru")
        assert person is not None
        await storage.put_binding(Binding(peer, person.email, person.sys_id, person.name, time.time()))

    latencies: list[float] = []

    async def dialogue(peer: str) -> None:
        for text in DIALOGUE:
            started = time.perf_counter()
            replies = await engine.handle(peer, Incoming(text=text))
            latencies.append(time.perf_counter() - started)
            assert replies, text
        if "создана" not in replies[0].text:
            raise RuntimeError(f"dialogue did not create a ticket: {replies[0].text[:200]}")

    # Active users are stored sessions picked at random among the idle ones.
    peers = [f"idle:{i}" for i in rnd.sample(range(size), min(size, 2 * users))]
    sequential, concurrent = peers[:users], peers[users:]
    for peer in peers:
        await sign_in(peer)

    started = time.perf_counter()
    for peer in sequential:
        await dialogue(peer)
    seq_rate = len(sequential) * len(DIALOGUE) / (time.perf_counter() - started)
    seq_lat = sorted(latencies)
    latencies.clear()

    before = storage.commit_stats
    started = time.perf_counter()
    await asyncio.gather(*(dialogue(peer) for peer in concurrent))
    conc_rate = len(concurrent) * len(DIALOGUE) / (time.perf_counter() - started)
    after = storage.commit_stats
    batch = (after.steps - before.steps) / max(1, after.batches - before.batches)

    # Memory of cached sessions: load more sessions into the cache and measure the growth.
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    extra = [f"idle:{i}" for i in rnd.sample(range(size), min(size, 1000))]
    for peer in extra:
        await engine.sessions.load(peer)
    gc.collect()
    per_session = (tracemalloc.get_traced_memory()[0] - before) / max(1, len(extra))
    tracemalloc.stop()
    working.cancel()
    await asyncio.gather(working, return_exceptions=True)
    await storage.close()
    db.unlink()
    return {
        "stored": size, "seq_rate": seq_rate, "conc_rate": conc_rate,
        "p50_ms": statistics.median(seq_lat) * 1000, "p99_ms": seq_lat[int(len(seq_lat) * 0.99)] * 1000,
        "per_session_kib": per_session / 1024, "mean_batch": batch,
    }


async def main(sizes: list[int], users: int) -> None:
    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    print(f"engine path on SQLite: {users} users × {len(DIALOGUE)}-step create-ticket dialogue, "
          f"sequential then {users} at once")
    print(f"{'stored':>9} {'seq ev/s':>10} {'conc ev/s':>10} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'KiB/session':>11} {'batch':>6}")
    print("(ratio: at once / one after another; batch: steps per group commit when at once)")
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
        for size in sizes:
            r = await run_size(flow_set, size, users, Path(tmp))
            print(f"{int(r['stored']):>9} {r['seq_rate']:>10.0f} {r['conc_rate']:>10.0f} "
                  f"{r['conc_rate'] / r['seq_rate']:>6.2f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
                  f"{r['per_session_kib']:>11.2f} {r['mean_batch']:>6.1f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--users", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.users))
