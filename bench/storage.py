"""Storage steps per second and step latency: SQLite, and PostgreSQL with 1, 2 and 4 worker processes.

A step is what the engine writes per event: the session (version-checked) with the event marked
handled, one commit_step. For each backend, each number of stored sessions and each number of
workers, every worker (a separate OS process with its own storage, as in a deployment) drives its
own users (disjoint peers): first its users one after another (one step in flight per worker),
then all its users at once (group commit). Printed per run: aggregate steps/s (all workers' steps
over the wall time from a common start barrier to the last worker's finish), p50/p99 latency of
a step over all workers' steps, how busy the machine's CPUs were meanwhile (Linux), the mean
group-commit batch; then N workers against the fewest. Populating the stored sessions is timed
too (SQLite executemany in chunks, PostgreSQL COPY; rows made lazily).

SQLite is measured with one worker only: several processes on one SQLite file is not a supported
deployment (one process owns a SQLite file). PostgreSQL is the server SUPPORTBOT_TEST_POSTGRES_URL
(or --postgres) names; a scratch database per number of stored sessions is created, shared by
the workers, and dropped afterwards, also on Ctrl-C or failure. Numbers only; nothing is asserted
(DESIGN: "Speed and size").

Run: .venv/bin/python bench/storage.py [--sizes 1000,1000000] [--workers 1,2,4] [--users 100] [--steps 50]
(--users is per worker)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import queue
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.storage.postgres import open_postgres
from adapters.storage.sqlite import open_sqlite
from bench.machine import cpu_sample
from emulators.scratch_postgres import create_scratch_database, drop_database
from engine.ports import Session, StepCommit

SLOTS = {"service": {"id": "2.5", "name": "Сетевые ресурсы"},
         "description": "Не открывается сетевая папка бухгалтерии, ошибка 0x80070035. " * 2}
COLUMNS = ("peer", "state", "slots", "flow_version", "version", "updated_at")
IDLE = "idle:"  # stored sessions nobody steps; the workers' own peers never start so
WARMUP_STEPS = 5  # per worker, untimed: connections made, statements prepared
BARRIER_TIMEOUT = 300.0  # seconds a worker waits for the others before giving up
CHUNK = 50_000  # SQLite rows per executemany


# ----------------------------------------------------------------- stored sessions


def stored_rows(count: int) -> Iterator[tuple[Any, ...]]:
    """count idle sessions, made one by one as they are written (a million never sit in memory)."""
    slots = json.dumps(SLOTS, ensure_ascii=False)
    now = time.time()
    return ((f"{IDLE}{i}", "main.menu", slots, "v1", 1, now) for i in range(count))


async def populate_sqlite(path: Path, count: int) -> None:
    await (await open_sqlite(path)).close()
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # this connection only: a scratch file being filled
        rows = stored_rows(count)
        while chunk := list(itertools.islice(rows, CHUNK)):
            with conn:
                conn.executemany(f"INSERT INTO sessions ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)", chunk)
        # The measured runs should not pay for checkpointing the load's write-ahead log.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def populate_postgres(dsn: str, count: int) -> None:
    import asyncpg  # type: ignore[import-untyped]

    await (await open_postgres(dsn)).close()
    conn = await asyncpg.connect(dsn)
    try:
        # asyncpg streams the records as it iterates them.
        await conn.copy_records_to_table("sessions", records=stored_rows(count), columns=COLUMNS)
    finally:
        await conn.close()
    await settle_postgres(dsn)


async def settle_postgres(dsn: str) -> None:
    """Statistics fresh, pages all-visible, the write-ahead log checkpointed: a run starts clean
    rather than paying for the previous one (or for the load)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE sessions")
        await conn.execute("VACUUM ANALYZE inbox")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):  # CHECKPOINT needs a privileged role
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def reset_postgres(dsn: str) -> None:
    """Forget the previous run's sessions and events: each run starts from the stored ones alone."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DELETE FROM sessions WHERE peer NOT LIKE '{IDLE}%'")
        await conn.execute("TRUNCATE inbox")
    finally:
        await conn.close()
    await settle_postgres(dsn)


# ----------------------------------------------------------------- one worker process


async def step_user(storage: Any, peer: str, steps: int, latencies: list[float] | None) -> None:
    """steps steps of one user, each committed before the next; the first creates the session."""
    for version in range(steps):
        session = Session(peer, f"s{version % 7}", dict(SLOTS, step=version), "v1", time.time())
        started = time.perf_counter()
        if not await storage.commit_step(StepCommit(session, version, event_id=f"{peer}:{version}")):
            raise RuntimeError(f"version conflict for {peer}")
        if latencies is not None:
            latencies.append(time.perf_counter() - started)


async def drive(backend: str, target: str, tag: str, users: int, steps: int, barrier: Any) -> dict[str, Any]:
    """One worker's runs; its peers start with tag. Times are time.perf_counter(), which on Linux is
    CLOCK_MONOTONIC and so comparable between the processes of one machine."""
    if backend == "sqlite":
        storage: Any = await open_sqlite(target)
    else:
        storage = await open_postgres(target, max_size=10, application_name=f"bench-{tag}")
    phases: dict[str, Any] = {}
    try:
        await step_user(storage, f"{tag}:warm", WARMUP_STEPS, None)
        for phase in ("seq", "conc"):
            await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)
            latencies: list[float] = []
            before = storage.commit_stats
            cpu_before = cpu_sample()
            started = time.perf_counter()
            peers = [f"{tag}:{phase}:{n}" for n in range(users)]
            if phase == "seq":
                for peer in peers:
                    await step_user(storage, peer, steps, latencies)
            else:
                await asyncio.gather(*(step_user(storage, peer, steps, latencies) for peer in peers))
            ended = time.perf_counter()
            after = storage.commit_stats
            phases[phase] = {"start": started, "end": ended, "latencies": latencies,
                             "cpu_start": cpu_before, "cpu_end": cpu_sample(),
                             "batches": after.batches - before.batches, "steps": after.steps - before.steps}
    finally:
        await storage.close()
    return phases


def worker_main(backend: str, target: str, tag: str, users: int, steps: int, barrier: Any, results: Any) -> None:
    # Ctrl-C reaches the whole process group: the parent alone handles it (it stops the workers
    # and drops the scratch database).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        results.put(("ok", asyncio.run(drive(backend, target, tag, users, steps, barrier))))
    except BaseException:
        barrier.abort()  # the others stop waiting for this one
        results.put(("error", f"worker {tag}:\n{traceback.format_exc()}"))


# ----------------------------------------------------------------- the parent


def run_workers(backend: str, target: str, workers: int, run: int, users: int, steps: int) -> dict[str, Any]:
    """workers processes, each with its own storage on target; their phases merged."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker_main, name=f"bench-worker-{k}",
                         args=(backend, target, f"r{run}w{k}", users, steps, barrier, results))
             for k in range(workers)]
    got: list[dict[str, Any]] = []
    try:
        for proc in procs:
            proc.start()
        while len(got) < workers:
            try:
                status, payload = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"{dead[0].name} died (exit code {dead[0].exitcode})") from None
                continue
            if status != "ok":
                raise RuntimeError(payload)
            got.append(payload)
        for proc in procs:
            proc.join(timeout=30)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            if proc.pid is not None:
                proc.join(timeout=10)
    return {phase: merge([w[phase] for w in got]) for phase in ("seq", "conc")}


def merge(phases: Sequence[dict[str, Any]]) -> dict[str, float]:
    latencies = sorted(itertools.chain.from_iterable(p["latencies"] for p in phases))
    wall = max(p["end"] for p in phases) - min(p["start"] for p in phases)
    batches = sum(p["batches"] for p in phases)
    # The machine's CPU from the first worker's start to the last one's finish.
    first = min(phases, key=lambda p: p["start"])["cpu_start"]
    last = max(phases, key=lambda p: p["end"])["cpu_end"]
    busy = (last[0] - first[0]) / max(1, last[1] - first[1]) * 100 if first and last else float("nan")
    return {"rate": len(latencies) / wall, "p50": percentile(latencies, 0.50) * 1000,
            "p99": percentile(latencies, 0.99) * 1000, "cpu": busy,
            "batch": sum(p["steps"] for p in phases) / max(1, batches)}


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of all at or below it."""
    return ordered[max(0, min(len(ordered), math.ceil(q * len(ordered))) - 1)]


HEADER = (f"{'backend':<10} {'stored':>9} {'workers':>7} │ {'steps/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU':>4}"
          f" │ {'steps/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU':>4} {'batch':>6}")


def report(backend: str, size: int, workers: int, r: dict[str, dict[str, float]]) -> None:
    s, c = r["seq"], r["conc"]
    print(f"{backend:<10} {size:>9,} {workers:>7} │ {s['rate']:>7,.0f} {s['p50']:>7.2f} {s['p99']:>7.2f}"
          f" {s['cpu']:>3.0f}% │ {c['rate']:>7,.0f} {c['p50']:>7.2f} {c['p99']:>7.2f} {c['cpu']:>3.0f}%"
          f" {c['batch']:>6.1f}", flush=True)


def timed(label: str, coro: Any) -> None:
    started = time.perf_counter()
    asyncio.run(coro)
    print(f"  ({label} in {time.perf_counter() - started:.1f} s)", flush=True)


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Cleanup that a second Ctrl-C must not cut short."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def measure_postgres(admin: str, size: int, counts: list[int], users: int, steps: int) -> None:
    dsn = asyncio.run(create_scratch_database(admin))
    try:
        timed(f"populate: {size:,} sessions by COPY, then VACUUM ANALYZE and CHECKPOINT",
              populate_postgres(dsn, size))
        rates: dict[int, dict[str, dict[str, float]]] = {}
        for run, workers in enumerate(counts):
            if run:
                asyncio.run(reset_postgres(dsn))
            rates[workers] = run_workers("postgres", dsn, workers, run, users, steps)
            report("postgres", size, workers, rates[workers])
        base = min(counts)
        for workers in counts:
            if workers != base:
                print(f"  {workers} workers vs {base}: one at a time ×"
                      f"{rates[workers]['seq']['rate'] / rates[base]['seq']['rate']:.2f},"
                      f" at once ×{rates[workers]['conc']['rate'] / rates[base]['conc']['rate']:.2f}", flush=True)
    finally:
        with no_interrupts():
            asyncio.run(drop_database(admin, dsn))


def main(sizes: list[int], counts: list[int], users: int, steps: int, admin: str | None) -> None:
    began = time.perf_counter()
    print(f"storage: each worker process steps its own {users} users × {steps} steps, one user after another,"
          f" then all {users} at once; {os.cpu_count()} CPUs, database server on the same machine")
    print("SQLite: one worker only (one process per SQLite file); PostgreSQL: workers " + ", ".join(map(str, counts)))
    print(f"{'':<28} │ {'one user after another':<28} │ {'all users at once':<35}")
    print(HEADER, flush=True)
    print("(CPU: the whole machine's, busy during the run, all processes included)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = Path(tmp) / f"bench-{size}.db"
            timed(f"populate: {size:,} sessions by executemany", populate_sqlite(path, size))
            report("sqlite", size, 1, run_workers("sqlite", str(path), 1, 0, users, steps))
            path.unlink()
            if admin is not None:
                measure_postgres(admin, size, counts, users, steps)
    if admin is None:
        print("(PostgreSQL not measured: set SUPPORTBOT_TEST_POSTGRES_URL or pass --postgres URL)")
    print(f"total {time.perf_counter() - began:.0f} s")


def terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup, as Ctrl-C does


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,1000000", help="stored sessions, comma-separated")
    parser.add_argument("--workers", default="1,2,4", help="PostgreSQL worker processes, comma-separated")
    parser.add_argument("--users", type=int, default=100, help="users per worker")
    parser.add_argument("--steps", type=int, default=50, help="steps per user")
    parser.add_argument("--postgres", default=os.environ.get("SUPPORTBOT_TEST_POSTGRES_URL"),
                        help="an admin URL of the server to measure (a scratch database is made on it)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, terminate)
    try:
        main([int(s) for s in args.sizes.split(",")], sorted({int(w) for w in args.workers.split(",")}),
             args.users, args.steps, args.postgres)
    except KeyboardInterrupt:
        sys.exit("interrupted (scratch databases dropped, workers stopped)")
