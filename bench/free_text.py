"""How well free text finds its catalogue entry: top-1 and top-3 accuracy of the catalogue
search (engine/dialogue/catalog_search.py) on bench/free_text_messages.yaml, realistic first
messages labelled with their entry and written without looking at the entries' keywords.

The messages are split in two by their position: the even ones were looked at while the search
itself (its weights, typo rules and the ignored words) was tuned, the odd ones were not (the
held-out half, whose figures are the honest ones); the entries' keywords were written without
either.

A message counts as found in the top k when its entry (or one of the entries it also fits,
`also:`) is among the first k proposed; a message that fits no entry (`expected: null`) counts
when nothing is proposed (the bot then shows the whole catalogue). Also prints the time a
search takes.

Run: .venv/bin/python bench/free_text.py [--misses | --tuned-misses] [--flows flows] [--messages FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.dialogue.catalog_search import CatalogIndex, index_of
from engine.load import load_flow_set

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = Path(__file__).resolve().parent / "free_text_messages.yaml"


@dataclass(frozen=True, slots=True)
class Labelled:
    text: str
    expected: str | None
    also: tuple[str, ...] = ()

    @property
    def right(self) -> set[str]:
        return {self.expected, *self.also} if self.expected else set()


@dataclass(frozen=True, slots=True)
class Accuracy:
    messages: int  # with an entry
    top1: int
    top3: int
    no_entry: int  # messages that fit no entry
    no_entry_right: int  # of those, how many got no proposal
    misses: tuple[tuple[Labelled, tuple[str, ...]], ...]

    @property
    def top1_share(self) -> float:
        return self.top1 / self.messages if self.messages else 0.0

    @property
    def top3_share(self) -> float:
        return self.top3 / self.messages if self.messages else 0.0


def load_messages(path: Path = MESSAGES) -> list[Labelled]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Labelled(str(m["text"]), m.get("expected"), tuple(m.get("also") or ())) for m in data["messages"]]


def measure(index: CatalogIndex, messages: list[Labelled]) -> Accuracy:
    top1 = top3 = with_entry = no_entry = no_entry_right = 0
    misses: list[tuple[Labelled, tuple[str, ...]]] = []
    for message in messages:
        proposed = tuple(m.entry.id for m in index.search(message.text, limit=3))
        if message.expected is None:
            no_entry += 1
            no_entry_right += not proposed
            if proposed:
                misses.append((message, proposed))
            continue
        with_entry += 1
        top1 += bool(proposed) and proposed[0] in message.right
        hit = any(p in message.right for p in proposed)
        top3 += hit
        if not hit or proposed[0] not in message.right:
            misses.append((message, proposed))
    return Accuracy(with_entry, top1, top3, no_entry, no_entry_right, tuple(misses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=Path, default=ROOT / "flows")
    parser.add_argument("--messages", type=Path, default=MESSAGES)
    parser.add_argument("--misses", action="store_true", help="list every message not found first")
    parser.add_argument("--tuned-misses", action="store_true", help="only those of the half tuned on")
    args = parser.parse_args()
    flow_set = load_flow_set([args.flows]).flow_set
    assert flow_set is not None, "the flows do not load: run flowlint check"
    index = index_of(flow_set)
    messages = load_messages(args.messages)
    groups = Counter(e.group_id for g in flow_set.catalog.groups for e in g.entries)
    print(f"{len(messages)} messages, {sum(groups.values())} entries in {len(groups)} groups")
    print(f"  {'':>10} {'top-1':>15} {'top-3':>15} {'no entry: none proposed':>24}")
    halves = {"held out": messages[1::2], "tuned on": messages[0::2], "all": messages}
    for name, part in halves.items():
        r = measure(index, part)
        print(f"  {name:>10} {r.top1_share:6.1%} ({r.top1:>3}/{r.messages:>3}) {r.top3_share:6.1%} "
              f"({r.top3:>3}/{r.messages:>3}) {r.no_entry_right:>17} of {r.no_entry}")
    result = measure(index, messages[0::2] if args.tuned_misses else messages)
    began = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        for message in messages:
            index.search(message.text)
    per_search = (time.perf_counter() - began) / (rounds * len(messages)) * 1e6
    print(f"  one search: {per_search:.0f} µs")
    if args.misses or args.tuned_misses:
        for message, proposed in result.misses:
            print(f"  {message.expected or '-':>24} ← {message.text[:70]!r}: {', '.join(proposed) or 'nothing'}")


if __name__ == "__main__":
    main()
