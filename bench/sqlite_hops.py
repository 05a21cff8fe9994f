"""Why the SQLite adapter does not use aiosqlite's public API, and why it runs on the loop's thread.

A step's commit is a version-checked session write and an inbox mark; steps of users arriving
together are committed as one batch (group commit). Through aiosqlite's public API every
statement, and the COMMIT, is a hop to its thread and back; through adapters/storage's
SqliteWorker (what synchronous=FULL uses) a whole batch is one hop; on the event loop's own
thread (what synchronous=NORMAL uses) there is no hop. All run the same SQL on the same kind of
file (WAL, synchronous=NORMAL), variants interleaved (A B C C B A), one after another (a batch of
1) and 100 at once (a batch of 100). Here nothing else runs on the loop, so a hop's cost is the
handoff alone; in the bot the loop thread is busy and the connection's thread waits for the GIL
too. Numbers only; aiosqlite comes with the `bench` extra.

Run: .venv/bin/python bench/sqlite_hops.py [--steps 5000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosqlite

from adapters.storage.sqlite_worker import SqliteWorker

SCHEMA = """
CREATE TABLE sessions (peer TEXT PRIMARY KEY, state TEXT, slots TEXT, version INTEGER);
CREATE TABLE inbox (event_id TEXT PRIMARY KEY, handled INTEGER);
"""
UPDATE = "UPDATE sessions SET state = ?, slots = ?, version = version + 1 WHERE peer = ? AND version = ?"
MARK = "INSERT INTO inbox (event_id, handled) VALUES (?, 1)"
PEERS = 100

Step = tuple[str, int, str]  # peer, expected version, event id
Commit = Callable[[list[Step]], Awaitable[None]]


def prepare(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO sessions VALUES (?, 'menu', '{}', 0)", [(f"p{n}",) for n in range(PEERS)])
    conn.commit()
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


def with_aiosqlite(db: aiosqlite.Connection) -> Commit:
    async def commit(batch: list[Step]) -> None:
        await db.execute("BEGIN IMMEDIATE")
        for peer, version, event in batch:
            cursor = await db.execute(UPDATE, ("describe", '{"d": 1}', peer, version))
            assert cursor.rowcount == 1
            await db.execute(MARK, (event,))
        await db.commit()
    return commit


def with_worker(worker: SqliteWorker) -> Commit:
    async def commit(batch: list[Step]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            for peer, version, event in batch:
                assert conn.execute(UPDATE, ("describe", '{"d": 1}', peer, version)).rowcount == 1
                conn.execute(MARK, (event,))
            conn.execute("COMMIT")
        await worker.run(run)
    return commit


def on_loop(conn: sqlite3.Connection) -> Commit:
    async def commit(batch: list[Step]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        for peer, version, event in batch:
            assert conn.execute(UPDATE, ("describe", '{"d": 1}', peer, version)).rowcount == 1
            conn.execute(MARK, (event,))
        conn.execute("COMMIT")
    return commit


async def measure(commit: Commit, steps: int, batch_size: int, versions: dict[str, int], tag: str) -> float:
    began = time.perf_counter()
    done = 0
    while done < steps:
        batch = []
        for n in range(batch_size):
            peer = f"p{(done + n) % PEERS}"
            batch.append((peer, versions[peer], f"{tag}:{done + n}"))
            versions[peer] += 1
        await commit(batch)
        done += batch_size
    return steps / (time.perf_counter() - began)


async def main(steps: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
        results: dict[tuple[str, int], list[float]] = {}
        for name in ("aiosqlite", "worker", "loop"):
            prepare(Path(tmp) / f"{name}.db")
        a = await aiosqlite.connect(Path(tmp) / "aiosqlite.db", isolation_level=None)
        w = await SqliteWorker.open(Path(tmp) / "worker.db", isolation_level=None)
        for conn in (a,):
            await conn.execute("PRAGMA synchronous=NORMAL")
        await w.run(lambda c: c.execute("PRAGMA synchronous=NORMAL"))
        loop_conn = sqlite3.connect(Path(tmp) / "loop.db", isolation_level=None)
        loop_conn.execute("PRAGMA synchronous=NORMAL")
        commits = {"aiosqlite": with_aiosqlite(a), "worker": with_worker(w), "loop": on_loop(loop_conn)}
        versions = {name: {f"p{n}": 0 for n in range(PEERS)} for name in commits}
        try:
            run = 0
            for _ in range(rounds):
                for batch_size in (1, 100):
                    for name in ("aiosqlite", "worker", "loop", "loop", "worker", "aiosqlite"):
                        run += 1
                        rate = await measure(commits[name], steps, batch_size, versions[name], f"run{run}")
                        results.setdefault((name, batch_size), []).append(rate)
        finally:
            await a.close()
            await w.close()
            loop_conn.close()
    print(f"SQLite step commits (session write + inbox mark), {steps} steps a run, {rounds} round(s), A B C C B A:")
    for batch_size, label in ((1, "one after another"), (100, "100 at once (one batch)")):
        best = {name: max(results[(name, batch_size)]) for name in commits}
        print(f"  {label:>24}: aiosqlite {best['aiosqlite']:8.0f} steps/s, own thread {best['worker']:8.0f} steps/s "
              f"({best['worker'] / best['aiosqlite']:.1f}x), loop's thread {best['loop']:8.0f} steps/s "
              f"({best['loop'] / best['aiosqlite']:.1f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.rounds))
