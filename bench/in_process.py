"""In process, no HTTP: supportbot's VK channel and engine against an in-memory vkbottle bot.

Each bot runs in a process of its own per round, and in that process everything else too:
  - VK is the VK emulator's state (emulators/vk) answering in process: method calls return at
    once, long-poll checks are held until a user writes, as the fake server does behind HTTP.
  - supportbot: the real VK channel (adapters/vk: the LongPoller with only its HTTP request
    replaced by the in-process check, VkBot with its VkSender and DeliveryLog, updates parsed as
    long poll delivers them) and the real Engine on SQLite (a temp file, every step committed
    before its reply), the ticket outbox worker creating the ticket.
  - the reference: bench/vkbottle_bot.py's bot (vkbottle handlers, its in-memory state
    dispenser, the same dialogue, texts and keyboards), run by vkbottle's own polling loop; its
    API and polling get an HTTP client (vkbottle's extension point) answering in process.
  - SimpleOne: the emulator's tables in process (bench/engine.py's InProcessSimpleOne), for
    supportbot's outbox and the reference's submit alike.

Users: after a warm-up (10 users at once, untimed), `--users` users × the 7-step create-ticket
dialogue one user at a time (each step sent when the last was answered, users one after
another), then as many others all at once (each user's next step sent when their last was
answered); the two modes take turns three times per process, new users each time. Every reply
is checked against the dialogue: a broken bot fails the run, it is not
measured. VK is instant here: the time the in-process VK takes (answering a call, reading a
request's form or a batch's script, writing vkbottle's JSON answer) is taken off both bots' time
and CPU; each bot pays its own side in full (building requests, reading answers). Without that,
supportbot's sender, which batches a loop turn's replies into one `execute`, was charged for the
emulator unquoting and parsing ~150 KB scripts, work that is VK's. Printed: events/s and CPU per
event (the process less VK: the bot and the users, the same harness for both bots) per bot and
mode, median and range over
`--rounds` rounds (bots interleaved, the order rotating), and the ratios supportbot/vkbottle
and, with `--base ROOT`, this tree against that tree's supportbot in the same rounds.

Run: .venv/bin/python bench/in_process.py [--users 100] [--rounds 5] [--base /work/wt/base] [--json]
(vkbottle comes with the bench extra: .venv/bin/pip install -e '.[bench]'.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

# The tree whose supportbot a child measures comes first on the path (the parent names it in
# BENCH_TREE); this harness's own code is always this file's.
HERE = Path(__file__).resolve().parent.parent
TREE = Path(os.environ.get("BENCH_TREE") or HERE)
sys.path.insert(0, str(TREE))

import aiohttp  # noqa: E402

from adapters.vk.api import VkApi, VkApiError  # noqa: E402
from adapters.vk.longpoll import LongPoller  # noqa: E402
from emulators.vk.state import VkApiError as EmulatedVkError  # noqa: E402
from emulators.vk.state import VkState  # noqa: E402
from emulators.vk.users import FakeUser  # noqa: E402

if TYPE_CHECKING:
    from vkbottle.http import ABCHTTPClient

GROUP = 1
TOKEN = "bench-token"
LONG_POLL_SERVER = "in-process://vk/lp"
API_URL = "in-process://vk/method/"
DESCRIPTION = "Не запускается Microsoft Word на ноутбуке в ауд. 305, пишет ошибку лицензии."
WARMUP_USERS = 10
REPEAT = 3  # each mode this many times per process, new users each time
KINDS = ("supportbot", "vkbottle")
MODES = {"seq": "one user at a time", "conc": "all users at once"}
# The targets for supportbot / vkbottle in events/s (issue 16).
TARGETS = {"seq": 0.5, "conc": 1.0}


@dataclass(frozen=True, slots=True)
class Step:
    action: str  # "say": type the text; "press": press the button so labelled on the last keyboard
    text: str
    expect: str  # what the reply to this step must contain


# The create-ticket dialogue of a signed-in user; both bots say these things.
STEPS: tuple[Step, ...] = (
    Step("say", "Начать", "Главное меню IT-поддержки РАНХиГС"),
    Step("press", "Создать заявку", "Выберите категорию"),
    Step("press", "Сервисы сотрудника", "Сопровождение сервисов сотрудника:\n"),
    Step("press", "Программы (ПО)", "Опишите проблему"),
    Step("say", DESCRIPTION, "Или нажмите «Без файлов»"),
    Step("press", "Без файлов", f"Проверьте заявку:\n\nКатегория: Сопровождение сервисов сотрудника\n"
                                f"Услуга: Программное обеспечение (ПО)\nОписание: {DESCRIPTION}"),
    Step("press", "Отправить", " создана."),
)


class DialogueError(AssertionError):
    """A bot answered something the dialogue does not say: the run measures nothing."""


# ----------------------------------------------------------------- VK in process


def _form_value(value: Any) -> str:
    """A parameter as it would arrive in a form body (the emulator reads strings)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class InProcessVk:
    """The VK emulator's state answering method calls and long-poll checks in process: what the
    fake VK server does behind HTTP (emulators/vk/server.py), without HTTP."""

    def __init__(self) -> None:
        # No rate limit (VK's ~20 calls/s would measure the limit, not the bots); history long
        # enough that no poller ever falls behind it.
        self.state = VkState(group_id=GROUP, tokens=(TOKEN,), rate_limit=None, history=100_000)
        # Time spent being VK (answering calls, reading a batch's script): VK is instant in this
        # shape, so it is taken off both bots' time and CPU (timed()); the bots pay their own
        # side (building and sending a request, reading the answer) in full.
        self.spent = 0.0

    def call(self, method: str, params: Mapping[str, Any]) -> Any:
        """A method's `response`; raises the emulator's VkApiError as VK would answer an error."""
        began = time.perf_counter()
        try:
            return self._call(method, params)
        finally:
            self.spent += time.perf_counter() - began

    def _call(self, method: str, params: Mapping[str, Any]) -> Any:
        form = {k: _form_value(v) for k, v in params.items() if v is not None}
        state = self.state
        try:
            if method == "messages.send":
                result: Any = state.send(form, TOKEN)
            elif method == "groups.getLongPollServer":
                result = {"key": state.updates.key, "server": LONG_POLL_SERVER, "ts": str(state.updates.ts)}
            elif method == "groups.getById":
                result = {"groups": [{"id": GROUP, "name": state.group_name, "screen_name": state.screen_name,
                                      "is_closed": 0, "type": "group"}], "profiles": []}
            elif method == "messages.getById":
                result = state.get_messages(form)
            else:
                raise EmulatedVkError(3, "Unknown method passed")
        except EmulatedVkError as exc:
            state.calls.append((method, exc.code))
            raise
        state.calls.append((method, 0))
        return result

    async def poll(self, key: str, ts: str, wait: float) -> dict[str, Any]:
        return await self.state.updates.poll(key, ts, wait)

    def user(self, peer_id: int) -> FakeUser:
        return FakeUser(self.state, peer_id, peer_id)


class InstantVkApi(VkApi):
    """adapters/vk's VkApi answering from the in-process VK: the same calls, no HTTP, no pacing."""

    def __init__(self, vk: InProcessVk, session: aiohttp.ClientSession) -> None:
        super().__init__(session, [TOKEN], api_url=API_URL, rate=1e9)
        self.vk = vk

    async def call(self, method: str, params: Mapping[str, Any]) -> Any:
        try:
            return self.vk.call(method, params)
        except EmulatedVkError as exc:
            raise VkApiError(exc.code, exc.message, method) from None

    async def call_form(self, method: str, form: str) -> Any:
        """The sender's form-encoded calls: messages.send, and `execute` of several of them (the
        fake VK server's VKScript subset, emulators/vk/execute.py), each call failing alone."""
        began = time.perf_counter()
        params = dict(parse_qsl(form, keep_blank_values=True))  # VK reading the request
        self.vk.spent += time.perf_counter() - began
        if method != "execute":
            return await self.call(method, params)
        # Only trees whose sender batches get here (a tree from before has neither of these).
        from adapters.vk.api import ExecuteResult
        from emulators.vk.execute import parse_script

        began = time.perf_counter()
        script = parse_script(params.get("code", ""))
        self.vk.spent += time.perf_counter() - began

        results: list[Any] = []
        errors: list[dict[str, Any]] = []
        for inner, inner_params in script:
            try:
                results.append(self.vk.call(inner, inner_params))
            except EmulatedVkError as exc:
                results.append(False)
                errors.append({"method": inner, "error_code": exc.code, "error_msg": exc.message})
        return ExecuteResult(results, errors or None)


class InProcessLongPoller(LongPoller):
    """The channel's long poller with its one HTTP request (check) answered in process; the
    rest (dispatch, the inbox check of a batch, the ts saved) is the poller's own."""

    def __init__(self, vk: InProcessVk, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vk = vk

    async def check(self, server: dict[str, Any]) -> dict[str, Any]:
        return await self.vk.poll(str(server["key"]), str(server["ts"]), self.wait)


# ----------------------------------------------------------------- the two bots


Callers = dict[int, tuple[str, str]]  # peer_id → (SimpleOne caller sys_id, email)


@contextlib.asynccontextmanager
async def supportbot(vk: InProcessVk, tickets: Any, callers: Callers, tmp: Path) -> AsyncIterator[None]:
    """supportbot's long-poll process as `supportbot run` wires it (supportbot/app.py and
    vk_app.py), with SimpleOne and VK in process and VK_CONCURRENCY as bench/vk_path.py sets it."""
    from adapters.spool import DiskSpool
    from adapters.storage.sqlite import open_sqlite
    from adapters.vk.attachments import AttachmentFetcher
    from adapters.vk.bot import VkBot
    from adapters.vk.delivery import DeliveryLog
    from adapters.vk.longpoll import DEFAULT_WAIT
    from adapters.vk.sender import VkSender
    from bench.engine import NoMail
    from engine.actions.context import AuthPolicy, Services
    from engine.dialogue.runtime import Engine
    from engine.flows.source import StaticFlows
    from engine.load import load_flow_set
    from engine.ports import Binding
    from engine.work.leases import JobLease
    from engine.work.ticket_outbox import ticket_outbox

    flow_set = load_flow_set([TREE / "flows"]).flow_set
    assert flow_set is not None
    storage = await open_sqlite(tmp / "bot.db")
    for peer_id, (caller, email) in callers.items():
        await storage.put_binding(Binding(f"vk:{peer_id}", email, caller, "Bench User", time.time()))
    services = Services(storage, tickets, NoMail(), DiskSpool(tmp / "spool"), AuthPolicy(), idle_timeout=1e9)
    flows = StaticFlows(flow_set)
    working = asyncio.create_task(ticket_outbox(services, flows).run())
    engine = Engine(flows, services)
    session = aiohttp.ClientSession()
    api = InstantVkApi(vk, session)
    delivery = DeliveryLog(storage)
    bot = VkBot(engine.handle, engine.message, api, VkSender(api), AttachmentFetcher(session, max_bytes=50 << 20),
                group_id=GROUP, concurrency=200, delivery=delivery)
    lease = JobLease(storage, f"vk:{GROUP}:longpoll", ttl=DEFAULT_WAIT + 20)
    poller = InProcessLongPoller(vk, api, storage, bot, group_id=GROUP, lease=lease)
    try:
        async with polling(vk, poller.run()):
            yield
    finally:
        await bot.dispatcher.drain()
        await delivery.close()
        working.cancel()
        await asyncio.gather(working, return_exceptions=True)
        await storage.close()
        await session.close()


@contextlib.asynccontextmanager
async def vkbottle(vk: InProcessVk, tickets: Any, callers: Callers, tmp: Path) -> AsyncIterator[None]:
    """bench/vkbottle_bot.py's bot run by vkbottle's own polling loop (Bot.run_polling), its API
    and polling on an HTTP client answering in process."""
    from vkbottle import API

    from bench.vkbottle_bot import make_bot

    async def create_ticket(fields: dict[str, str]) -> str:
        return str((await tickets.create_ticket("itsm_incident", fields)).number)

    bot = make_bot(API(TOKEN, http_client=in_process_http_client(vk)), callers, create_ticket)
    async with polling(vk, bot.run_polling()):
        yield


@contextlib.asynccontextmanager
async def polling(vk: InProcessVk, run: Coroutine[Any, Any, Any]) -> AsyncIterator[None]:
    """A bot's polling loop as a task for the block, which starts once VK sees it waiting."""
    task = asyncio.create_task(run)
    try:
        await vk.state.updates.poller_waiting(within=30)
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def in_process_http_client(vk: InProcessVk) -> ABCHTTPClient:
    """A vkbottle ABCHTTPClient answering API calls and long-poll checks from the in-process VK:
    the API gets VK's JSON text (vkbottle parses and validates it as always), polling its JSON.
    Defined in here so that supportbot's process never imports vkbottle."""
    from vkbottle.http import ABCHTTPClient

    class Client(ABCHTTPClient):
        def __init__(self) -> None:
            self.vk = vk

        async def request_text(self, url: str, method: str = "GET", data: dict[str, Any] | None = None,
                               **kwargs: Any) -> str:
            name = url.rsplit("/", 1)[-1]
            try:
                answer: dict[str, Any] = {"response": self.vk.call(name, data or {})}
            except EmulatedVkError as exc:
                answer = {"error": {"error_code": exc.code, "error_msg": exc.message, "request_params": []}}
            began = time.perf_counter()
            text = json.dumps(answer, ensure_ascii=False)  # VK writing its answer
            self.vk.spent += time.perf_counter() - began
            return text

        async def request_json(self, url: str, method: str = "GET", data: dict[str, Any] | None = None,
                               **kwargs: Any) -> dict[str, Any]:
            if url == LONG_POLL_SERVER:
                params = kwargs["params"]
                return await self.vk.poll(str(params["key"]), str(params["ts"]), float(params["wait"]))
            loaded: dict[str, Any] = json.loads(await self.request_text(url, method, data, **kwargs))
            return loaded

        async def request_raw(self, url: str, method: str = "GET", data: dict[str, Any] | None = None,
                              **kwargs: Any) -> Any:
            raise NotImplementedError("the in-process VK serves no files; the dialogue sends none")

        async def request_content(self, url: str, method: str = "GET", data: dict[str, Any] | None = None,
                                  **kwargs: Any) -> bytes:
            raise NotImplementedError("the in-process VK serves no files; the dialogue sends none")

        async def close(self) -> None:
            return None

    return Client()


BOTS: dict[str, Callable[[InProcessVk, Any, Callers, Path], contextlib.AbstractAsyncContextManager[None]]] = {
    "supportbot": supportbot, "vkbottle": vkbottle}


# ----------------------------------------------------------------- users


async def dialogue(user: FakeUser) -> None:
    """One user through the dialogue, each step sent when the last was answered; every reply
    checked."""
    for step in STEPS:
        if step.action == "say":
            await user.say(step.text)
        else:
            await user.press(step.text)  # fails if the last reply lacks the button
        reply = await user.wait_reply(timeout=60)
        if step.expect not in reply.text:
            raise DialogueError(f"peer {user.peer_id}, step {step.text[:30]!r}: expected {step.expect!r} "
                                f"in the reply, got {reply.text[:300]!r}")


def check_nothing_more(vk: InProcessVk, peers: Sequence[int]) -> None:
    """Exactly one reply per step: nothing sent late or twice."""
    for peer in peers:
        sent = vk.state.sent_to(peer)
        if len(sent) != len(STEPS):
            raise DialogueError(f"peer {peer}: {len(sent)} messages for {len(STEPS)} steps: "
                                f"{[m.text[:40] for m in sent]!r}")


@dataclass(slots=True)
class Measured:
    events: int
    seconds: float
    cpu: float  # seconds of CPU of the whole process (all threads)

    def add(self, other: Measured) -> None:
        self.events += other.events
        self.seconds += other.seconds
        self.cpu += other.cpu

    def as_dict(self) -> dict[str, float]:
        return {"events": self.events, "seconds": self.seconds, "cpu": self.cpu}


async def timed(vk: InProcessVk, users: Sequence[int], run: Callable[[], Awaitable[None]]) -> Measured:
    """The phase's events, time and CPU, less what VK took (InProcessVk.spent)."""
    cpu, wall, vk_before = time.process_time(), time.perf_counter(), vk.spent
    await run()
    vk_time = vk.spent - vk_before
    return Measured(len(users) * len(STEPS), time.perf_counter() - wall - vk_time,
                    time.process_time() - cpu - vk_time)


async def measure(kind: str, users: int, tmp: Path, *, warmup: int = WARMUP_USERS,
                  repeat: int = REPEAT) -> dict[str, Measured]:
    """One bot: warm-up, then `repeat` times `users` users one at a time and `users` others all at
    once, each time new users (an at-once phase alone is over in a fraction of a second)."""
    from bench.engine import InProcessSimpleOne

    vk = InProcessVk()
    tickets = InProcessSimpleOne()
    warm = list(range(1, warmup + 1))
    batches = [list(range(warmup + 1 + n * users, warmup + 1 + (n + 1) * users)) for n in range(2 * repeat)]
    callers: Callers = {}
    for peer in warm + [p for batch in batches for p in batch]:
        person = await tickets.find_person(f"u{peer}@ranepa.ru")
        assert person is not None
        callers[peer] = (person.sys_id, person.email)

    async def sequential(peers: Sequence[int]) -> None:
        for peer in peers:
            await dialogue(vk.user(peer))

    async def concurrent(peers: Sequence[int]) -> None:
        await asyncio.gather(*(dialogue(vk.user(peer)) for peer in peers))

    done = {mode: Measured(0, 0.0, 0.0) for mode in MODES}
    async with BOTS[kind](vk, tickets, callers, tmp):
        await concurrent(warm)
        for n in range(repeat):  # the modes take turns: a slow spell hits both
            one_by_one, at_once = batches[2 * n], batches[2 * n + 1]
            done["seq"].add(await timed(vk, one_by_one, functools.partial(sequential, one_by_one)))
            done["conc"].add(await timed(vk, at_once, functools.partial(concurrent, at_once)))
        await asyncio.sleep(0.2)  # anything sent late or twice would come now
    check_nothing_more(vk, warm + [p for batch in batches for p in batch])
    return done


def child(kind: str, users: int) -> None:
    """One bot in this process; prints one JSON line."""
    import logging

    logging.basicConfig(level=logging.WARNING)  # quiet, as both bots run in bench/vk_path.py
    with tempfile.TemporaryDirectory(prefix="supportbot-inproc-") as tmp:
        os.chdir(tmp)  # vkbottle's polling saves its ts under the working directory
        done = asyncio.run(measure(kind, users, Path(tmp)))
    engine_file = sys.modules["engine"].__file__ if "engine" in sys.modules else None
    print(json.dumps({"kind": kind, "engine": engine_file, **{m: v.as_dict() for m, v in done.items()}}))


# ----------------------------------------------------------------- rounds and the report


def run_child(kind: str, root: Path, users: int) -> dict[str, Any]:
    env = {**os.environ, "BENCH_TREE": str(root)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind, "--users", str(users)],
                          capture_output=True, text=True, env=env, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} ({root}) failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if kind == "supportbot" and not str(result["engine"]).startswith(str(root)):
        raise RuntimeError(f"{kind} measured {result['engine']}, not the tree {root}")
    return result


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(s: Mapping[str, float], digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def main(users: int, rounds: int, base: Path | None, as_json: bool) -> dict[str, Any]:
    from bench.machine import cpu_sample

    runs = [("supportbot", "supportbot", HERE), ("vkbottle", "vkbottle", HERE)]
    if base is not None:
        runs.append(("supportbot (base)", "supportbot", base))
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in runs}
    print(f"in process, no HTTP: {users} users × the {len(STEPS)}-step create-ticket dialogue, one user at a time, "
          f"then {users} others all at once; {rounds} rounds, bots interleaved"
          + (f"; base tree {base}" if base else ""), flush=True)
    machine_before, started = cpu_sample(), time.perf_counter()
    for n in range(rounds):
        order = runs[n % len(runs):] + runs[:n % len(runs)]
        for label, kind, root in order:
            got = run_child(kind, root, users)
            results[label].append(got)
            parts = [f"{MODES[m]} {got[m]['events'] / got[m]['seconds']:7.0f} events/s, "
                     f"{got[m]['cpu'] / got[m]['events'] * 1000:.3f} ms CPU/event" for m in MODES]
            print(f"round {n + 1}: {label:<18} " + "; ".join(parts), flush=True)
    machine_after, wall = cpu_sample(), time.perf_counter() - started
    busy = None if machine_before is None or machine_after is None else \
        (machine_after[0] - machine_before[0]) / max(1, machine_after[1] - machine_before[1]) * 100

    def rates(label: str, mode: str) -> list[float]:
        return [r[mode]["events"] / r[mode]["seconds"] for r in results[label]]

    def cpus(label: str, mode: str) -> list[float]:
        return [r[mode]["cpu"] / r[mode]["events"] for r in results[label]]

    def paired(a: list[float], b: list[float]) -> dict[str, float]:
        """Round by round: the same round's runs share the machine's mood."""
        return spread([x / y for x, y in zip(a, b, strict=True)])

    summary: dict[str, Any] = {"in_process_machine_busy_percent": busy}
    print(f"\n{users} users × {len(STEPS)} steps, median (range) of {rounds} rounds:")
    for label, _, _ in runs:
        for mode, name in MODES.items():
            r, c = spread(rates(label, mode)), spread([x * 1000 for x in cpus(label, mode)])
            print(f"  {label:<18} {name:<19} {fmt(r, 0):>22} events/s   {fmt(c, 3):>22} ms CPU per event")
            summary[f"in_process_{label.split()[0]}{'_base' if 'base' in label else ''}_{mode}_events_per_s"] = r
    print("\nsupportbot / vkbottle (round by round; events/s, and CPU per event as vkbottle's over supportbot's):")
    for mode, name in MODES.items():
        rate = paired(rates("supportbot", mode), rates("vkbottle", mode))
        cpu = paired(cpus("vkbottle", mode), cpus("supportbot", mode))
        verdict = "met" if rate["median"] >= TARGETS[mode] else \
            f"missed by {(1 - rate['median'] / TARGETS[mode]) * 100:.0f} %"
        print(f"  {name:<19} events/s {fmt(rate)}  (target ≥ {TARGETS[mode]}: {verdict});  CPU {fmt(cpu)}")
        summary[f"in_process_{mode}_vs_vkbottle"] = rate
        summary[f"in_process_{mode}_cpu_vs_vkbottle"] = cpu
    if base is not None:
        print(f"\nthis tree / base ({base}) (round by round; CPU per event as base's over this tree's):")
        for mode, name in MODES.items():
            rate = paired(rates("supportbot", mode), rates("supportbot (base)", mode))
            cpu = paired(cpus("supportbot (base)", mode), cpus("supportbot", mode))
            print(f"  {name:<19} events/s {fmt(rate)};  CPU {fmt(cpu)}  (≥ 1: not slower)")
            summary[f"in_process_{mode}_vs_base"] = rate
            summary[f"in_process_{mode}_cpu_vs_base"] = cpu
    print(f"\n(the machine's CPUs were {'?' if busy is None else f'{busy:.0f} %'} busy over the {wall:.0f} s; "
          f"CPU per event is the bot process's less the in-process VK's: the bot, SimpleOne in process, the users)",
          flush=True)
    if as_json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base", type=Path, help="another tree (e.g. the previous commit's) whose supportbot runs "
                                                 "in the same rounds")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the ratios")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.users)
    else:
        main(args.users, max(1, args.rounds), args.base.resolve() if args.base else None, args.json)
