"""commit_step throughput of SqliteStorage on a file: one peer at a time vs. 100 at once.

Run: .venv/bin/python bench/storage_commit.py [--steps N] [--peers P] [--synchronous FULL]
Prints steps/s and the mean group-commit batch; asserts nothing (DESIGN: "Speed and size").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.storage.sqlite import SqliteStorage, open_sqlite
from engine.ports import Session, StepCommit


def slots(step: int) -> dict[str, object]:
    # About what a ticket dialogue carries half way: a few short Russian strings.
    return {
        "category": "Оборудование/Принтеры",
        "subject": "Не печатает принтер в аудитории 305",
        "description": "Принтер HP показывает ошибку бумаги, хотя бумага есть. " * 2,
        "email": "ivanov-ii@ranepa.ru",
        "step": step,
    }


async def dialogue(storage: SqliteStorage, peer: str, steps: int, start: int) -> None:
    for v in range(start, start + steps):
        session = Session(peer, f"state{v % 7}", slots(v), "flows-1", time.time())
        if not await storage.commit_step(StepCommit(session, v, event_id=f"{peer}:{v}")):
            raise RuntimeError(f"version conflict for {peer} at {v}")


async def run(path: Path, steps: int, peers: int, synchronous: str) -> None:
    storage = await open_sqlite(path, synchronous=synchronous)  # type: ignore[arg-type]
    names = [f"vk:{i}" for i in range(peers)]
    per_peer = steps // peers
    try:
        # Warm-up: creates every session, so both runs below are updates.
        await asyncio.gather(*(dialogue(storage, p, 1, 0) for p in names))

        before = storage.commit_stats
        t0 = time.perf_counter()
        for round_no in range(per_peer):  # one step at a time, peers taking turns
            for p in names:
                await dialogue(storage, p, 1, 1 + round_no)
        seq = time.perf_counter() - t0
        after = storage.commit_stats
        seq_batch = (after.steps - before.steps) / (after.batches - before.batches)

        before = storage.commit_stats
        t0 = time.perf_counter()
        await asyncio.gather(*(dialogue(storage, p, per_peer, 1 + per_peer) for p in names))
        conc = time.perf_counter() - t0
        after = storage.commit_stats
        conc_batch = (after.steps - before.steps) / (after.batches - before.batches)
    finally:
        await storage.close()

    n = per_peer * peers
    print(f"SQLite file, synchronous={synchronous}, {n} steps per run, {peers} peers")
    for label, seconds, batch in (("sequential", seq, seq_batch), ("concurrent", conc, conc_batch)):
        rate, micros = n / seconds, seconds / n * 1e6
        print(f"  {label:<11}: {rate:9,.0f} steps/s  ({micros:6.1f} µs/step)  mean batch {batch:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--peers", type=int, default=100)
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp) / "bench.db", args.steps, args.peers, args.synchronous))


if __name__ == "__main__":
    main()
