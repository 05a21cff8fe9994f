"""Storage steps per second and step latency, SQLite against PostgreSQL, one worker process.

For each backend and each number of stored sessions: P users step one after another (p50/p99
latency of a step, steps/s), then P users at once (group commit: steps/s, mean batch). A step is
what the engine writes per event: the session (version-checked) with the event marked handled.
PostgreSQL is the server SUPPORTBOT_TEST_POSTGRES_URL (or --postgres) names; a scratch database
is created and dropped. Numbers only; nothing is asserted (DESIGN: "Speed and size").
Several workers on one PostgreSQL come with the rest of issue 5.

Run: .venv/bin/python bench/storage.py [--sizes 1000,100000] [--users 100] [--steps 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.postgres import open_postgres
from adapters.sqlite import open_sqlite
from engine.ports import Session, StepCommit
from tests.postgres_db import create_scratch_database, drop_database

SLOTS = {"service": {"id": "2.5", "name": "Сетевые ресурсы"},
         "description": "Не открывается сетевая папка бухгалтерии, ошибка 0x80070035. " * 2}


def stored_rows(count: int) -> list[tuple[Any, ...]]:
    slots = json.dumps(SLOTS, ensure_ascii=False)
    return [(f"idle:{i}", "main.menu", slots, "v1", 1, time.time()) for i in range(count)]


async def populate_sqlite(path: Path, count: int) -> None:
    await (await open_sqlite(path)).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO sessions (peer, state, slots, flow_version, version, updated_at)"
                         " VALUES (?, ?, ?, ?, ?, ?)", stored_rows(count))
    conn.close()


async def populate_postgres(dsn: str, count: int) -> None:
    import asyncpg  # type: ignore[import-untyped]

    await (await open_postgres(dsn)).close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("sessions", records=stored_rows(count),
                                         columns=("peer", "state", "slots", "flow_version", "version", "updated_at"))
        await conn.execute("ANALYZE sessions")
    finally:
        await conn.close()


async def measure(open_storage: Callable[[], Awaitable[Any]], users: int, steps: int) -> dict[str, float]:
    storage = await open_storage()
    latencies: list[float] = []

    async def user(peer: str, timed: bool) -> None:
        for version in range(steps):
            session = Session(peer, f"s{version % 7}", dict(SLOTS, step=version), "v1", time.time())
            started = time.perf_counter()
            if not await storage.commit_step(StepCommit(session, version, event_id=f"{peer}:{version}")):
                raise RuntimeError(f"version conflict for {peer}")
            if timed:
                latencies.append(time.perf_counter() - started)

    try:
        started = time.perf_counter()
        for n in range(users):
            await user(f"seq:{n}", True)
        sequential = users * steps / (time.perf_counter() - started)
        before = storage.commit_stats
        started = time.perf_counter()
        await asyncio.gather(*(user(f"conc:{n}", False) for n in range(users)))
        concurrent = users * steps / (time.perf_counter() - started)
        after = storage.commit_stats
    finally:
        await storage.close()
    latencies.sort()
    return {"seq": sequential, "conc": concurrent, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000,
            "batch": (after.steps - before.steps) / max(1, after.batches - before.batches)}


async def main(sizes: list[int], users: int, steps: int, admin: str | None) -> None:
    print(f"storage: {users} users × {steps} steps, one after another, then all at once; one worker process")
    print(f"{'backend':>10} {'stored':>9} {'seq steps/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'at once steps/s':>16}"
          f" {'batch':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = Path(tmp) / f"bench-{size}.db"
            await populate_sqlite(path, size)
            r = await measure(lambda p=path: open_sqlite(p), users, steps)
            print(f"{'sqlite':>10} {size:>9} {r['seq']:>12.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} {r['conc']:>16.0f}"
                  f" {r['batch']:>6.1f}", flush=True)
            if admin is None:
                continue
            dsn = await create_scratch_database(admin)
            try:
                await populate_postgres(dsn, size)
                r = await measure(lambda d=dsn: open_postgres(d, max_size=10), users, steps)
                print(f"{'postgres':>10} {size:>9} {r['seq']:>12.0f} {r['p50']:>7.2f} {r['p99']:>7.2f}"
                      f" {r['conc']:>16.0f} {r['batch']:>6.1f}", flush=True)
            finally:
                await drop_database(admin, dsn)
    if admin is None:
        print("(PostgreSQL not measured: set SUPPORTBOT_TEST_POSTGRES_URL or pass --postgres URL)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000", help="stored sessions, comma-separated")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--postgres", default=os.environ.get("SUPPORTBOT_TEST_POSTGRES_URL"),
                        help="an admin URL of the server to measure (a scratch database is made on it)")
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.users, args.steps, args.postgres))
