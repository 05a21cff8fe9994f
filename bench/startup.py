"""The first reply of `supportbot chat`: from starting the process to the bot's text on stdout.

Each round starts `supportbot chat` as a child process the way the console script does, in a
fresh temporary directory (its own SQLite file and spool, no .env, none of the bot's settings in
the environment: a new user's defaults, SimpleOne emulated in process), with one message already
written to its stdin. Timed from just before the process is started:

- greeting: the first line of the bot's text (the menu it shows on start, before any input);
- first reply: the first line of the bot's answer to the message (the chat echoes a piped
  message, so the answer is the first `bot:` line after the echo).

Bytecode is cached as for a user's second and later runs (PYTHONPYCACHEPREFIX in the bench's
own temporary directory, so a read-only tree is measured alike); the first round of each tree
writes it and is printed apart, as "first run", and not counted. The same goes for the flows'
validation cache where the tree has one (XDG_CACHE_HOME in the bench's directory).

With --base, that tree runs in the same rounds, interleaved (A B, B A, …), and the ratio of
the medians is printed with the range of the rounds' ratios. Also printed: the import time of
`supportbot.cli` (`python -X importtime`, the median of the rounds) with the packages that take
it, and how busy the machine's CPUs were meanwhile. Numbers only; nothing is asserted.

Run: .venv/bin/python bench/startup.py [ROOT] [--base /work/wt/base] [--rounds 7] [--json]
(ROOT: the tree to measure, default this one)
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import cpu_sample

MESSAGE = "Здравствуйте, не работает интернет в общежитии"
# What `supportbot` (the console script) runs.
CHAT = ("-c", "import sys; from supportbot.cli import main; sys.exit(main())", "chat")
# The bot's settings (supportbot/config.py) start with these: a fresh user has none of them set.
SETTING_PREFIXES = ("SUPPORTBOT_", "DATABASE_", "FLOWS_", "AUTH_", "SESSION_", "SIMPLEONE_", "OUTBOX_",
                    "STATUS_POLL", "COMMENT_POLL", "SMTP_", "VK_", "SPOOL_", "LOG_LEVEL")
TIMEOUT = 60.0


@dataclass(slots=True)
class Tree:
    label: str
    root: Path
    work: Path  # the bench's directory for this tree: bytecode and caches
    greeting: list[float] = field(default_factory=list)
    reply: list[float] = field(default_factory=list)
    imports: list[tuple[float, dict[str, float], list[tuple[str, float]]]] = field(default_factory=list)
    first_run: tuple[float, float] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(PYTHONPATH=str(self.root), PYTHONPYCACHEPREFIX=str(self.work / "pycache"),
                   XDG_CACHE_HOME=str(self.work / "cache"), USER="bench")
        return env


def chat_round(tree: Tree) -> tuple[float, float]:
    """(greeting, first reply) in seconds since the process was started."""
    with tempfile.TemporaryDirectory(prefix="supportbot-startup-") as home:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *CHAT], cwd=home, env=tree.env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((MESSAGE + "\n").encode())
        proc.stdin.close()  # end of input: the chat leaves after answering
        proc.stdin = None  # (so that communicate() below does not flush it)
        greeting = reply = None
        echoed = False
        pending = b""
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        try:
            while reply is None:
                left = started + TIMEOUT - time.perf_counter()
                if left <= 0 or not selector.select(left):
                    raise RuntimeError(f"no reply within {TIMEOUT:.0f} s")
                chunk = os.read(proc.stdout.fileno(), 65536)
                now = time.perf_counter()
                if not chunk:
                    stderr = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"the chat ended without replying:\n{stderr[-2000:]}")
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    text = line.decode()
                    if text.startswith("bot:") and greeting is None:
                        greeting = now - started
                    elif text.startswith("> "):
                        echoed = True
                    elif text.startswith("bot:") and echoed:
                        reply = now - started
                        break
            proc.communicate(timeout=TIMEOUT)
        finally:
            selector.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert greeting is not None
        return greeting, reply


def import_round(tree: Tree) -> tuple[float, dict[str, float], list[tuple[str, float]]]:
    """`import supportbot.cli` under -X importtime: its total (s), the self time by top-level
    package (s) and the heaviest modules by cumulative time."""
    tree.work.mkdir(parents=True, exist_ok=True)  # not the current directory: `-c` puts it first on sys.path
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import supportbot.cli"], cwd=tree.work,
                          env=tree.env(), capture_output=True, text=True, timeout=TIMEOUT, check=True)
    rows: list[tuple[int, float, float, str]] = []  # depth, self, cumulative, name
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, int(self_us) / 1e6, int(cumulative_us) / 1e6, name.strip()))
    # -X importtime prints a module after what it imports: supportbot.cli's tree is the rows
    # since the previous top-level module.
    end = max(i for i, row in enumerate(rows) if row[0] == 0 and row[3] == "supportbot.cli")
    start = max((i for i in range(end) if rows[i][0] == 0), default=-1) + 1
    subtree = rows[start:end + 1]
    packages: dict[str, float] = {}
    for _depth, self_s, _cumulative, name in subtree:
        top = name.split(".")[0]
        packages[top] = packages.get(top, 0.0) + self_s
    heaviest = sorted(((name, cumulative) for _d, _s, cumulative, name in subtree if name != "supportbot.cli"),
                      key=lambda item: -item[1])[:8]
    return rows[end][2], packages, heaviest


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def ms(values: Sequence[float]) -> str:
    s = spread(values)
    return f"median {s['median'] * 1000:.0f} ms (min {s['min'] * 1000:.0f}, max {s['max'] * 1000:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--base", type=Path, help="another tree to run in the same rounds, e.g. /work/wt/base")
    parser.add_argument("--rounds", type=int, default=7, help="counted rounds per tree (after one first run)")
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="supportbot-startup-bench-") as work:
        trees = [Tree("this", args.root.resolve(), Path(work) / "this")]
        if args.base is not None:
            trees.append(Tree("base", args.base.resolve(), Path(work) / "base"))
        for tree in trees:
            tree.first_run = chat_round(tree)  # writes the bytecode (and any cache)
        machine_before, load_before = cpu_sample(), os.getloadavg()
        for n in range(args.rounds):
            for tree in trees if n % 2 == 0 else trees[::-1]:
                greeting, reply = chat_round(tree)
                tree.greeting.append(greeting)
                tree.reply.append(reply)
                tree.imports.append(import_round(tree))
        machine_after, load_after = cpu_sample(), os.getloadavg()

    print(f"`supportbot chat`, a piped first message «{MESSAGE}», {args.rounds} rounds"
          + (" interleaved" if len(trees) > 1 else "") + f" ({sys.executable})")
    for tree in trees:
        assert tree.first_run is not None
        totals = [total for total, _packages, _heaviest in tree.imports]
        _total, packages, heaviest = sorted(tree.imports, key=lambda item: item[0])[len(tree.imports) // 2]
        print(f"\n{tree.label}: {tree.root}")
        print(f"  first reply        {ms(tree.reply)}")
        print(f"  greeting           {ms(tree.greeting)}")
        print(f"  first run          greeting {tree.first_run[0] * 1000:.0f} ms, first reply "
              f"{tree.first_run[1] * 1000:.0f} ms (bytecode not yet cached; not counted)")
        print(f"  import supportbot.cli  {ms(totals)}")
        by_package = sorted(packages.items(), key=lambda item: -item[1])[:10]
        print("    self time by package (median round): "
              + ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in by_package) + " ms")
        print("    heaviest (cumulative): " + ", ".join(f"{name} {s * 1000:.0f}" for name, s in heaviest) + " ms")
    result: dict[str, object] = {"chat_first_reply_s": spread(trees[0].reply),
                                 "chat_greeting_s": spread(trees[0].greeting),
                                 "import_cli_s": spread([t for t, _p, _h in trees[0].imports]),
                                 "base_chat_first_reply_s": None}
    if len(trees) > 1:
        this, base = trees
        ratios = [a / b for a, b in zip(this.reply, base.reply, strict=True)]
        ratio = statistics.median(this.reply) / statistics.median(base.reply)
        print(f"\nfirst reply, this / base: ×{ratio:.2f} of the medians (rounds' ratios "
              f"{min(ratios):.2f}–{max(ratios):.2f})")
        result.update(base_chat_first_reply_s=spread(base.reply), base_chat_greeting_s=spread(base.greeting),
                      base_import_cli_s=spread([t for t, _p, _h in base.imports]), ratio=round(ratio, 3))
    if machine_before is not None and machine_after is not None:
        busy = (machine_after[0] - machine_before[0]) / max(1, machine_after[1] - machine_before[1])
        print(f"machine: CPUs {busy:.0%} busy during the rounds (this bench included); load average "
              f"{load_before[0]:.2f} → {load_after[0]:.2f} on {os.cpu_count()} CPUs")
        result["machine_busy"] = round(busy, 3)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
