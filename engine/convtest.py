"""Conversation tests: YAML scripts of what a user sends and what the bot must answer.

Support leads write them beside the flows (flows/tests/*.yaml); `flowlint test` runs them
through the real engine with the outside world provided by a ConversationWorld (the SimpleOne
emulator and a mail sink in process).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from jsonschema import Draft202012Validator

from engine import convreport as report
from engine.actions.context import AuthPolicy, Services
from engine.dialogue.runtime import Engine
from engine.flows.findings import Finding, nearest
from engine.flows.model import FlowSet
from engine.flows.schema import schema_findings
from engine.flows.source import StaticFlows
from engine.flows.yamlsrc import YamlDoc, load_yaml_file
from engine.load import collect_files
from engine.ports import (
    Binding,
    FileSpool,
    Incoming,
    IncomingFile,
    MailMessage,
    Notice,
    Storage,
    TicketSystem,
)
from engine.replies import Reply
from engine.work.outbox import OutboxPolicy
from engine.work.status_watch import StatusWatcher
from engine.work.ticket_outbox import ticket_outbox
from schema import FLOW_SCHEMA_PATH

CONVERSATION_SCHEMA_PATH = FLOW_SCHEMA_PATH.with_name("conversation.schema.json")
START_TIME = 1_800_000_000.0  # a fixed clock: runs are repeatable
_CODE = re.compile(r"\b(\d{6})\b")


class ConversationWorld(Protocol):
    """The outside world a conversation runs against; fresh for every test."""

    @property
    def tickets(self) -> TicketSystem: ...

    @property
    def spool(self) -> FileSpool: ...

    async def fresh_storage(self) -> Storage: ...

    def fresh_mail_sink(self) -> MailSink: ...

    async def control(self, spec: Mapping[str, Any]) -> None:
        """Change SimpleOne: {"outage": bool}, {"fail_next": n}, {"fail_every": n}, {"ticket_state": code},
        {"add_person": {"email", "first_name", "last_name", "table"}},
        {"agent_comment": text}, {"work_note": text} (an agent's, on the newest ticket)."""
        ...

    async def count_tickets(self, email: str) -> int: ...

    async def newest_ticket(self) -> tuple[str, list[str]] | None:
        """The state code and the public comments (oldest first) of the ticket created last."""
        ...

    async def reset(self) -> None: ...


@dataclass(slots=True)
class Step:
    data: dict[str, Any]
    line: int  # in the test's file (a fragment's steps: the line of the `use:` that brought them)
    origin: str = ""  # a fragment's step: which fragment, and where the step is written


@dataclass(slots=True)
class Conversation:
    name: str
    path: str
    line: int
    signed_in: str | None
    peer: str
    steps: list[Step]


@dataclass(slots=True)
class Outcome:
    test: Conversation
    failures: list[Finding] = field(default_factory=list)
    entered: set[str] = field(default_factory=set)  # the states the conversation went through

    @property
    def passed(self) -> bool:
        return not self.failures


class MailSink(Protocol):
    """A mailer that keeps what it was given: conversations read sign-in codes from it."""

    messages: list[MailMessage]

    async def send(self, message: MailMessage) -> None: ...


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(CONVERSATION_SCHEMA_PATH.read_text(encoding="utf-8")))


def load_conversations(paths: Sequence[Path]) -> tuple[list[Conversation], list[Finding]]:
    """The tests of the files named by paths, their `use:` steps replaced by the fragments they
    name: a file's own `fragments:`, and those of _fragments.yaml beside it (read even when only
    the file is named)."""
    files, findings = collect_files(paths)
    seen = {f.resolve() for f in files}
    for shared in dict.fromkeys(f.parent / SHARED_FRAGMENTS for f in files):
        if shared.is_file() and shared.resolve() not in seen:
            files.append(shared)
            seen.add(shared.resolve())
    docs: list[YamlDoc] = []
    for path in files:
        doc, problems = load_yaml_file(path)
        findings.extend(problems)
        if doc is None:
            continue
        errors = schema_findings(doc, _validator())
        findings.extend(errors)
        if not errors:
            docs.append(doc)
    shared_fragments: dict[str, Fragment] = {}
    for doc in docs:
        if Path(doc.path).name == SHARED_FRAGMENTS:
            _add_fragments(doc, shared_fragments, findings)
    tests: list[Conversation] = []
    for doc in docs:
        scope = dict(shared_fragments)
        if Path(doc.path).name != SHARED_FRAGMENTS:
            _add_fragments(doc, scope, findings)
        for i, item in enumerate(doc.data.get("tests", ())):
            raw = [(s, *doc.pos(("tests", i, "steps", j))) for j, s in enumerate(item["steps"])]
            steps = _Expander(scope, findings).expand(raw, doc.path)
            tests.append(Conversation(item["name"], doc.path, doc.pos(("tests", i))[0], item.get("signed_in"),
                                      item.get("peer", "test:user"), steps))
    return tests, findings


SHARED_FRAGMENTS = "_fragments.yaml"  # fragments every test file beside it may use
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
MAX_FRAGMENT_DEPTH = 8


@dataclass(slots=True)
class Fragment:
    """Named steps (`fragments:` in a test file) that a step `use: NAME` stands for."""

    name: str
    path: str
    line: int
    steps: list[tuple[dict[str, Any], int, int]]  # each step's data, line and column
    params: frozenset[str]  # its {placeholders}


def _add_fragments(doc: YamlDoc, scope: dict[str, Fragment], findings: list[Finding]) -> None:
    for name, steps in (doc.data.get("fragments") or {}).items():
        line, col = doc.pos(("fragments", name), key=True)
        first = scope.get(name)
        if first is not None:
            findings.append(Finding(doc.path, line, col, "F040", f"fragment '{name}' is already defined in "
                                    f"{first.path}:{first.line}"))
            continue
        raw = [(s, *doc.pos(("fragments", name, j))) for j, s in enumerate(steps)]
        scope[name] = Fragment(name, doc.path, line, raw, frozenset(_placeholders(steps)))


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return {p for k, v in value.items() if k != "use" for p in _placeholders(v)}
    if isinstance(value, list):
        return {p for v in value for p in _placeholders(v)}
    return set()


def _fill(value: Any, args: Mapping[str, Any]) -> Any:
    """value with each {name} of args replaced by its value (a text that is one placeholder takes
    the value as it is, a number stays a number)."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole and whole[1] in args:
            return args[whole[1]]
        return _PLACEHOLDER.sub(lambda m: str(args[m[1]]) if m[1] in args else m[0], value)
    if isinstance(value, dict):
        return {k: _fill(v, args) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, args) for v in value]
    return value


class _Expander:
    """`use:` steps replaced by their fragments' steps, findings for those that cannot be."""

    def __init__(self, scope: Mapping[str, Fragment], findings: list[Finding]) -> None:
        self.scope = scope
        self.findings = findings

    def expand(self, raw: Sequence[tuple[dict[str, Any], int, int]], path: str, at: int | None = None,
               origin: Fragment | None = None, chain: tuple[str, ...] = ()) -> list[Step]:
        """raw: steps written in path (data, line, column); at: the line in the test's file that
        stands for them all (they come from fragment `origin`)."""
        out: list[Step] = []
        for data, line, col in raw:
            if "use" not in data:
                where = f"fragment {origin.name}, {origin.path}:{line}" if origin else ""
                out.append(Step(data, line if at is None else at, where))
                continue
            fragment = self.fragment(data, path, line, col, chain)
            if fragment is None:
                continue
            args = dict(data.get("with") or {})
            filled = [(_fill(d, args), n, c) for d, n, c in fragment.steps]
            steps = self.expand(filled, fragment.path, line if at is None else at, fragment, (*chain, fragment.name))
            if steps and "expect" in data:
                last = steps[-1]
                steps[-1] = Step({**last.data, "expect": {**(last.data.get("expect") or {}), **data["expect"]}},
                                 last.line, last.origin)
            out.extend(steps)
        return out

    def fragment(self, data: Mapping[str, Any], path: str, line: int, col: int,
                 chain: tuple[str, ...]) -> Fragment | None:
        name = str(data["use"])
        fragment = self.scope.get(name)
        problem = ""
        if fragment is None:
            close = difflib.get_close_matches(name, list(self.scope), n=1)
            known = ", ".join(sorted(self.scope)) or f"none: define them under `fragments:` or in {SHARED_FRAGMENTS}"
            problem = (f"unknown fragment '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
                       + f" (fragments: {known})")
        elif name in chain or len(chain) >= MAX_FRAGMENT_DEPTH:
            problem = f"fragment '{name}' uses itself (through {' → '.join(chain)})"
        else:
            given = set(data.get("with") or {})
            if given - fragment.params:
                problem = (f"fragment '{name}' has no placeholder {', '.join(sorted(given - fragment.params))} "
                           f"(it has: {', '.join(sorted(fragment.params)) or 'none'})")
            elif fragment.params - given:
                problem = f"fragment '{name}' needs with: {', '.join(sorted(fragment.params - given))}"
        if problem:
            self.findings.append(Finding(path, line, col, "T002", problem))
            return None
        return fragment


class Runner:
    def __init__(self, flow_set: FlowSet, world: ConversationWorld, *,
                 auth: AuthPolicy | None = None, idle_timeout: float = 1800.0) -> None:
        self.flow_set = flow_set
        self.world = world
        self.auth = auth or AuthPolicy()
        self.idle_timeout = idle_timeout

    async def run(self, test: Conversation) -> Outcome:
        outcome = Outcome(test)
        await self.world.reset()
        storage = await self.world.fresh_storage()
        now = [START_TIME]
        mailer = self.world.fresh_mail_sink()
        services = Services(storage, self.world.tickets, mailer, self.world.spool, self.auth,
                            clock=lambda: now[0], idle_timeout=self.idle_timeout)
        flows = StaticFlows(self.flow_set)
        # The worker runs as in the bot; after each step it also catches up with the test's
        # clock, so that retries a `wait_minutes` made due happen before the expectations.
        worker = ticket_outbox(services, flows, OutboxPolicy(tell_grace=0.0))
        # The ticket watcher too (status changes, agents' comments): one round after each step.
        watcher = StatusWatcher(storage, self.world.tickets, flows, clock=lambda: now[0])
        engine = Engine(flows, services)
        working = asyncio.create_task(worker.run())
        try:
            if test.signed_in:
                person = await self.world.tickets.find_person(test.signed_in, self.flow_set.tickets.people_tables)
                if person is None:
                    raise AssertionError(f"no SimpleOne user {test.signed_in} to sign in")
                await storage.put_binding(Binding(test.peer, test.signed_in, person.sys_id, person.name, now[0]))
            # The user starts in front of the first screen, as in a chat window that is open.
            opening = await engine.handle(test.peer, Incoming())
            last: Reply | None = opening[-1] if opening else None
            told: list[Notice] = []  # the last step's notices: their buttons can be pressed next
            for n, step in enumerate(test.steps, 1):
                fail = _failer(outcome, test, step, n)
                mails_before = len(mailer.messages)
                incoming = await self._incoming(step.data, last, mailer, fail, told)
                if incoming is None:
                    break
                if isinstance(incoming, Incoming):
                    replies = await engine.handle(test.peer, incoming)
                    last = replies[-1] if replies else last
                now[0] += float(step.data.get("wait_minutes", 0)) * 60
                await worker.drain()
                await watcher.run_once()
                notices = [n for n in await storage.notices_unsent(1000) if n.peer == test.peer]
                await storage.notices_sent([n.id for n in notices])
                told = notices or told
                await self._check(step.data.get("expect") or {}, last, mailer, mails_before, test, fail,
                                  [n.text for n in notices])
        finally:
            working.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await working
            outcome.entered = set(engine.entered)
            await storage.close()
        return outcome

    async def _incoming(self, data: Mapping[str, Any], last: Reply | None, mailer: MailSink,
                        fail: Callable[[str], None], told: Sequence[Notice] = ()) -> Incoming | _Skip | None:
        """What the user does in this step; _SKIP for steps that only change the world."""
        if "simpleone" in data:
            await self.world.control(data["simpleone"])
            return _SKIP
        if "wait_minutes" in data and len(data) <= 2:
            return _SKIP
        if "send" in data:
            return Incoming(text=str(data["send"]))
        if "press" in data:
            label = str(data["press"])
            shown = last.buttons if last else []
            for row in shown:
                for button in row:
                    if button.label == label:
                        return Incoming(text=button.label, payload=button.payload)
            # A button under a notice (the newest notice first), as in VK's inline keyboards.
            for notice in reversed(told):
                for notice_row in notice.buttons:
                    for button in notice_row:
                        if button.label == label:
                            return Incoming(text=button.label, payload=button.payload)
            lines = report.shown(last.buttons if last else [])
            for notice in told:
                lines += report.shown(notice.buttons, "under a notice:")
            near = nearest(label, [*_labels(last), *(b.label for n in told for r in n.buttons for b in r)])
            fail(report.detail(f"no button '{label}' to press" + (f" (did you mean '{near}'?)" if near else "")
                               + "; the test stops here", lines))
            return None
        if "code" in data:
            for message in reversed(mailer.messages):
                found = _CODE.search(message.body)
                if found:
                    return Incoming(text=found.group(1))
            fail("no mail with a 6-digit code was sent")
            return None
        if "attach" in data:
            files = [IncomingFile(f["name"], f.get("mime", "application/octet-stream"),
                                  b"\0" * int(f.get("size", 1024))) for f in data["attach"]]
            return Incoming(text=str(data.get("text", "")), files=files)
        if "sticker" in data:
            return Incoming(unsupported=["sticker"])
        if "payload" in data:
            return Incoming(text=str(data.get("text", "")), payload=str(data["payload"]))
        return Incoming()

    async def _check(self, expect: Mapping[str, Any], reply: Reply | None, mailer: MailSink,
                     mails_before: int, test: Conversation, fail: Callable[[str], None],
                     notices: Sequence[str] = ()) -> None:
        text = reply.text if reply else ""
        labels = reply.labels() if reply else []
        rows = reply.buttons if reply else []
        whole = ["the reply:", *report.reply_block(text)]  # shown once, under the step's first failure
        for fragment in _list(expect.get("says")):
            if fragment.casefold() not in text.casefold():
                fail(report.detail(f"the reply does not say '{fragment}'", [*report.missing(fragment, text), *whole]))
                whole = []
        for fragment in _list(expect.get("not_says")):
            if fragment.casefold() in text.casefold():
                fail(report.detail(f"the reply says '{fragment}', which it must not", ["the reply:",
                                   *report.reply_block(text, fragment)]))
        absent = [label for label in _list(expect.get("buttons")) if label not in labels]
        if absent:
            fail(report.detail("no button " + ", ".join(f"'{label}'" for label in absent),
                               report.buttons(_list(expect.get("buttons")), rows)))
        present = [label for label in _list(expect.get("no_buttons")) if label in labels]
        if present:
            fail(report.detail("a button that must not be shown: " + ", ".join(f"'{label}'" for label in present),
                               report.shown(rows)))
        if "mail" in expect:
            sent = len(mailer.messages) > mails_before
            if sent != bool(expect["mail"]):
                fail("expected a mail to be sent" if expect["mail"] else "expected no mail to be sent")
        if "notices" in expect:
            wanted = _list(expect["notices"])
            if not wanted and notices:
                fail(f"expected no notice, got: {[_short(n) for n in notices]}")
            for fragment in wanted:
                if not any(fragment.casefold() in n.casefold() for n in notices):
                    fail(f"expected a notice containing '{fragment}', got: {[_short(n) for n in notices]}")
        if "ticket_state" in expect or "ticket_comments" in expect:
            newest = await self.world.newest_ticket()
            if newest is None:
                fail("expected a ticket in SimpleOne, there is none")
            else:
                state, comments = newest
                if "ticket_state" in expect and state != str(expect["ticket_state"]):
                    fail(f"expected the ticket's state {expect['ticket_state']!r} in SimpleOne, it is {state!r}")
                for fragment in _list(expect.get("ticket_comments")):
                    if not any(fragment.casefold() in c.casefold() for c in comments):
                        fail(f"expected a public comment containing '{fragment}' on the ticket, got: "
                             f"{[_short(c) for c in comments]}")
        if "tickets" in expect:
            email = test.signed_in or _last_recipient(mailer)
            count = await self.world.count_tickets(email) if email else 0
            if count != int(expect["tickets"]):
                fail(f"expected {expect['tickets']} ticket(s) in SimpleOne for {email}, found {count}")


class _Skip:
    pass


_SKIP = _Skip()


def _failer(outcome: Outcome, test: Conversation, step: Step, n: int) -> Callable[[str], None]:
    def fail(message: str) -> None:
        via = f" ({step.origin})" if step.origin else ""
        outcome.failures.append(Finding(test.path, step.line, 1, "T001", f"'{test.name}' step {n}{via}: {message}"))

    return fail


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _labels(reply: Reply | None) -> list[str]:
    return reply.labels() if reply else []


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= 300 else flat[:297] + "...")


def _last_recipient(mailer: MailSink) -> str | None:
    return mailer.messages[-1].to if mailer.messages else None


async def run_all(flow_set: FlowSet, tests: Sequence[Conversation], world: ConversationWorld,
                  progress: Callable[[Outcome], Awaitable[None] | None] | None = None,
                  **options: Any) -> list[Outcome]:
    runner = Runner(flow_set, world, **options)
    outcomes = []
    for test in tests:
        outcome = await runner.run(test)
        outcomes.append(outcome)
        if progress is not None:
            result = progress(outcome)
            if result is not None:
                await result
    return outcomes
