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

`--kinds supportbot,base,vkbottle --base ROOT` adds the bot of another tree (its supportbot
run with PYTHONPATH=ROOT), for a before/after in the same run.

Run: .venv/bin/python bench/vk_path.py [--users 100] [--rounds 5] [--kinds supportbot,vkbottle] [--base ROOT]
(vkbottle and httpx come with the bench extra: .venv/bin/pip install -e '.[bench]'.)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.storage.sqlite import open_sqlite  # noqa: E402
from emulators.vk.keyboard import labels  # noqa: E402
from emulators.vk.server import RunningVkEmulator, start_vk_emulator  # noqa: E402
from emulators.vk.users import FakeUser  # noqa: E402
from engine.ports import Binding  # noqa: E402

GROUP = 1
TOKEN = "bench-token"
DIALOGUE: list[tuple[str, str]] = [
    ("say", "Начать"),
    ("press", "Создать заявку"),
    # The flows' labels, or the reference bot's (bench/vkbottle_bot.py keeps the older ones).
    ("press", "Сервисы сотрудника|2. Сопровождение сервисов сотрудника"),
    ("press", "Программы (ПО)|6. Программное обеспечение (ПО)"),
    ("say", "Не запускается Microsoft Word на ноутбуке в ауд. 305, пишет ошибку лицензии."),
    ("press", "Без файлов"),
    ("press", "Отправить"),
]


LP_COUNT = [0]
KINDS = ("supportbot", "base", "vkbottle", "supportbot-vkbottle-keyboard", "supportbot-vkbottle-updates",
         "supportbot-vkbottle-import")
CPU: dict[str, list[float]] = {kind: [] for kind in KINDS}


def count_long_polls(vk: RunningVkEmulator) -> None:
    original = vk.state.updates.poll

    async def counted(*args: object, **kwargs: object) -> object:
        LP_COUNT[0] += 1
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    vk.state.updates.poll = counted  # type: ignore[method-assign]


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


async def simpleone_users(url: str, peers: list[int]) -> dict[int, str]:
    async with httpx.AsyncClient(base_url=url) as client:
        out = {}
        for peer in peers:
            answer = await client.post("/_emulator/users", json={"email": f"u{peer}@ranepa.ru",
                                                                  "first_name": "Bench", "last_name": str(peer)})
            answer.raise_for_status()
            body = answer.json()
            out[peer] = str(body["sys_id"])
        return out


async def user_dialogue(user: FakeUser) -> None:
    for kind, text in DIALOGUE:
        if kind == "say":
            await user.say(text)
        else:
            shown = user.state.last_keyboard(user.peer_id)
            on_it = labels(shown.keyboard) if shown is not None and shown.keyboard is not None else []
            await user.press(next((label for label in text.split("|") if label in on_it), text))
        reply = await user.wait_reply(timeout=60)
    if "создана" not in reply.text:
        raise RuntimeError(f"peer {user.peer_id}: the dialogue did not end with a ticket: {reply.text[:120]!r}")


async def run_users(vk: RunningVkEmulator, peers: list[int]) -> float:
    """Steps per second for these users going through the dialogue at once."""
    started = time.perf_counter()
    await asyncio.gather(*(user_dialogue(vk.user(p)) for p in peers))
    return len(peers) * len(DIALOGUE) / (time.perf_counter() - started)


async def start_bot(kind: str, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    if kind in ("supportbot", "base"):  # base: the same bot from the --base tree (PYTHONPATH)
        cmd = [sys.executable, "-m", "supportbot.cli", "run"]
    elif kind.startswith("supportbot-vkbottle-"):
        cmd = [sys.executable, str(ROOT / "bench" / "vk_variants.py"), "--" + kind.rsplit("-", 1)[1]]
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "vkbottle_bot.py")]
    return await asyncio.create_subprocess_exec(*cmd, cwd=cwd, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)


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
        rate = await run_users(vk, peers)
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


async def main(users: int, rounds: int, reference_http: str, kinds: list[str], base: str | None = None) -> None:
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
                if kind == "base":
                    env["PYTHONPATH"] = str(base)
                if kind.startswith("supportbot") or kind == "base":
                    db = work / f"bot-{round_no}.db"
                    storage = await open_sqlite(db)
                    for peer, caller in callers.items():
                        await storage.put_binding(Binding(f"vk:{peer}", f"u{peer}@ranepa.ru", caller, "Bench", 0))
                    await storage.close()
                    env.update(SIMPLEONE_USERNAME="bot", SIMPLEONE_PASSWORD="bot-password",
                               SUPPORTBOT_DATABASE_URL=f"sqlite:///{db}", SMTP_HOST="127.0.0.1",
                               SMTP_FROM="bench@ranepa.ru", VK_RATE_LIMIT="1000000", VK_CONCURRENCY="200",
                               SPOOL_DIR=str(work / "spool"))
                else:
                    env["BENCH_CALLERS"] = json.dumps({str(k): v for k, v in callers.items()})
                    env["BENCH_REFERENCE_HTTP"] = reference_http
                rate = await phase(kind, vk, env, work, warmup, peers)
                results[kind].append(rate)
                print(f"round {round_no + 1}: {kind:<10} {rate:8.0f} events/s", flush=True)
        for variant in (k for k in kinds if (k.startswith("supportbot-") or k == "base") and "supportbot" in kinds):
            plain, other = statistics.median(results["supportbot"]), statistics.median(results[variant])
            cpu_plain, cpu_other = statistics.median(CPU["supportbot"]), statistics.median(CPU[variant])
            # Each round's variant against the same round's supportbot: the machine's load drifts
            # between rounds more than the variants differ.
            paired = sorted(v / p for v, p in zip(CPU[variant], CPU["supportbot"], strict=True))
            print(f"\n{variant} against supportbot: {other:6.0f} against {plain:6.0f} events/s ({other / plain:.3f}), "
                  f"CPU per event {cpu_other * 1000:.3f} against {cpu_plain * 1000:.3f} ms "
                  f"({cpu_other / cpu_plain:.3f}), median of {rounds}; CPU per event round by round: median "
                  f"{statistics.median(paired):.3f}, from {paired[0]:.3f} to {paired[-1]:.3f}")
        if "vkbottle" not in kinds or "supportbot" not in kinds:
            return
        ours, theirs = statistics.median(results["supportbot"]), statistics.median(results["vkbottle"])
        print(f"\n{users} users × {len(DIALOGUE)}-step create-ticket dialogue over long poll, median of {rounds}:")
        print(f"  supportbot (SQLite, every step committed before the answer): {ours:8.0f} events/s")
        print(f"  vkbottle bot (in-memory state, nothing persisted; SimpleOne over {reference_http}):"
              f" {theirs:8.0f} events/s")
        print(f"  ratio supportbot / vkbottle: {ours / theirs:.2f}  (target ≥ 1.5, at least 1.0)")
        cpu_ours, cpu_theirs = statistics.median(CPU["supportbot"]), statistics.median(CPU["vkbottle"])
        print(f"  CPU per event in the bot: {cpu_ours * 1000:.2f} ms against {cpu_theirs * 1000:.2f} ms "
              f"(ratio {cpu_theirs / cpu_ours:.2f}); both bots share 2 cores with the fake VK and SimpleOne")
    finally:
        await vk.close()
        simpleone.terminate()
        await simpleone.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reference-http", choices=("aiohttp", "httpx"), default="aiohttp",
                        help="how the vkbottle bot calls SimpleOne: aiohttp (vkbottle's own stack, the stricter "
                             "comparison) or plain httpx")
    parser.add_argument("--kinds", default="supportbot,vkbottle",
                        help=f"bots to run, comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--base", help="another tree's root: kind `base` runs its supportbot (a same-run before/after)")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if "base" in kinds and not args.base:
        parser.error("kind base needs --base ROOT")
    if set(kinds) - set(KINDS):
        parser.error(f"unknown kinds {sorted(set(kinds) - set(KINDS))}")
    asyncio.run(main(args.users, args.rounds, args.reference_http, kinds, args.base))
