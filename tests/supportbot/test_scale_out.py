"""Scale-out (issue 5): three `supportbot serve` workers on one PostgreSQL database behind a round
robin of the fake VK server's Callback deliveries. 200 users run the whole ticket dialogue at
once; many deliveries come twice, many again late; one worker is killed (SIGKILL) mid-run and
started again on its port. Afterwards every user has exactly one ticket, learned its number
exactly once and saw the dialogue's replies in order, none twice; no event was handled twice.

Needs PostgreSQL: SUPPORTBOT_TEST_POSTGRES_URL (see tests/postgres_db.py; skipped without it,
failed in CI). Every problem found is collected and reported together with its evidence (which
user, which event, which worker answered VK's delivery, which worker sent the message, when
relative to the kill); the whole record is also written to evidence.json in the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import re
import signal
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest

from emulators.simpleone.server import RunningEmulator
from emulators.vk.server import RunningVkEmulator, start_vk_emulator
from tests.vk_processes import CONFIRMATION, GROUP, SECRET, Mailbox, bot_env, free_port, smtp_mailbox, start, stop

USERS = 200
WORKERS = 3
VICTIM = 1  # the worker killed mid-run (0-based)
KILL_AFTER = USERS // 3  # ... once this many users have pressed «Отправить»
DOWN_SECONDS = 1.5  # how long the killed worker stays dead before it is started again
RAMP_SECONDS = 10.0  # users start spread over this, so that the kill finds them at every step
DUPLICATE_SHARE = 0.4  # of events delivered twice at once
RESEND_SHARE = 0.4  # of events delivered again, 0.5–3 s after VK had its "ok"
RESEND_DELAY = (0.5, 3.0)
# Each worker sends with tokens of its own (a community may have several): the token of a
# message tells which worker sent it. Each token is paced under the fake VK's 20 calls/s.
TOKENS_PER_WORKER = 3
RATE_PER_TOKEN = 18
REPLY_TIMEOUT = 60.0  # an event in the killed worker's hands waits for its restart
# A ticket number kept by the killed worker's outbox lease (~3 × SIMPLEONE_TIMEOUT + 20 s) comes late.
NOTICE_TIMEOUT = 120.0
PEER_BASE = 10_000
NUMBER = re.compile(r"INC\d{7}")
SEED = random.randrange(2**32)


def tokens_of(worker: int) -> list[str]:
    return [f"community-token-w{worker}-{n}" for n in range(TOKENS_PER_WORKER)]


# --------------------------------------------------------------------------- the world


@pytest.fixture
def database(scratch_postgres: str) -> str:
    return scratch_postgres


@pytest.fixture
async def vk() -> AsyncIterator[RunningVkEmulator]:
    tokens = [t for w in range(WORKERS) for t in tokens_of(w)]
    emulator = await start_vk_emulator(group_id=GROUP, tokens=tokens, max_wait=2.0)
    yield emulator
    await emulator.close()


@pytest.fixture
async def mailbox() -> AsyncIterator[tuple[Mailbox, int]]:
    async with smtp_mailbox() as box:
        yield box


@dataclass
class Worker:
    name: str
    port: int
    env: dict[str, str]
    logs: list[Path] = field(default_factory=list)  # one per start
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/vk"


async def launch(worker: Worker, cwd: Path, http: aiohttp.ClientSession) -> None:
    """Start the worker's `supportbot serve` (its log to a file of its own) and wait until it listens."""
    log = cwd / f"{worker.name}.{len(worker.logs) + 1}.log"
    worker.logs.append(log)
    with log.open("wb") as stderr:
        worker.proc = await start(["serve", "--host", "127.0.0.1", "--port", str(worker.port), "--path", "/vk"],
                                  worker.env, cwd, stderr=stderr)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        if worker.proc.returncode is not None:
            raise AssertionError(f"{worker.name} exited with {worker.proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            async with http.get(worker.url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{worker.name} did not come up:\n{log.read_text()[-3000:]}")


# --------------------------------------------------------------------------- the users


@dataclass
class UserRun:
    n: int
    peer_id: int
    email: str
    text: str
    events: list[str] = field(default_factory=list)  # the event ids the user's actions made, in order
    failure: str | None = None
    accepted_only: bool = False  # «Заявка принята»: the number is to come as a notice


CREATED = re.compile(r"Заявка INC\d{7} создана")
ACCEPTED = "Заявка принята"
NOTICE = re.compile(r"зарегистрирована под номером INC\d{7}")


def script(run: UserRun) -> list[tuple[str, str, list[str]]]:
    """(say or press, what, what the reply must contain); "<code>" is the code from the letter."""
    return [
        ("say", "Начать", ["Главное меню"]),
        ("press", "Создать заявку", ["корпоративной почте"]),
        ("say", run.email, [f"отправил код на {run.email}"]),
        ("say", "<code>", [f"вы вошли как {run.email}"]),
        ("say", "12", ["Системы связи", "1. Телефония"]),
        ("press", "Телефонная связь (АТС)", ["Опишите проблему"]),
        ("say", run.text, ["Прикрепите скриншоты"]),
        ("press", "Без файлов", ["Проверьте заявку", run.text]),
        ("press", "Отправить", []),  # «Заявка INC… создана», or «Заявка принята» and the number later
    ]


STEPS = 9
EMAIL_STEP = 2  # the step that mails the code (0-based)


def expected_replies(run: UserRun, texts: list[str]) -> list[str]:
    """What is wrong with the messages a user saw, as a list (empty: the dialogue, in order, once)."""
    wrong = []
    want = [expect for _, _, expect in script(run)]
    submit = texts[STEPS - 1] if len(texts) >= STEPS else ""
    accepted = ACCEPTED in submit
    count = STEPS + 1 if accepted else STEPS
    if len(texts) != count:
        wrong.append(f"{len(texts)} messages, expected {count}")
    for k, text in enumerate(texts[:count]):
        if k < STEPS - 1:
            missing = [e for e in want[k] if e not in text]
            if missing:
                wrong.append(f"message {k + 1} lacks {missing!r}")
        elif k == STEPS - 1 and not (accepted or CREATED.search(text)):
            wrong.append(f"message {k + 1} is not the submit's answer")
        elif k == STEPS and not NOTICE.search(text):
            wrong.append(f"message {k + 1} is not the ticket's number")
    return wrong


@dataclass
class Progress:
    submitted: int = 0
    kill_now: asyncio.Event = field(default_factory=asyncio.Event)


async def converse(vk: RunningVkEmulator, box: Mailbox, run: UserRun, progress: Progress) -> None:
    """One user's whole dialogue; the first thing that goes wrong is kept in run.failure."""
    rng = random.Random(SEED + run.n)
    user = vk.user(run.peer_id)
    await asyncio.sleep(run.n * RAMP_SECONDS / USERS)
    step = -1
    try:
        for step, (action, what, expect) in enumerate(script(run)):
            if what == "<code>":
                what = await box.code_for(run.email)
            # The switches apply to the next event published, which is this user's: say and press
            # publish it without awaiting anything in between.
            if rng.random() < DUPLICATE_SHARE:
                vk.duplicate_deliveries(1)
            if rng.random() < RESEND_SHARE:
                vk.delay_resend(1, rng.uniform(*RESEND_DELAY))
            posted = await (user.say(what) if action == "say" else user.press(what))
            run.events.append(posted.event_id)
            if step == STEPS - 1:
                progress.submitted += 1
                if progress.submitted == KILL_AFTER:
                    progress.kill_now.set()
            reply = (await user.wait_reply(timeout=REPLY_TIMEOUT)).text
            missing = [e for e in expect if e not in reply]
            if missing:
                raise AssertionError(f"the reply lacks {missing!r}: {reply[:300]!r}")
        if ACCEPTED in reply:
            run.accepted_only = True
            notice = (await user.wait_reply(timeout=NOTICE_TIMEOUT)).text
            if not NOTICE.search(notice):
                raise AssertionError(f"after «{ACCEPTED}» came {notice[:300]!r}, not the number")
        elif not CREATED.search(reply):
            raise AssertionError(f"the submit was answered {reply[:300]!r}")
    except Exception as exc:
        run.failure = f"step {step + 1}: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- what happened


@dataclass(frozen=True)
class Send:
    """One messages.send call VK accepted (a repeat of a random_id, which VK drops, included)."""

    peer_id: int
    random_id: int
    text: str
    worker: str  # whose token it came with
    at: float  # time.time()
    message_id: int  # the earlier message's id when VK dropped it as a repeat


@dataclass
class Evidence:
    workers: list[Worker]
    kill_wall: float = 0.0  # time.time() of the kill
    kill_loop: float = 0.0  # loop.time() of the kill, as DeliveryAttempt.at
    sends: list[Send] = field(default_factory=list)
    timeline: dict[str, float] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.url_name = {w.url: w.name for w in self.workers}
        self.token_name = {t: f"w{n}" for n in range(WORKERS) for t in tokens_of(n)}
        self.answered: dict[str, list[tuple[str, float]]] = collections.defaultdict(list)
        self.owner: dict[str, tuple[UserRun, int]] = {}

    def index(self, vk: RunningVkEmulator, runs: list[UserRun]) -> None:
        self.owner = {e: (run, k) for run in runs for k, e in enumerate(run.events)}
        for d in vk.deliveries:
            if d.event_id and d.accepted:
                self.answered[d.event_id].append((self.url_name.get(d.url, d.url), d.at - self.kill_loop))

    def event(self, event_id: str) -> str:
        run, k = self.owner.get(event_id, (None, -1))
        who = f"user {run.n} step {k + 1}" if run is not None else "no user's"
        took = ", ".join(f"{name} at kill{at:+.1f}s" for name, at in self.answered.get(event_id, [])) or "nobody"
        return f"event {event_id[:10]} ({who}; VK's delivery answered ok by {took})"

    def mailing_when_killed(self, run: UserRun) -> bool:
        """Whether the user's code step was in the killed worker's hands when it died: taken by it
        (VK's delivery answered ok) before the kill. If the mail server had taken the letter but
        the worker died before it heard so, the step handled again must send a second one: the
        bot cannot know the first went (SMTP has no way to ask), and a user with no code is
        worse off than one with two letters, the later of which counts."""
        event = run.events[EMAIL_STEP] if len(run.events) > EMAIL_STEP else None
        victim = self.workers[VICTIM].name
        return event is not None and any(name == victim and at < 0 for name, at in self.answered.get(event, []))

    def transcript(self, vk: RunningVkEmulator, run: UserRun) -> str:
        lines = [f"    step {k + 1}: {self.event(e)}" for k, e in enumerate(run.events)]
        for k, m in enumerate(vk.user(run.peer_id).replies):
            lines.append(f"    message {k + 1} from {self.token_name.get(m.token, '?')} at "
                         f"kill{m.at - self.kill_wall:+.1f}s: {m.text[:70]!r}")
        return "\n".join(lines)

    def dump(self, path: Path, vk: RunningVkEmulator, runs: list[UserRun]) -> None:
        users = []
        for run in runs:
            users.append({
                "n": run.n, "peer_id": run.peer_id, "failure": run.failure,
                "events": [{"id": e, "answered_ok_by": self.answered.get(e, [])} for e in run.events],
                "messages": [{"text": m.text, "random_id": m.random_id, "worker": self.token_name.get(m.token),
                              "at_after_kill": m.at - self.kill_wall} for m in vk.user(run.peer_id).replies],
            })
        sends = [{**asdict(s), "at": s.at - self.kill_wall} for s in self.sends]
        path.write_text(json.dumps({"seed": SEED, "timeline": self.timeline, "users": users, "sends": sends},
                                   ensure_ascii=False, indent=1))


# --------------------------------------------------------------------------- the test


async def test_three_workers_one_killed_serve_200_users_each_event_once(
        tmp_path: Path, database: str, vk: RunningVkEmulator, simpleone: RunningEmulator,
        mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    began = time.monotonic()
    base = {
        **bot_env(tmp_path, vk, simpleone, smtp_port),
        "SUPPORTBOT_DATABASE_URL": database,
        "VK_RATE_LIMIT": str(RATE_PER_TOKEN),
        "SPOOL_DIR": str(tmp_path / "spool"),  # one for all (this dialogue has no files anyway)
    }
    workers = [Worker(f"w{n}", free_port(), {**base, "VK_TOKEN": ",".join(tokens_of(n))}) for n in range(WORKERS)]
    evidence = Evidence(workers)
    accept = vk.state.send

    def recording_send(params: Mapping[str, str], token: str) -> Any:
        result = accept(params, token)
        evidence.sends.append(Send(int(params.get("peer_id", "0")), int(params["random_id"]), params.get("message", ""),
                                   evidence.token_name.get(token, "?"), time.time(), int(result)))
        return result

    vk.state.send = recording_send  # type: ignore[method-assign]

    migrate = await start(["migrate"], base, tmp_path)
    assert await migrate.wait() == 0, await stop(migrate)
    progress = Progress()
    runs = [UserRun(n, PEER_BASE + n, f"user{n}@ranepa.ru", f"Телефон в кабинете {n} не звонит наружу, заявка {n}")
            for n in range(USERS)]
    timeline = evidence.timeline
    settled = False
    async with aiohttp.ClientSession() as http:
        try:
            await asyncio.gather(*(launch(w, tmp_path, http) for w in workers))
            timeline["workers up"] = time.monotonic() - began
            await vk.use_callback(urls=[w.url for w in workers], secret=SECRET, confirmation_code=CONFIRMATION,
                                  workers=8)

            async def kill_and_restart() -> None:
                await progress.kill_now.wait()
                victim = workers[VICTIM]
                assert victim.proc is not None
                victim.proc.send_signal(signal.SIGKILL)
                await victim.proc.wait()
                evidence.kill_wall, evidence.kill_loop = time.time(), asyncio.get_running_loop().time()
                timeline["killed"] = time.monotonic() - began
                await asyncio.sleep(DOWN_SECONDS)
                await launch(victim, tmp_path, http)
                timeline["restarted"] = time.monotonic() - began

            killer = asyncio.create_task(kill_and_restart())
            await asyncio.gather(*(converse(vk, box, run, progress) for run in runs))
            timeline["dialogues done"] = time.monotonic() - began
            if not killer.done():
                killer.cancel()
            await asyncio.gather(killer, return_exceptions=True)
            assert "restarted" in timeline, f"the kill never happened ({progress.submitted} submitted)"
            settled = await settle(vk, database, evidence.sends)
            timeline["settled"] = time.monotonic() - began
        finally:
            await vk.use_long_poll()  # no more deliveries
            for w in workers:
                if w.proc is not None:
                    await stop(w.proc)
            for w in workers:
                for n, path in enumerate(w.logs, 1):
                    evidence.logs[f"{w.name}.{n}"] = path.read_text(errors="replace")
    timeline["stopped"] = time.monotonic() - began

    evidence.index(vk, runs)
    problems = await check(runs, vk, simpleone, box, database, evidence)
    if not settled:
        problems.append("the run did not settle: events, outbox items or notices were still pending")
    for w in workers:
        assert w.proc is not None
        if w.proc.returncode != 0:
            problems.append(f"{w.name} (last start) stopped with exit code {w.proc.returncode}")
    evidence.dump(tmp_path / "evidence.json", vk, runs)
    # What the workers said about it: warnings, errors, and what a start found to do.
    said = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) .*|.*(sent again|before a restart are being handled).*$",
                      re.MULTILINE)
    notes = [f"  {name}: {m.group(0)[:200]}" for name, text in evidence.logs.items() for m in said.finditer(text)]
    first_ids: dict[int, int] = {}
    repeats: collections.Counter[str] = collections.Counter()  # sends VK dropped as repeats, by worker
    for s in evidence.sends:
        if first_ids.setdefault(s.message_id, id(s)) != id(s):
            repeats[s.worker] += 1
    summary = (f"seed {SEED}; {USERS} users, {len(evidence.sends)} messages.send accepted "
               f"(repeats VK dropped: {dict(repeats) or 0}), {len(vk.deliveries)} callback requests "
               f"({sum(d.status is None for d in vk.deliveries)} without an answer); timeline (s): "
               + ", ".join(f"{k} {v:.1f}" for k, v in timeline.items())
               + f"\nevidence: {tmp_path / 'evidence.json'}; the workers' log said:\n"
               + "\n".join(notes[:40] or ["  (nothing of note)"]))
    print(summary)
    assert not problems, summary + f"\n{len(problems)} problem(s):\n" + "\n".join(problems)


async def settle(vk: RunningVkEmulator, dsn: str, sends: list[Send], within: float = 90.0) -> bool:
    """Wait until VK has delivered everything, the database has nothing pending (events, outbox
    items, notices) and no message has been sent for two seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    await vk.callback_idle(within=within)
    conn = await asyncpg.connect(dsn)
    try:
        while loop.time() < deadline:
            pending = await conn.fetchval(
                "SELECT (SELECT count(*) FROM inbox WHERE handled_at IS NULL)"
                " + (SELECT count(*) FROM outbox WHERE state = 'pending')"
                " + (SELECT count(*) FROM notices WHERE sent_at IS NULL)")
            sent = len(sends)
            await asyncio.sleep(2.0)
            if pending == 0 and len(sends) == sent:
                return True
        return False
    finally:
        await conn.close()


async def check(runs: list[UserRun], vk: RunningVkEmulator, simpleone: RunningEmulator, box: Mailbox, dsn: str,
                evidence: Evidence) -> list[str]:
    problems: list[str] = []

    # What each user saw: the dialogue's replies, in order, each once, then at most the number.
    tickets = simpleone.state.records("itsm_incident")
    for run in runs:
        texts = [m.text for m in vk.user(run.peer_id).replies]
        wrong = expected_replies(run, texts)
        told = [t for t in texts if NUMBER.search(t)]
        if len(told) != 1:
            wrong.append(f"learned a number {len(told)} times")
        mine = [t for t in tickets if run.text in t.get("description", "")]
        if len(mine) == 1 and told and mine[0]["number"] not in told[0]:
            wrong.append(f"was told {NUMBER.findall(told[0])}, their ticket is {mine[0]['number']}")
        letters = box.letters_to(run.email)
        if len(letters) != 1 and not (len(letters) == 2 and evidence.mailing_when_killed(run)):
            wrong.append(f"{len(letters)} sign-in letters to {run.email}")
        if run.failure:
            wrong.insert(0, f"the dialogue broke at {run.failure}")
        if wrong:
            problems.append(f"user {run.n}: " + "; ".join(wrong) + "\n" + evidence.transcript(vk, run))

    # Exactly one ticket per submit (a user whose dialogue broke earlier pressed «Отправить»
    # never), with their text and for them; SimpleOne has no others.
    submits = {run.n: int(len(run.events) == STEPS) for run in runs}
    for run in runs:
        mine = [t for t in tickets if run.text in t.get("description", "")]
        if len(mine) != submits[run.n]:
            problems.append(f"user {run.n}: {len(mine)} tickets with their description "
                            f"({[t.get('number') for t in mine]}) for {submits[run.n]} submit(s)")
            continue
        for ticket in mine:
            caller = simpleone.state.record("user", ticket.get("caller", ""))
            if caller is None or caller.get("email") != run.email:
                problems.append(f"user {run.n}: ticket {ticket['number']} is for {caller and caller.get('email')!r}")
    if len(tickets) != sum(submits.values()):
        problems.append(f"SimpleOne has {len(tickets)} tickets for {sum(submits.values())} submits")

    # A random_id sent again must carry the same text: another one means the event (or notice)
    # was stepped twice, and VK silently dropped the second answer.
    sent: dict[tuple[int, int], list[Send]] = collections.defaultdict(list)
    for s in evidence.sends:
        sent[(s.peer_id, s.random_id)].append(s)
    for (peer_id, _), same in sent.items():
        if len({s.text for s in same}) > 1:
            ways = [f"{s.worker} at kill{s.at - evidence.kill_wall:+.1f}s: {s.text[:60]!r}" for s in same]
            problems.append(f"peer {peer_id}: one random_id sent with different texts (VK kept the first): {ways}")

    # The database: every event recorded once and handled; nothing else; one outbox item per user.
    conn = await asyncpg.connect(dsn)
    try:
        inbox = await conn.fetch("SELECT event_id, handled_at FROM inbox")
        outbox = await conn.fetch("SELECT peer, state FROM outbox")
    finally:
        await conn.close()
    recorded = {r["event_id"]: r["handled_at"] for r in inbox}
    for event_id in evidence.owner:
        if event_id not in recorded:
            problems.append(f"{evidence.event(event_id)} is not in the inbox")
        elif recorded[event_id] is None:
            problems.append(f"{evidence.event(event_id)} was never handled")
    strays = set(recorded) - set(evidence.owner)
    if strays:
        problems.append(f"the inbox has {len(strays)} events nobody sent: {sorted(strays)[:5]}")
    items = collections.Counter(r["peer"] for r in outbox)
    for run in runs:
        if items[f"vk:{run.peer_id}"] != submits[run.n]:
            problems.append(f"user {run.n}: {items[f'vk:{run.peer_id}']} outbox items for {submits[run.n]} submit(s)")
    if any(r["state"] != "done" for r in outbox):
        problems.append(f"outbox states: {dict(collections.Counter(r['state'] for r in outbox))}")

    # The workers' own word: an event stepped by two of them, or any traceback.
    twice = re.compile(r"event (\S+) was handled by another writer")
    for name, text in evidence.logs.items():
        for event_id in twice.findall(text):
            problems.append(f"{name}: {evidence.event(event_id)} was stepped here too, after another worker had")
        if "Traceback" in text:
            problems.append(f"{name}: a traceback in the log:\n{text[text.index('Traceback'):][:2000]}")
    return problems
