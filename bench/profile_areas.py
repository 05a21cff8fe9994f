"""Share of a py-spy profile by area of the code (bench/README.md, Profiling).

Reads py-spy's raw output (`py-spy record --format raw`: one line per distinct stack, frames
root first, separated by ';', then the sample count), e.g. what `bench/vk_path.py --profile
py-spy` writes. Each sample goes to the area of its innermost frame that belongs to a known area
(json's encoder called by the VK sender is HTTP/json; logging called by the engine is the
engine). It also prints the inclusive share of a few paths the issue names (all samples with
such a frame anywhere in their stack).

Run: .venv/bin/python bench/profile_areas.py profiles/supportbot-*.txt
"""

from __future__ import annotations

import argparse
import collections
import re
from collections.abc import Iterable
from pathlib import Path

# (area, pattern on a frame "function (file:line)"), most specific first.
AREAS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((area, re.compile(pattern)) for area, pattern in (
    ("transitions", r"\(transitions/"),
    ("storage (SQLite)", r"\(adapters/storage/|sqlite3"),
    ("SimpleOne client", r"\(adapters/simpleone/"),
    ("VK channel", r"\(adapters/vk/"),
    ("engine", r"\(engine/"),
    ("HTTP/json", r"\((aiohttp|yarl|multidict|json|http|urllib|email|httpx|h11|httpcore)/"),
    ("event loop and sockets", r"\((asyncio|selectors|socket|ssl|threading|concurrent|queue|weakref|_weakrefset)"),
    ("logging", r"\(logging/"),
    ("supportbot (wiring)", r"\(supportbot/"),
))
# Inclusive shares: every sample with such a frame anywhere in its stack.
PATHS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((what, re.compile(pattern)) for what, pattern in (
    ("sending to VK (VkSender.send)", r"^VkSender\.send "),
    ("the engine's step (Engine.handle)", r"^Engine\.handle "),
    ("a ticket created in SimpleOne (the outbox's work)", r"\(engine/work/"),
    ("keyboards rendered (adapters/vk/keyboard.py)", r"\(adapters/vk/keyboard\.py"),
    ("the long poll's own work (LongPoller)", r"^LongPoller\."),
    ("the SQLite thread (adapters/storage/sqlite_worker.py)", r"\(adapters/storage/sqlite_worker\.py"),
))


def stacks(files: Iterable[Path]) -> Iterable[tuple[list[str], int]]:
    for file in files:
        for line in file.read_text().splitlines():
            frames, _, count = line.rpartition(" ")
            if frames and count.isdigit():
                yield frames.split(";"), int(count)


def area_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for area, pattern in AREAS:
            if pattern.search(frame):
                return area
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    by_area: collections.Counter[str] = collections.Counter()
    by_path: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in stacks(args.files):
        total += count
        by_area[area_of(frames)] += count
        for what, pattern in PATHS:
            if any(pattern.search(frame) for frame in frames):
                by_path[what] += count
    if not total:
        raise SystemExit("no samples in " + ", ".join(map(str, args.files)))
    print(f"{total} samples (on CPU) in {len(args.files)} file(s)\n\nby area (innermost known frame):")
    for area, count in by_area.most_common():
        print(f"  {area:<28} {count / total * 100:5.1f} %")
    print("\ninclusive (anywhere in the stack):")
    for what, _ in PATHS:
        print(f"  {what:<56} {by_path[what] / total * 100:5.1f} %")


if __name__ == "__main__":
    main()
