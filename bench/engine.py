"""The engine path without any channel: event in → step → session committed → reply out.

For 1 k, 100 k and 1 M stored sessions it prints events per second (users one after another,
and 100 users at once: group commit), p50/p99 step latency, and the memory one cached session
costs mid-dialogue (at the files step, a description in its draft). Numbers only; nothing is
asserted (DESIGN: "Speed and size").

SQLite, and PostgreSQL as several workers use it: there every step also takes the peer's lock
across processes (advisory locks, Storage.peer_lock) and reads the session afresh (no session
cache when storage.shared; since migration 12 the lock's round trip brings the session along);
bindings are not cached there either (read a few times per dialogue). One engine process is
measured, so the lock is taken and released but never
contended. The PostgreSQL server is the one SUPPORTBOT_TEST_POSTGRES_URL (or --postgres) names;
a scratch database per number of stored sessions is created there and dropped afterwards, also
on Ctrl-C or failure.

PostgreSQL is measured in --rounds rounds, each on a freshly opened storage. With --split (the
default) a round has three variants: as deployed; the peer lock made a no-op; and that with the
one-process session cache back (both patched on the bench's own storage object and engine). One
after another, the variants take turns user by user; at once, each runs its 100 users twice
(A B C C B A), so a slow spell of the shared machine hits them alike. Printed: events/s over all
rounds with the rounds' range, p50/p99 over all steps, and the ratios between variants (median
and range of the rounds' ratios). Before any timing, 20 users go through the dialogue at once,
untimed (connections made, statements prepared), on SQLite too.

SimpleOne is the emulator's state called in process (no HTTP), so the numbers are the engine's
and the database's, not the loopback's.

Run: .venv/bin/python bench/engine.py [--sizes 1000,100000,1000000] [--users 100]
         [--database sqlite|postgres|both] [--postgres URL] [--rounds 3] [--no-split]
(--database defaults to both when a PostgreSQL URL is given, else sqlite)

Several workers: --workers 1,2 [--base /work/wt/base] [--users 400] [--rounds 5] [--json] runs
PostgreSQL only, with that many engine worker PROCESSES on one scratch database, the users split
between them: half of them each worker's share one after another, the other half all at once;
events/s are all workers' events over the time from the first one's start to the last one's
end. --base runs another tree's code (engine, storage, flows: a checkout of an older commit) the
same way on a database of its own, the trees taking turns within each round (which goes first
alternates), and prints the ratios: this tree's one worker against the base's, and two workers
against one (median and range of the rounds' ratios). --json ends with one JSON line:
"pg_one_worker_vs_base", "pg_two_vs_one" (one after another; "…_at_once" for at once, "…_base"
for the base tree's own scaling), each {"median", "min", "max"}, and "events_per_s" (per
"tree/workers/phase", the rounds' rates). Each round's users are stored sessions not used before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# A worker process of --base runs this file with SUPPORTBOT_BENCH_TREE naming the tree whose code
# (engine, adapters, flows) it measures.
sys.path.insert(0, os.environ.get("SUPPORTBOT_BENCH_TREE") or str(Path(__file__).resolve().parent.parent))

from adapters.spool import DiskSpool
from adapters.storage.postgres import open_postgres
from adapters.storage.sqlite import open_sqlite
from bench.machine import cpu_sample
from emulators.scratch_postgres import create_scratch_database, drop_database
from emulators.simpleone.state import EmulatorState
from engine.actions.context import AuthPolicy, Services
from engine.dialogue.runtime import Engine
from engine.dialogue.sessions import SessionCache
from engine.flows.model import FlowSet
from engine.flows.source import StaticFlows
from engine.load import load_flow_set
from engine.ports import (
    DEFAULT_PEOPLE_TABLES,
    Attachment,
    Binding,
    Comment,
    Incoming,
    Journal,
    MailMessage,
    Person,
    Storage,
    Ticket,
    TicketRef,
    Upload,
)
from engine.work.ticket_outbox import ticket_outbox

TREE = Path(sys.path[0])
THIS_FILE = Path(__file__).resolve()
FLOWS = TREE / "flows"
# The 7-step create-ticket dialogue of a signed-in user.
DIALOGUE = ["Начать", "Создать заявку", "2", "6",
            "Не запускается Microsoft Word на ноутбуке в ауд. 305, пишет ошибку лицензии.",
            "Без файлов", "Отправить"]
COLUMNS = ("peer", "state", "slots", "flow_version", "version", "updated_at")
# PostgreSQL variants: as deployed (peer lock, fresh read); the lock a no-op; neither.
AS_DEPLOYED, NO_LOCK, NO_LOCK_CACHED = "postgres", "  no peer lock", "  no lock, cached"
T = TypeVar("T")
WARMUP_USERS = 20  # through the dialogue at once before each run, untimed
MEMORY_SESSIONS = 500  # mid-dialogue sessions whose cached size is measured


class InProcessSimpleOne:
    """The emulator's tables without the HTTP in between (bench only: isolates the engine)."""

    def __init__(self) -> None:
        self.state = EmulatorState(auto_users_domains=("ranepa.ru",))
        self.people: dict[str, str] = {}

    async def find_person(self, email: str, tables: Sequence[str] = DEFAULT_PEOPLE_TABLES) -> Person | None:
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
                           limit: int, closed_since: str = "") -> list[Ticket]:
        return []

    async def get_ticket(self, table: str, sys_id: str) -> Ticket | None:
        return None

    async def get_tickets(self, table: str, sys_ids: Sequence[str]) -> list[Ticket]:
        return []

    async def find_attachments(self, table: str, sys_id: str, files: Sequence[Attachment], *,
                               since: str, known: Sequence[Attachment] = ()) -> list[Attachment]:
        return []

    async def add_comment(self, table: str, sys_id: str, field: str, text: str) -> None:
        return None

    async def list_comments(self, table: str, sys_id: str, *, journal: Journal | None = None,
                            after: str | None = None, limit: int = 50) -> list[Comment]:
        return []

    async def journal_since(self, table: str, sys_ids: Sequence[str], *, after: str | None,
                            journal: Journal | None = None, limit: int = 200) -> list[Comment]:
        return []

    async def latest_comments(self, table: str, sys_id: str, *, journal: Journal | None = None,
                              before: str | None = None, limit: int = 5) -> list[Comment]:
        return []

    async def state_changed_by_bot(self, table: str, sys_id: str, journal: Journal | None = None) -> bool:
        return False

    async def update_ticket(self, table: str, sys_id: str, fields: Mapping[str, str]) -> None:
        return None

    async def list_attachment_names(self, table: str, sys_id: str) -> list[str]:
        return []

    async def state_labels(self, table: str) -> Mapping[str, str]:
        return {}

    async def upload_files(self, table: str, sys_id: str, files: Sequence[Upload]) -> list[Attachment]:
        return []

    async def close(self) -> None:
        return None


class NoMail:
    async def send(self, message: MailMessage) -> None:
        return None


# ----------------------------------------------------------------- stored sessions


def stored_rows(count: int, flow_version: str) -> Iterator[tuple[Any, ...]]:
    """Stored sessions of idle users, made one by one as they are written."""
    slots = json.dumps({"user": {"email": "someone@ranepa.ru", "name": "Someone", "caller_id": "1"},
                        "description": "Старый черновик заявки о принтере в аудитории 305"}, ensure_ascii=False)
    now = time.time()
    return ((f"idle:{i}", "main.menu", slots, flow_version, 1, now) for i in range(count))


def populate_sqlite(path: Path, count: int, flow_version: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(f"INSERT INTO sessions ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
                         stored_rows(count, flow_version))
    conn.close()


async def populate_postgres(dsn: str, count: int, flow_version: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    await (await open_postgres(dsn)).close()  # the schema
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("sessions", records=stored_rows(count, flow_version), columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE sessions")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):  # a run should not pay for the load
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


# ----------------------------------------------------------------- one run


@contextlib.asynccontextmanager
async def no_lock(peer: str) -> AsyncIterator[None]:
    yield


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of all at or below it."""
    return ordered[max(0, min(len(ordered), math.ceil(q * len(ordered))) - 1)]


@dataclass
class Phase:
    """Steps of one variant in one phase (one round, or all rounds merged)."""

    time: float = 0.0  # seconds: one after another, the users' dialogues summed; at once, the wall time
    events: int = 0
    latencies: list[float] = field(default_factory=list)
    steps: int = 0  # committed in `batches` group commits
    batches: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.time

    def add(self, other: Phase) -> None:
        self.time += other.time
        self.events += other.events
        self.latencies += other.latencies
        self.steps += other.steps
        self.batches += other.batches


Round = dict[str, dict[str, Phase]]  # variant → "seq" / "conc" → its steps


async def run_round(flow_set: FlowSet, storage: Storage, size: int, users: int, spool: Path, seed: int,
                    variants: Sequence[str], *, memory: bool = False) -> tuple[Round, float]:
    """One engine on storage. Untimed, WARMUP_USERS new users through the dialogue at once
    (connections made, statements prepared, as in a worker that has been running). Then, one
    after another, users signed-in users per variant, the variants taking turns user by user (a
    slow spell of the shared machine hits them alike); then, per variant, users others all at
    once (twice with several variants). Users are stored sessions picked at random (new ones
    where fewer are stored). Returns the steps and, with memory, the KiB one cached session
    costs mid-dialogue (else NaN)."""
    tickets = InProcessSimpleOne()
    services = Services(storage, tickets, NoMail(), DiskSpool(spool), AuthPolicy(), idle_timeout=1e9)
    flows = StaticFlows(flow_set)
    # The submit goes through the outbox as in the bot: committed, created, told in a follow-up step.
    worker = ticket_outbox(services, flows)
    working = asyncio.create_task(worker.run())
    engine = Engine(flows, services)
    own_cache = engine.sessions  # none for a shared storage: every step reads the session afresh
    one_process_cache = SessionCache(storage)  # what a storage of one process gets

    def use(variant: str) -> None:
        """Patched on this storage object and engine only."""
        if variant == AS_DEPLOYED:
            vars(storage).pop("peer_lock", None)
        else:
            storage.peer_lock = no_lock  # type: ignore[method-assign]
        engine.sessions = one_process_cache if variant == NO_LOCK_CACHED else own_cache

    async def sign_in(peer: str) -> None:
        person = await tickets.find_person(f"{peer.replace(':', '-')}@ranepa.ru")
        assert person is not None
        await storage.put_binding(Binding(peer, person.email, person.sys_id, person.name, time.time()))

    async def dialogue(peer: str, latencies: list[float]) -> None:
        for text in DIALOGUE:
            started = time.perf_counter()
            replies = await engine.handle(peer, Incoming(text=text))
            latencies.append(time.perf_counter() - started)
            assert replies, text
        if "создана" not in replies[0].text:
            raise RuntimeError(f"dialogue did not create a ticket: {replies[0].text[:200]}")

    rnd = random.Random(seed)
    turns = len(variants)
    wanted = users * turns * (3 if turns > 1 else 2)
    peers = [f"idle:{i}" for i in rnd.sample(range(size), min(size, wanted))]
    peers += [f"new:{seed}:{n}" for n in range(wanted - len(peers))]  # fewer stored than wanted
    sequential, concurrent = peers[:users * turns], peers[users * turns:]
    warm = [f"warm:{seed}:{n}" for n in range(WARMUP_USERS)]
    result: Round = {v: {"seq": Phase(), "conc": Phase()} for v in variants}
    try:
        for peer in peers + warm:
            await sign_in(peer)
        use(variants[0])
        await asyncio.gather(*(dialogue(peer, []) for peer in warm))

        for n, peer in enumerate(sequential):
            variant = variants[n % turns]
            use(variant)
            phase = result[variant]["seq"]
            started = time.perf_counter()
            await dialogue(peer, phase.latencies)
            phase.time += time.perf_counter() - started
            phase.events += len(DIALOGUE)

        # With several variants each goes twice, there and back (A B C C B A): a machine getting
        # slower or faster meanwhile weighs on them alike.
        for k, variant in enumerate([*variants, *reversed(variants)] if turns > 1 else variants):
            use(variant)
            phase = result[variant]["conc"]
            stats = storage.commit_stats  # type: ignore[attr-defined]  # both adapters count commits
            started = time.perf_counter()
            await asyncio.gather(*(dialogue(peer, phase.latencies)
                                   for peer in concurrent[k * users:(k + 1) * users]))
            phase.time += time.perf_counter() - started
            phase.events += users * len(DIALOGUE)
            after = storage.commit_stats  # type: ignore[attr-defined]
            phase.steps += after.steps - stats.steps
            phase.batches += after.batches - stats.batches

        per_session = math.nan
        if memory:
            # Memory of cached sessions mid-dialogue (issue 16's measure): users walked up to the
            # files step (service chosen, a description in the draft), their sessions dropped
            # from the cache, then loaded into it again while the growth is measured.
            use(AS_DEPLOYED)
            mid = [f"mid:{seed}:{n}" for n in range(MEMORY_SESSIONS)]
            for peer in mid:
                await sign_in(peer)

            async def walk(peer: str) -> None:
                for text in DIALOGUE[:5]:
                    await engine.handle(peer, Incoming(text=text))

            await asyncio.gather(*(walk(peer) for peer in mid))
            for peer in mid:
                engine.sessions.forget(peer)
            gc.collect()
            tracemalloc.start()
            allocated = tracemalloc.get_traced_memory()[0]
            for peer in mid:
                await engine.sessions.load(peer)
            gc.collect()
            per_session = (tracemalloc.get_traced_memory()[0] - allocated) / len(mid) / 1024
            tracemalloc.stop()
    finally:
        working.cancel()
        await asyncio.gather(working, return_exceptions=True)
    return result, per_session


# ----------------------------------------------------------------- the backends


async def measure_sqlite(flow_set: FlowSet, size: int, users: int, tmp: Path) -> tuple[Round, float]:
    db = tmp / f"bench-{size}.db"
    await (await open_sqlite(db)).close()  # the schema
    populate_sqlite(db, size, flow_set.version)
    storage = await open_sqlite(db)
    try:
        return await run_round(flow_set, storage, size, users, tmp / "spool", size, [AS_DEPLOYED], memory=True)
    finally:
        await storage.close()
        db.unlink()


async def postgres_rounds(dsn: str, flow_set: FlowSet, size: int, users: int, variants: Sequence[str],
                          rounds: int, tmp: Path) -> list[Round]:
    """rounds rounds, each on its own storage opened as a worker opens it; each round starts
    with another variant (none is always the first to run)."""
    started = time.perf_counter()
    await populate_postgres(dsn, size, flow_set.version)
    print(f"  (populate: {size:,} sessions by COPY, then VACUUM ANALYZE, in {time.perf_counter() - started:.1f} s)",
          flush=True)
    done: list[Round] = []
    cpu_before, own_before, started = cpu_sample(), time.process_time(), time.perf_counter()
    for n in range(rounds):
        storage = await open_postgres(dsn, application_name="bench-engine")
        try:
            order = [variants[(n + k) % len(variants)] for k in range(len(variants))]
            done.append((await run_round(flow_set, storage, size, users, tmp / f"spool-{n}", size * 100 + n,
                                         order))[0])
        finally:
            await storage.close()
    cpu_after, wall = cpu_sample(), time.perf_counter() - started
    busy = "?" if cpu_before is None or cpu_after is None else \
        f"{(cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1]) * 100:.0f} %"
    print(f"  ({rounds} round(s) in {wall:.1f} s; the machine's CPUs busy {busy}, this process's share "
          f"{(time.process_time() - own_before) / wall / (os.cpu_count() or 1) * 100:.0f} %)", flush=True)
    return done


class Terminated(Exception):
    """SIGTERM: the bench stops as on Ctrl-C, cleaning up first."""


def terminate(signum: int, frame: Any) -> None:
    raise Terminated  # outside an event loop (inside one, run() cancels its main task instead)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with SIGTERM cancelling the main task as Ctrl-C does (asyncio.run's own
    handling): the coroutine's cleanup runs (storages closed) before Terminated is raised."""
    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        raise Terminated from None
    finally:
        signal.signal(signal.SIGTERM, terminate)  # the loop's handler is gone with the loop


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Cleanup that a further Ctrl-C or SIGTERM must not cut short: they take effect after it."""
    got: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: got.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signal.SIGINT in got:
        raise KeyboardInterrupt
    if got:
        raise Terminated


def measure_postgres(admin: str, flow_set: FlowSet, size: int, users: int, variants: Sequence[str],
                     rounds: int, tmp: Path) -> list[Round]:
    dsn = run(create_scratch_database(admin))
    try:
        return run(postgres_rounds(dsn, flow_set, size, users, variants, rounds, tmp))
    finally:
        with signals_deferred():
            asyncio.run(drop_database(admin, dsn))


# ----------------------------------------------------------------- printing


HEADER = (f"{'':<27} │ {'one user after another':<36} │ {'all users at once':<42} │\n"
          f"{'backend':<17} {'stored':>9} │ {'events/s':>8} {'(range)':>13} {'p50 ms':>6} {'p99 ms':>6} │"
          f" {'events/s':>8} {'(range)':>13} {'p50 ms':>6} {'p99 ms':>6} {'batch':>5} │ {'KiB/session':>11}")


def merged(rounds: Sequence[Round], variant: str, phase: str) -> Phase:
    total = Phase()
    for r in rounds:
        total.add(r[variant][phase])
    total.latencies.sort()
    return total


def columns(rounds: Sequence[Round], variant: str, phase: str) -> str:
    """Events/s over all rounds, the rounds' range, p50/p99 over all steps."""
    m = merged(rounds, variant, phase)
    rates = [r[variant][phase].rate for r in rounds]
    spread = f"({min(rates):,.0f}–{max(rates):,.0f})" if len(rates) > 1 else ""
    return (f"{m.rate:>8,.0f} {spread:>13} {percentile(m.latencies, 0.50) * 1000:>6.2f}"
            f" {percentile(m.latencies, 0.99) * 1000:>6.2f}")


def report(label: str, variant: str, size: int, rounds: Sequence[Round], kib: float = math.nan) -> None:
    conc = merged(rounds, variant, "conc")
    print(f"{label:<17} {size:>9,} │ {columns(rounds, variant, 'seq')} │ {columns(rounds, variant, 'conc')}"
          f" {conc.steps / max(1, conc.batches):>5.1f} │ {'' if math.isnan(kib) else f'{kib:.2f}':>11}", flush=True)


def cost(what: str, size: int, rounds: Sequence[Round], cheap: str, dear: str) -> None:
    """dear against cheap: the ratio of events/s, median and range over the rounds."""
    parts = []
    for phase, name in (("seq", "one after another"), ("conc", "at once")):
        ratios = sorted(r[dear][phase].rate / r[cheap][phase].rate for r in rounds)
        spread = f" ({ratios[0]:.2f}–{ratios[-1]:.2f})" if len(ratios) > 1 else ""
        part = f"{name} ×{statistics.median(ratios):.2f}{spread}"
        if phase == "seq":  # one after another, the time per event is the mean step
            extra = 1000 / merged(rounds, dear, phase).rate - 1000 / merged(rounds, cheap, phase).rate
            part += f", {extra:+.2f} ms a step"
        parts.append(part)
    print(f"  {what} at {size:,}: events/s " + "; ".join(parts), flush=True)


# ----------------------------------------------------------------- the whole bench


def main(sizes: list[int], users: int, databases: set[str], admin: str | None, rounds: int, split: bool,
         as_json: bool = False) -> None:
    began = time.perf_counter()
    memory: list[float] = []  # bytes per cached session, per size (SQLite)
    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    print(f"engine path: {users} users × {len(DIALOGUE)}-step create-ticket dialogue one after another, "
          f"then {users} others at once; {os.cpu_count()} CPUs, the database server (if any) on the same machine")
    if "postgres" in databases:
        print(f"PostgreSQL: the peer lock across processes and a fresh session read per step; {rounds} round(s)"
              + ("; split: the same without the lock, and without the lock with the session cache"
                 if split else ""))
        print("(events/s over all rounds, the rounds' range in brackets; p50/p99 over all steps)")
    print(HEADER)
    print("(batch: steps per group commit when at once; KiB/session: a cached session mid-dialogue (at the files"
          " step), SQLite only, PostgreSQL caches none)", flush=True)
    variants = [AS_DEPLOYED, NO_LOCK, NO_LOCK_CACHED] if split else [AS_DEPLOYED]
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
        for size in sizes:
            if "sqlite" in databases:
                done, kib = run(measure_sqlite(flow_set, size, users, Path(tmp)))
                report("sqlite", AS_DEPLOYED, size, [done], kib)
                memory.append(kib * 1024)
            if "postgres" in databases:
                assert admin is not None
                rounds_done = measure_postgres(admin, flow_set, size, users, variants, rounds, Path(tmp))
                for variant in variants:
                    report(variant, variant, size, rounds_done)
                if split:
                    cost("peer lock", size, rounds_done, NO_LOCK, AS_DEPLOYED)
                    cost("fresh read", size, rounds_done, NO_LOCK_CACHED, NO_LOCK)
                    cost("both", size, rounds_done, NO_LOCK_CACHED, AS_DEPLOYED)
    if "postgres" not in databases:
        print("(PostgreSQL not measured: set SUPPORTBOT_TEST_POSTGRES_URL or pass --postgres URL)")
    print(f"total {time.perf_counter() - began:.0f} s")
    if as_json:  # last line, for bench/vk_path.py --all
        figures = {"memory_per_session_bytes": {"median": statistics.median(memory), "min": min(memory),
                                                "max": max(memory)}} if memory else {}
        print(json.dumps(figures))


# ----------------------------------------------------------------- several worker processes


async def worker_process(spec: dict[str, Any]) -> None:
    """One engine worker process on spec["dsn"] (a --workers run): signs its users in, warms up,
    then runs each phase the parent names on stdin ("seq": its users one after another; "conc":
    its other users all at once) and prints its start, end (time.monotonic, one clock for all
    processes of the machine) and events as a JSON line."""
    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    storage = await open_postgres(spec["dsn"], application_name="bench-engine-worker")
    tickets = InProcessSimpleOne()
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-worker-") as spool:
        services = Services(storage, tickets, NoMail(), DiskSpool(Path(spool)), AuthPolicy(), idle_timeout=1e9)
        flows = StaticFlows(flow_set)
        outbox = ticket_outbox(services, flows)
        working = asyncio.create_task(outbox.run())
        engine = Engine(flows, services)
        unnumbered = 0  # submits answered "accepted" (another process's outbox worker took the item)

        async def dialogue(peer: str) -> None:
            nonlocal unnumbered
            for text in DIALOGUE:
                replies = await engine.handle(peer, Incoming(text=text))
                assert replies, text
            if "создана" not in replies[0].text:
                unnumbered += 1

        try:
            peers = {phase: list(spec[phase]) for phase in ("seq", "conc")}
            for peer in [*peers["seq"], *peers["conc"], *spec["warm"]]:
                person = await tickets.find_person(f"{peer.replace(':', '-')}@ranepa.ru")
                assert person is not None
                await storage.put_binding(Binding(peer, person.email, person.sys_id, person.name, time.time()))
            await asyncio.gather(*(dialogue(peer) for peer in spec["warm"]))
            print("ready", flush=True)
            loop = asyncio.get_running_loop()
            while (phase := (await loop.run_in_executor(None, sys.stdin.readline)).strip()) in peers:
                started = time.monotonic()
                if phase == "seq":
                    for peer in peers[phase]:
                        await dialogue(peer)
                else:
                    await asyncio.gather(*(dialogue(peer) for peer in peers[phase]))
                print(json.dumps({"start": started, "end": time.monotonic(),
                                  "events": len(peers[phase]) * len(DIALOGUE), "unnumbered": unnumbered}),
                      flush=True)
        finally:
            working.cancel()
            await asyncio.gather(working, return_exceptions=True)
            await storage.close()


async def run_workers(tree: Path, dsn: str, count: int, users: list[str], offset: int) -> dict[str, float]:
    """count worker processes of tree's code on dsn, users split between them: events/s of all
    of them together, one after another (each worker its share in turn) and at once."""
    half = len(users) // 2
    shares = [{"seq": users[:half][n::count], "conc": users[half:][n::count],
               "warm": [f"warm:{offset}:{n}:{k}" for k in range(WARMUP_USERS // count)], "dsn": dsn}
              for n in range(count)]
    env = {**os.environ, "SUPPORTBOT_BENCH_TREE": str(tree), "PYTHONPATH": str(tree)}
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, str(THIS_FILE), "--worker", json.dumps(share), env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE) for share in shares]
    rates: dict[str, float] = {}
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"a worker of {tree} did not start: {line!r}")
        for phase in ("seq", "conc"):
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(f"{phase}\n".encode())
                await proc.stdin.drain()
            done = []
            for proc in procs:
                assert proc.stdout is not None
                done.append(json.loads(await proc.stdout.readline()))
            wall = max(d["end"] for d in done) - min(d["start"] for d in done)
            rates[phase] = sum(d["events"] for d in done) / wall
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"quit\n")
            await proc.stdin.drain()
        for proc in procs:
            if await proc.wait() != 0:
                raise RuntimeError(f"a worker of {tree} failed")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    return rates


def ratio_stats(ratios: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def measure_workers(admin: str, counts: list[int], base: Path | None, users: int, rounds: int,
                    as_json: bool) -> None:
    """--workers: rounds rounds; in each, every tree (this one, and --base if given, the first
    to run alternating) runs count worker processes for each count, one after another and at
    once, on a database of its own (a tree's schema may be newer than the other's)."""
    this = THIS_FILE.parent.parent
    trees = {"this": this, **({"base": base.resolve()} if base is not None else {})}
    size = rounds * len(counts) * users + 1000  # every run's users are stored sessions of their own
    dsns: dict[str, str] = {}
    # (tree, workers, phase) → the rounds' events/s
    rates: dict[tuple[str, int, str], list[float]] = {}
    print(f"engine workers on PostgreSQL: {users} users per run split between the workers (half one after "
          f"another, half at once), {len(DIALOGUE)}-step dialogue; {rounds} round(s); {os.cpu_count()} CPUs "
          f"shared with the server", flush=True)
    cpu_before, started = cpu_sample(), time.perf_counter()
    try:
        for name in trees:
            dsns[name] = run(create_scratch_database(admin))
            # The schema by that tree's own code, in a process of its own.
            code = ("import asyncio, sys; from adapters.storage.postgres import open_postgres\n"
                    "async def main():\n    await (await open_postgres(sys.argv[1])).close()\nasyncio.run(main())")
            subprocess.run([sys.executable, "-c", code, dsns[name]], check=True, cwd=trees[name],
                           env={**os.environ, "PYTHONPATH": str(trees[name])})
            run(populate_postgres_rows(dsns[name], size))
        for n in range(rounds):
            order = list(trees) if n % 2 == 0 else list(reversed(trees))
            for k, count in enumerate(counts):
                for name in order:
                    first = (n * len(counts) + k) * users
                    peers = [f"idle:{i}" for i in range(first, first + users)]
                    got = run(run_workers(trees[name], dsns[name], count, peers, first))
                    for phase, rate in got.items():
                        rates.setdefault((name, count, phase), []).append(rate)
                    print(f"  round {n + 1}: {name:<4} × {count} worker(s): {got['seq']:,.0f} events/s one after "
                          f"another, {got['conc']:,.0f} at once", flush=True)
    finally:
        with signals_deferred():
            for dsn in dsns.values():
                asyncio.run(drop_database(admin, dsn))
    cpu_after, wall = cpu_sample(), time.perf_counter() - started
    busy = "?" if cpu_before is None or cpu_after is None else \
        f"{(cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1]) * 100:.0f} %"
    print(f"  ({wall:.0f} s; the machine's CPUs busy {busy})")

    def ratios(a: tuple[str, int, str], b: tuple[str, int, str]) -> list[float]:
        return [x / y for x, y in zip(rates[a], rates[b], strict=True)]

    summary: dict[str, Any] = {"events_per_s": {f"{t}/{c}/{p}": r for (t, c, p), r in rates.items()}}
    for phase, words in (("seq", "one after another"), ("conc", "at once")):
        for (t, c, p), r in sorted(rates.items()):
            if p == phase:
                print(f"{t:<4} × {c} worker(s), {words}: median {statistics.median(r):,.0f} events/s "
                      f"({min(r):,.0f}–{max(r):,.0f})")
        suffix = "" if phase == "seq" else "_at_once"
        if "base" in trees and 1 in counts:
            stats = ratio_stats(ratios(("this", 1, phase), ("base", 1, phase)))
            summary[f"pg_one_worker_vs_base{suffix}"] = stats
            print(f"  this tree ÷ base, one worker, {words}: ×{stats['median']:.2f} "
                  f"({stats['min']:.2f}–{stats['max']:.2f}; target ≥ 2)")
        if 1 in counts and 2 in counts:
            for name in trees:
                stats = ratio_stats(ratios((name, 2, phase), (name, 1, phase)))
                summary[f"pg_two_vs_one{suffix}" + ("" if name == "this" else "_base")] = stats
                print(f"  {name}: two workers ÷ one, {words}: ×{stats['median']:.2f} "
                      f"({stats['min']:.2f}–{stats['max']:.2f}; target ≥ 1.6)")
    if as_json:
        print(json.dumps(summary))


async def populate_postgres_rows(dsn: str, count: int) -> None:
    """Stored sessions, the schema being there already (made by the tree under test)."""
    import asyncpg

    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("sessions", records=stored_rows(count, flow_set.version), columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE sessions")
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000", help="stored sessions, comma-separated")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"),
                        help="default: both with a PostgreSQL URL, else sqlite")
    parser.add_argument("--postgres", default=os.environ.get("SUPPORTBOT_TEST_POSTGRES_URL"),
                        help="an admin URL of the server to measure (a scratch database is made on it)")
    parser.add_argument("--rounds", type=int, default=3, help="PostgreSQL runs per variant")
    parser.add_argument("--split", action=argparse.BooleanOptionalAction, default=True,
                        help="also run PostgreSQL without the peer lock, and without it with the session cache")
    parser.add_argument("--workers", help="PostgreSQL only: numbers of engine worker processes, e.g. 1,2")
    parser.add_argument("--base", type=Path, help="with --workers: a tree (e.g. /work/wt/base) run the same way,"
                                                   " interleaved, for ratios against it")
    parser.add_argument("--json", action="store_true",
                        help="end with one JSON line of the figures measured (with --workers: ratios, events/s)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a worker process of --workers
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_process(json.loads(args.worker)))
        sys.exit(0)
    if args.workers:
        if not args.postgres:
            parser.error("--workers needs a server: set SUPPORTBOT_TEST_POSTGRES_URL or pass --postgres URL")
        signal.signal(signal.SIGTERM, terminate)
        try:
            measure_workers(args.postgres, [int(n) for n in args.workers.split(",")], args.base, args.users,
                            max(1, args.rounds), args.json)
        except (KeyboardInterrupt, Terminated):
            sys.exit("interrupted (scratch databases dropped)")
        sys.exit(0)
    database = args.database or ("both" if args.postgres else "sqlite")
    if database != "sqlite" and not args.postgres:
        parser.error(f"--database {database} needs a server: set SUPPORTBOT_TEST_POSTGRES_URL or pass --postgres URL")
    signal.signal(signal.SIGTERM, terminate)
    try:
        main([int(s) for s in args.sizes.split(",")], args.users,
             {"sqlite", "postgres"} if database == "both" else {database}, args.postgres, max(1, args.rounds),
             args.split, args.json)
    except (KeyboardInterrupt, Terminated):
        sys.exit("interrupted (scratch databases dropped)")
