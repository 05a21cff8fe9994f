"""The full VK path, supportbot against a plain vkbottle bot, in one run on one machine.

Both bots run as their own processes against the same fake VK server (in this process) and
the same SimpleOne emulator (another process): users write, the fake server serves their
messages over Bots Long Poll, each bot answers with messages.send. 100 users each go through
the 7-step create-ticket dialogue, each step sent when the previous answer came, like people.

supportbot persists every step to SQLite before it answers; the vkbottle bot keeps its state
in memory (bench/vkbottle_bot.py). VK's real limit of ~20 calls/s per token is lifted on both
sides: this measures the bots, not the limit. Prints events per second and the ratio.

`--kinds` can add `supportbot-vkbottle-keyboard` (supportbot with its keyboards built by vkbottle's
Keyboard builder), `supportbot-vkbottle-updates` (updates parsed by vkbottle's typed model) and
`supportbot-vkbottle-import` (vkbottle imported, nothing else), to see what using vkbottle there
would cost (bench/vk_variants.py).

Run: .venv/bin/python bench/vk_path.py [--users 100] [--rounds 5] [--kinds supportbot,vkbottle]
(vkbottle and httpx come with the bench extra: .venv/bin/pip install -e '.[bench]'.)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.in_process import STEPS, dialogue  # noqa: E402
from emulators.vk.server import RunningVkEmulator, start_vk_emulator  # noqa: E402
from emulators.vk.users import FakeUser  # noqa: E402

GROUP = 1
TOKEN = "bench-token"
DIALOGUE = STEPS  # the create-ticket dialogue, every reply checked (bench/in_process.py)
# Bindings are written by the measured tree's own storage code: its schema may differ from ours.
BIND_SCRIPT = """
import asyncio, json, sys
from adapters.storage.sqlite import open_sqlite
from engine.ports import Binding
async def main():
    storage = await open_sqlite(sys.argv[1])
    for peer, (caller, email) in json.loads(sys.argv[2]).items():
        await storage.put_binding(Binding(f"vk:{peer}", email, caller, "Bench", 0))
    await storage.close()
asyncio.run(main())
"""


LP_COUNT = [0]
PROFILE: dict[str, str] = {}  # "tool": py-spy or cprofile, "dir": where profiles go (--profile)
KINDS = ("supportbot", "vkbottle", "supportbot-base", "supportbot-vkbottle-keyboard", "supportbot-vkbottle-updates",
         "supportbot-vkbottle-import")
CPU: dict[str, list[float]] = {kind: [] for kind in KINDS}


def count_long_polls(vk: RunningVkEmulator) -> None:
    original = vk.state.updates.poll

    async def counted(*args: object, **kwargs: object) -> object:
        LP_COUNT[0] += 1
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    vk.state.updates.poll = counted  # type: ignore[method-assign,assignment]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_http(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def simpleone_users(url: str, peers: list[int]) -> dict[int, tuple[str, str]]:
    """peer → (SimpleOne caller sys_id, email)."""
    async with httpx.AsyncClient(base_url=url) as client:
        out = {}
        for peer in peers:
            email = f"u{peer}@ranepa.ru"
            answer = await client.post("/_emulator/users", json={"email": email,
                                                                  "first_name": "Bench", "last_name": str(peer)})
            answer.raise_for_status()
            body = answer.json()
            out[peer] = (str(body["sys_id"]), email)
        return out


async def user_dialogue(user: FakeUser) -> None:
    await dialogue(user)  # raises on any reply the dialogue does not say


async def run_users(vk: RunningVkEmulator, peers: list[int]) -> float:
    """Steps per second for these users going through the dialogue at once."""
    started = time.perf_counter()
    await asyncio.gather(*(user_dialogue(vk.user(p)) for p in peers))
    return len(peers) * len(DIALOGUE) / (time.perf_counter() - started)


async def start_bot(kind: str, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    if kind in ("supportbot", "supportbot-base"):  # the base tree's is on its PYTHONPATH
        cmd = [sys.executable, "-m", "supportbot.cli", "run"]
        if kind == "supportbot" and PROFILE.get("tool") == "cprofile":  # written when it stops (SIGTERM)
            out = Path(PROFILE["dir"]) / f"supportbot-{time.strftime('%H%M%S')}.prof"
            cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "supportbot.cli", "run"]
    elif kind.startswith("supportbot-vkbottle-"):
        cmd = [sys.executable, str(ROOT / "bench" / "vk_variants.py"), "--" + kind.rsplit("-", 1)[1]]
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "vkbottle_bot.py")]
    return await asyncio.create_subprocess_exec(*cmd, cwd=cwd, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)


async def start_py_spy(pid: int) -> asyncio.subprocess.Process:
    """py-spy sampling the bot while the users run (not its start-up or warm-up)."""
    out = Path(PROFILE["dir"]) / f"supportbot-{pid}.txt"
    spy = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
        "--output", str(out), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(0.5)  # attached before the first user writes
    return spy


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def phase(kind: str, vk: RunningVkEmulator, env: dict[str, str], cwd: Path, warmup: list[int],
                peers: list[int]) -> float:
    proc = await start_bot(kind, env, cwd)
    try:
        # Until the bot polls, messages are history it skips: knock until it answers.
        probe = vk.user(warmup[0])
        for _ in range(120):
            await probe.say("Начать")
            try:
                await probe.wait_reply(timeout=0.5)
                break
            except AssertionError:
                if proc.returncode is not None:
                    assert proc.stderr is not None
                    raise RuntimeError(f"{kind} exited: {(await proc.stderr.read()).decode()[-2000:]}") from None
        else:
            raise RuntimeError(f"{kind} never answered")
        await asyncio.sleep(1.0)  # answers to earlier knocks
        # Warm-up users: every import and cache in place before the clock starts.
        await asyncio.gather(*(user_dialogue(vk.user(p)) for p in warmup[1:]))
        bot_before, here_before = cpu_seconds(proc.pid), time.process_time()
        calls_before = len(vk.state.calls)
        lp_before = LP_COUNT[0]
        spy = await start_py_spy(proc.pid) if kind == "supportbot" and PROFILE.get("tool") == "py-spy" else None
        rate = await run_users(vk, peers)
        if spy is not None:  # SIGINT: py-spy writes what it sampled and detaches; the bot runs on
            spy.send_signal(signal.SIGINT)
            await spy.wait()
        calls = collections.Counter(m for m, _ in vk.state.calls[calls_before:])
        print(f"    {kind}: VK API calls {dict(calls)}, long-poll answers {LP_COUNT[0] - lp_before}", flush=True)
        bot_cpu, here_cpu = cpu_seconds(proc.pid) - bot_before, time.process_time() - here_before
        events = len(peers) * len(DIALOGUE)
        print(f"    {kind}: {bot_cpu / events * 1000:.2f} ms CPU per event in the bot, "
              f"{here_cpu / events * 1000:.2f} ms in the fake VK server and users", flush=True)
        CPU[kind].append(bot_cpu / events)
        return rate
    finally:
        await stop(proc)


async def write_bindings(root: Path, db: Path, callers: dict[int, tuple[str, str]], env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BIND_SCRIPT, str(db), json.dumps({str(k): v for k, v in callers.items()}),
        # Not from this tree's directory: `python -c` puts the working directory first on the path.
        cwd=db.parent, env={**env, "PYTHONPATH": str(root)}, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"writing bindings with {root} failed: {err.decode()[-2000:]}")


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """a over b round by round (the same round's runs share the machine's mood): median and range."""
    return spread([x / y for x, y in zip(a, b, strict=True)])


def fmt(s: dict[str, float]) -> str:
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


async def main(users: int, rounds: int, reference_http: str, kinds: list[str],
               base: Path | None = None) -> dict[str, dict[str, float]]:
    """Runs the rounds and prints; returns the ratios measured (for --all): each {"median","min","max"}."""
    work = Path(tempfile.mkdtemp(prefix="supportbot-vkbench-"))
    so_port = free_port()
    env_base = {k: v for k, v in os.environ.items() if not k.startswith(("VK_", "SIMPLEONE_", "SMTP_", "SUPPORTBOT_"))}
    env_base["PYTHONPATH"] = str(ROOT)
    simpleone = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supportbot.cli", "simpleone-emulator", "--port", str(so_port),
        cwd=work, env={**env_base, "LOG_LEVEL": "WARNING"}, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    vk = await start_vk_emulator(group_id=GROUP, tokens=(TOKEN,), rate_limit=None, max_wait=25)
    count_long_polls(vk)
    summary: dict[str, dict[str, float]] = {}
    try:
        so_url = f"http://127.0.0.1:{so_port}"
        await wait_http(so_url + "/_emulator/state")
        results: dict[str, list[float]] = {kind: [] for kind in kinds}
        next_peer = 1
        for round_no in range(rounds):
            for kind in kinds[::-1] if round_no % 2 else kinds:
                warmup = list(range(next_peer, next_peer + 5))
                peers = list(range(next_peer + 5, next_peer + 5 + users))
                next_peer += users + 5
                callers = await simpleone_users(so_url, warmup + peers)
                env = {**env_base, "VK_API_URL": vk.api_url, "VK_TOKEN": TOKEN, "VK_GROUP_ID": str(GROUP),
                       "SIMPLEONE_URL": so_url, "LOG_LEVEL": "WARNING"}
                if kind.startswith("supportbot"):
                    tree = base if kind == "supportbot-base" and base is not None else ROOT
                    db = work / f"bot-{round_no}-{kind}.db"
                    await write_bindings(tree, db, callers, env)
                    env.update(PYTHONPATH=str(tree), SIMPLEONE_USERNAME="bot", SIMPLEONE_PASSWORD="bot-password",
                               SUPPORTBOT_DATABASE_URL=f"sqlite:///{db}", SMTP_HOST="127.0.0.1",
                               SMTP_FROM="bench@ranepa.ru", VK_RATE_LIMIT="1000000", VK_CONCURRENCY="200",
                               SPOOL_DIR=str(work / "spool"))
                else:
                    env["BENCH_CALLERS"] = json.dumps({str(k): v for k, v in callers.items()})
                    env["BENCH_REFERENCE_HTTP"] = reference_http
                rate = await phase(kind, vk, env, work, warmup, peers)
                results[kind].append(rate)
                print(f"round {round_no + 1}: {kind:<10} {rate:8.0f} events/s", flush=True)
        for variant in (k for k in kinds if k.startswith("supportbot-vkbottle-") and "supportbot" in kinds):
            plain, other = statistics.median(results["supportbot"]), statistics.median(results[variant])
            cpu_plain, cpu_other = statistics.median(CPU["supportbot"]), statistics.median(CPU[variant])
            # Each round's variant against the same round's supportbot: the machine's load drifts
            # between rounds more than the variants differ.
            ratios = sorted(v / p for v, p in zip(CPU[variant], CPU["supportbot"], strict=True))
            print(f"\n{variant} against supportbot: {other:6.0f} against {plain:6.0f} events/s ({other / plain:.3f}), "
                  f"CPU per event {cpu_other * 1000:.3f} against {cpu_plain * 1000:.3f} ms "
                  f"({cpu_other / cpu_plain:.3f}), median of {rounds}; CPU per event round by round: median "
                  f"{statistics.median(ratios):.3f}, from {ratios[0]:.3f} to {ratios[-1]:.3f}")
        if "supportbot" in kinds and "supportbot-base" in kinds:
            summary["vk_http_vs_base"] = paired(results["supportbot"], results["supportbot-base"])
            summary["vk_http_cpu_vs_base"] = paired(CPU["supportbot-base"], CPU["supportbot"])
            print(f"\nthis tree / base ({base}), round by round: events/s {fmt(summary['vk_http_vs_base'])}, "
                  f"CPU per event (base's over ours) {fmt(summary['vk_http_cpu_vs_base'])}  (≥ 1: not slower)")
        if "vkbottle" not in kinds or "supportbot" not in kinds:
            return summary
        ours, theirs = statistics.median(results["supportbot"]), statistics.median(results["vkbottle"])
        summary["vk_http_vs_vkbottle"] = paired(results["supportbot"], results["vkbottle"])
        summary["vk_http_cpu_vs_vkbottle"] = paired(CPU["vkbottle"], CPU["supportbot"])
        print(f"\n{users} users × {len(DIALOGUE)}-step create-ticket dialogue over long poll, median of {rounds}:")
        print(f"  supportbot (SQLite, every step committed before the answer): {ours:8.0f} events/s")
        print(f"  vkbottle bot (in-memory state, nothing persisted; SimpleOne over {reference_http}):"
              f" {theirs:8.0f} events/s")
        print(f"  ratio supportbot / vkbottle, round by round: {fmt(summary['vk_http_vs_vkbottle'])}"
              "  (target ≥ 1.5, at least 1.0)")
        cpu_ours, cpu_theirs = statistics.median(CPU["supportbot"]), statistics.median(CPU["vkbottle"])
        print(f"  CPU per event in the bot: {cpu_ours * 1000:.2f} ms against {cpu_theirs * 1000:.2f} ms "
              f"(ratio round by round {fmt(summary['vk_http_cpu_vs_vkbottle'])}); both bots share 2 cores with "
              "the fake VK and SimpleOne")
        return summary
    finally:
        await vk.close()
        simpleone.terminate()
        await simpleone.wait()


# ----------------------------------------------------------------- --all: every ratio of issue 16 in one run


@dataclass(frozen=True)
class Target:
    what: str
    key: str  # in the summary of the bench that measures it
    goal: float
    kind: str  # "at least", "at most", or "not slower" (≥ 1.0 against the base tree)
    unit: str = "×"


TARGETS = (
    Target("VK over HTTP: events/s, supportbot / vkbottle", "vk_http_vs_vkbottle", 1.5, "at least"),
    Target("VK over HTTP: CPU per event, vkbottle / supportbot", "vk_http_cpu_vs_vkbottle", 1.5, "at least"),
    Target("in process, all users at once: events/s vs vkbottle", "in_process_conc_vs_vkbottle", 1.0, "at least"),
    Target("in process, one user at a time: events/s vs vkbottle", "in_process_seq_vs_vkbottle", 0.5, "at least"),
    Target("PostgreSQL, one worker: events/s vs base", "pg_one_worker_vs_base", 2.0, "at least"),
    Target("PostgreSQL, two workers vs one", "pg_two_vs_one", 1.6, "at least"),
    Target("memory per cached session", "memory_per_session_bytes", 2048, "at most", " B"),
    Target("first reply in `supportbot chat`", "chat_first_reply_s", 0.3, "at most", " s"),
    Target("not slower: VK over HTTP events/s vs base", "vk_http_vs_base", 1.0, "not slower"),
    Target("not slower: VK over HTTP CPU per event vs base", "vk_http_cpu_vs_base", 1.0, "not slower"),
    Target("not slower: in process one at a time vs base", "in_process_seq_vs_base", 1.0, "not slower"),
    Target("not slower: in process at once vs base", "in_process_conc_vs_base", 1.0, "not slower"),
    Target("not slower: in process CPU, one at a time, vs base", "in_process_seq_cpu_vs_base", 1.0, "not slower"),
    Target("not slower: in process CPU, at once, vs base", "in_process_conc_cpu_vs_base", 1.0, "not slower"),
)


def verdict(target: Target, got: dict[str, float]) -> str:
    median = got["median"]
    if target.kind == "at most":
        return "met" if median <= target.goal else f"missed by {(median / target.goal - 1) * 100:.0f} %"
    if median >= target.goal:
        return "met"
    if target.kind == "not slower" and got["max"] >= target.goal:
        return f"{(1 - median) * 100:.0f} % slower in the median; the range reaches 1.0 (noise?)"
    return f"missed by {(1 - median / target.goal) * 100:.0f} %"


def as_spread(value: Any) -> dict[str, float]:
    """A sub-bench's figure: {"median","min","max"} or a single number."""
    if isinstance(value, dict):
        return {k: float(value[k]) for k in ("median", "min", "max")}
    return {"median": float(value), "min": float(value), "max": float(value)}


def sub_bench(script: str, args: list[str]) -> tuple[dict[str, Any], str | None]:
    """Run bench/SCRIPT with args and --json, its output shown as it comes; its final JSON line,
    or why there is none."""
    path = ROOT / "bench" / script
    if not path.exists():
        return {}, f"bench/{script} does not exist in this tree"
    helped = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, check=False)
    if "--json" not in helped.stdout:
        return {}, f"bench/{script} has no --json"
    missing = [a for a in args if a.startswith("--") and a not in helped.stdout]
    if missing:
        return {}, f"bench/{script} has no {', '.join(missing)}"
    print(f"\n$ {Path(sys.executable).name} bench/{script} {' '.join([*args, '--json'])}", flush=True)
    proc = subprocess.Popen([sys.executable, str(path), *args, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        print("  " + line, end="", flush=True)
        if line.strip():
            last = line.strip()
    if proc.wait() != 0:
        return {}, f"bench/{script} exited with {proc.returncode}"
    try:
        found = json.loads(last)
    except ValueError:
        return {}, f"bench/{script} printed no JSON line last"
    return (found, None) if isinstance(found, dict) else ({}, f"bench/{script}'s last line is not a JSON object")


def run_all(users: int, rounds: int, reference_http: str, base: Path | None) -> None:
    import bench.in_process
    from bench.machine import cpu_sample

    measured: dict[str, dict[str, float]] = {}
    why_not: dict[str, str] = {}
    machine_before, load_before, started = cpu_sample(), os.getloadavg(), time.perf_counter()

    print("== VK over HTTP (this bench) ==", flush=True)
    kinds = ["supportbot", "vkbottle"] + (["supportbot-base"] if base else [])
    measured.update(asyncio.run(main(users, rounds, reference_http, kinds, base)))

    print("\n== in process, no HTTP (bench/in_process.py) ==", flush=True)
    found = bench.in_process.main(users, rounds, base, as_json=False)
    measured.update({k: v for k, v in found.items() if isinstance(v, dict)})

    print("\n== PostgreSQL engine step (bench/engine.py) ==", flush=True)
    pg_args = ["--database", "postgres", "--workers", "1,2"] + (["--base", str(base)] if base else [])
    if not os.environ.get("SUPPORTBOT_TEST_POSTGRES_URL"):
        reason: str | None = "no PostgreSQL: set SUPPORTBOT_TEST_POSTGRES_URL"
        found = {}
    else:
        found, reason = sub_bench("engine.py", pg_args)
    for key in ("pg_one_worker_vs_base", "pg_two_vs_one"):
        if key in found:
            measured[key] = as_spread(found[key])
        else:
            why_not[key] = reason or f"bench/engine.py printed no {key}"

    print("\n== memory per cached session (bench/engine.py, SQLite) ==", flush=True)
    found, reason = sub_bench("engine.py", ["--database", "sqlite", "--sizes", "1000"])
    if "memory_per_session_bytes" in found:
        measured["memory_per_session_bytes"] = as_spread(found["memory_per_session_bytes"])
    else:
        why_not["memory_per_session_bytes"] = reason or "bench/engine.py printed no memory_per_session_bytes"

    print("\n== first reply in `supportbot chat` (bench/startup.py) ==", flush=True)
    found, reason = sub_bench("startup.py", ["--base", str(base)] if base else [])
    if "chat_first_reply_s" in found:
        measured["chat_first_reply_s"] = as_spread(found["chat_first_reply_s"])
    else:
        why_not["chat_first_reply_s"] = reason or "bench/startup.py printed no chat_first_reply_s"

    machine_after, load_after, wall = cpu_sample(), os.getloadavg(), time.perf_counter() - started
    busy = "?" if machine_before is None or machine_after is None else \
        f"{(machine_after[0] - machine_before[0]) / max(1, machine_after[1] - machine_before[1]) * 100:.0f} %"
    print(f"\n== issue 16's targets, {users} users, {rounds} rounds, base {base or '(none: --base ROOT)'} ==")
    print(f"{'target':<56} {'goal':>9}  {'measured: median (range)':<30} verdict")
    for target in TARGETS:
        goal = f"{'≤' if target.kind == 'at most' else '≥'} {target.goal:g}{target.unit}"
        got = measured.get(target.key)
        if got is None:
            reason = why_not.get(target.key) or ("not run: needs --base ROOT" if target.key.endswith("base")
                                                 else "not measured")
            print(f"{target.what:<56} {goal:>9}  {'not run':<30} {reason}")
            continue
        digits = 0 if target.unit == " B" else 2
        shown = f"{got['median']:.{digits}f} ({got['min']:.{digits}f}–{got['max']:.{digits}f}){target.unit.strip()}"
        print(f"{target.what:<56} {goal:>9}  {shown:<30} {verdict(target, got)}")
    print(f"\nthe machine during the run ({wall:.0f} s): CPUs {busy} busy; load average {load_before[0]:.2f} at the "
          f"start, {load_after[0]:.2f} at the end ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reference-http", choices=("aiohttp", "httpx"), default="aiohttp",
                        help="how the vkbottle bot calls SimpleOne: aiohttp (vkbottle's own stack, the stricter "
                             "comparison) or plain httpx")
    parser.add_argument("--kinds", default="supportbot,vkbottle",
                        help=f"bots to run, comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--base", type=Path, help="another tree (e.g. the previous commit's, /work/wt/base): its "
                                                 "supportbot runs in the same rounds (kind supportbot-base)")
    parser.add_argument("--profile", choices=("py-spy", "cprofile"),
                        help="profile supportbot's process: py-spy samples it while the users run (raw collapsed "
                             "stacks, one file per round), cProfile the whole process; see bench/README.md, Profiling")
    parser.add_argument("--profile-dir", type=Path, default=Path("profiles"), help="where profiles go")
    parser.add_argument("--all", action="store_true",
                        help="every ratio of issue 16 in one run: this comparison, bench/in_process.py, "
                             "bench/engine.py (PostgreSQL workers, memory) and bench/startup.py, then one table")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if set(kinds) - set(KINDS):
        parser.error(f"unknown kinds {sorted(set(kinds) - set(KINDS))}")
    base = args.base.resolve() if args.base else None
    if args.profile:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
        PROFILE.update(tool=args.profile, dir=str(args.profile_dir.resolve()))
    if args.all:
        run_all(args.users, max(1, args.rounds), args.reference_http, base)
    else:
        if base is not None and "supportbot-base" not in kinds:
            kinds.append("supportbot-base")
        if "supportbot-base" in kinds and base is None:
            parser.error("kind supportbot-base needs --base ROOT")
        asyncio.run(main(args.users, args.rounds, args.reference_http, kinds, base))
