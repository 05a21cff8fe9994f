"""CPU per event on the engine path (all the process's threads), to compare two trees.

Wall-clock rates on a shared machine swing by ±30 % from run to run; the CPU a run takes per
event swings far less, so two versions of the code are compared by it: run this with each
tree's root, alternating (A B B A …), and compare the medians. It runs bench/engine.py's SQLite
workload (1 k stored sessions, users one after another and then at once, a warm-up first).

Run: .venv/bin/python bench/engine_cpu.py [ROOT] [--users 300]
(ROOT: the tree to measure, default this one; e.g. a `git worktree add /tmp/old <rev>`)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import resource
import sys
import tempfile
from pathlib import Path

WARMUP_EVENTS = 20 * 7  # bench/engine.py's warm-up: 20 users × the 7-step dialogue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    sys.argv = sys.argv[:1]
    bench = importlib.import_module("bench.engine")
    try:
        load = importlib.import_module("engine.load").load_flow_set
    except ImportError:  # trees from before engine/ was split by concern
        load = importlib.import_module("engine.flowset").load_flow_set
    flow_set = load([Path(args.root) / "flows"]).flow_set
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
        before = resource.getrusage(resource.RUSAGE_SELF)
        done, _ = asyncio.run(bench.measure_sqlite(flow_set, 1000, args.users, Path(tmp)))
        after = resource.getrusage(resource.RUSAGE_SELF)
    events = sum(phase.events for phase in done[bench.AS_DEPLOYED].values()) + WARMUP_EVENTS
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"{cpu / events * 1e6:.1f} µs of CPU per event ({events} events, {args.root})")


if __name__ == "__main__":
    main()
