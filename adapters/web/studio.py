"""The studio's state behind the page: the flows in force and their findings, one simulated
user talking to the real engine, what the bot sent unasked, and the steps to save as a test.

The wiring (supportbot/studio_cli.py) builds the bot as `supportbot chat` does and hands its
parts in; this module knows no emulator and no command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.convtest import Outcome, load_conversations
from engine.flows.findings import Finding, Severity
from engine.flows.model import SayPart
from engine.load import LoadResult
from engine.ports import Incoming, IncomingFile, MailMessage, Storage
from engine.reload import FlowHolder
from engine.replies import Button, Reply

log = logging.getLogger(__name__)

Handler = Callable[[str, Incoming], Awaitable[list[Reply]]]
AgentConsole = Callable[[str], str]
# Runs the conversation tests of flows/tests/ against the flow set in force: outcomes, and the
# problems of test files that could not be read.
TestRunner = Callable[[FlowHolder], Awaitable[tuple[list[Outcome], list[Finding]]]]

PEER_PREFIX = "studio:"
SAVED_TESTS = "studio.yaml"
_CODE = re.compile(r"\b(\d{6})\b")
# What differs from one run to the next (a ticket's number, a sign-in code): not expected in a saved test.
_VOLATILE = re.compile(r"\b[A-Z]{2,6}\d{5,}\b|\b\d{6}\b")
_QUOTED = re.compile(r"'(.+)'")  # the expected words quoted in a report's summary line
_GOT = re.compile(r"^(?P<expected>.*?),? (?:got|shown|found|it is)[: ] ?(?P<got>.*)$", re.S)


def finding_line(f: Finding) -> str:
    """A finding in flowlint's words (supportbot/flowlint_cli.py prints the same)."""
    prefix = "warning: " if f.severity is Severity.WARNING else ""
    return f"{f.path}:{f.line}:{f.col}: {f.code} {prefix}{f.message}"


def say_text(parts: Sequence[SayPart]) -> str:
    """What a state says, as written in its YAML (templates unrendered)."""
    lines: list[str] = []
    for part in parts:
        guard = "".join([f" [если {', '.join(part.when)}]" if part.when else "",
                         f" [если нет {', '.join(part.unless)}]" if part.unless else ""])
        if part.each:
            lines.append(f"[для каждого из {part.each}]{guard}")
            lines.extend("  " + line for line in say_text(part.parts).splitlines())
        else:
            lines.append(part.template.source + guard)
    return "\n".join(lines)


def button_data(b: Button) -> dict[str, Any]:
    return {"label": b.label, "payload": b.payload, "color": b.color}


class StudioMailer:
    """The studio's mail: letters shown in the conversation, never sent anywhere."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.messages: list[MailMessage] = []

    async def send(self, message: MailMessage) -> None:
        self.messages.append(message)
        self.studio.add("letter", f"Письмо на {message.to}\nТема: {message.subject}\n\n{message.body.rstrip()}")


@dataclass(slots=True)
class Studio:
    flows: FlowHolder
    handle: Handler
    storage: Storage
    flows_dir: Path
    run_tests_with: TestRunner
    agent: AgentConsole | None = None
    # What the page says about where tickets and letters go: (text, real); real ones in red.
    safety: list[tuple[str, bool]] = field(default_factory=list)
    last: LoadResult | None = None  # the newest load: its findings, valid or refused
    refused: bool = False  # the newest files were refused; the flows in force are older
    items: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)  # the conversation as test steps
    peer_number: int = 1
    mailer: StudioMailer | None = None
    listeners: set[asyncio.Queue[str]] = field(default_factory=set)
    _seq: int = 0
    _tests_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def peer(self) -> str:
        return f"{PEER_PREFIX}{self.peer_number}"

    # --- events for the page -------------------------------------------------------------
    def publish(self, kind: str) -> None:
        for queue in self.listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(kind)

    def add(self, kind: str, text: str, buttons: Sequence[Sequence[Button]] = (), inline: bool = False) -> None:
        self._seq += 1
        self.items.append({"seq": self._seq, "kind": kind, "text": text, "inline": inline,
                           "buttons": [[button_data(b) for b in row] for row in buttons]})
        del self.items[:-500]  # a long session keeps its last 500 messages
        self.publish("chat")

    # --- the flows ----------------------------------------------------------------------
    async def reload(self) -> LoadResult:
        result = await self.flows.reload()
        self.last = result
        self.refused = result.flow_set is None
        self.publish("flows")
        return result

    async def watch(self, interval: float = 0.2) -> None:
        """Reload as soon as a flow file changes (the holder's own fingerprint of the files)."""
        seen = self.flows.fingerprint()
        while True:
            await asyncio.sleep(interval)
            try:
                now = self.flows.fingerprint()
                if now != seen:
                    seen = now
                    await self.reload()
            except Exception:
                log.exception("watching the flows failed; trying again")

    def findings(self) -> dict[str, Any]:
        found = self.last.findings if self.last else []
        return {
            "refused": self.refused,
            "version": self.flows.current.version,
            "errors": sum(f.severity is Severity.ERROR for f in found),
            "warnings": sum(f.severity is Severity.WARNING for f in found),
            "findings": [{**f.as_dict(), "text": finding_line(f)} for f in found],
        }

    def state_info(self, name: str) -> dict[str, Any] | None:
        spec = self.flows.current.states.get(name)
        if spec is None:
            return None
        return {
            "state": name,
            "file": spec.where.path,
            "line": spec.where.line,
            "text": say_text(spec.say),
            "buttons": [[b.label for b in row] for row in spec.buttons],
            "input": {"kind": spec.input.kind, "slot": spec.input.slot} if spec.input else None,
            "pick": spec.pick.source if spec.pick else None,
            "on": {event: [t.to for t in alternatives] for event, alternatives in spec.on.items()},
        }

    # --- the conversation ---------------------------------------------------------------
    async def session(self, since: int = 0) -> dict[str, Any]:
        stored = await self.storage.load_session(self.peer)
        return {
            "peer": self.peer,
            "state": stored.state if stored else None,
            "slots": json.loads(json.dumps(stored.slots, default=str)) if stored else {},
            "items": [i for i in self.items if i["seq"] > since],
            "steps": len(self.steps),
        }

    async def restart(self) -> None:
        """A new user from scratch: a fresh session, not signed in, an empty test."""
        self.peer_number += 1
        self.items.clear()
        self.steps.clear()
        self.add("system", "Новый разговор")
        await self._send(Incoming(), None)

    async def chat(self, data: dict[str, Any]) -> None:
        text = str(data.get("text") or "")
        payload = data.get("payload")
        files = [IncomingFile(str(f["name"]), str(f.get("mime") or "application/octet-stream"), f["data"])
                 for f in data.get("files") or []]
        step: dict[str, Any]
        if isinstance(payload, str):
            label = str(data.get("label") or text)
            step = {"press": label}
            self.add("user", label)
            await self._send(Incoming(text=label, payload=payload), step)
            return
        if files:
            step = {"attach": [{"name": f.name, "size": len(f.data), "mime": f.mime} for f in files]}
            if text:
                step["text"] = text
            self.add("user", "\n".join([*(f"Файл {f.name} ({len(f.data)} байт)" for f in files), text]).strip())
            await self._send(Incoming(text=text, files=files), step)
            return
        letters = self.mailer.messages if self.mailer else []
        codes = _CODE.findall(letters[-1].body) if letters else []
        step = {"code": True} if text.strip() in codes else {"send": text}
        self.add("user", text)
        await self._send(Incoming(text=text), step)

    async def _send(self, incoming: Incoming, step: dict[str, Any] | None) -> None:
        try:
            replies = await self.handle(self.peer, incoming)
        except Exception as exc:
            log.exception("the engine failed on a studio message")
            self.add("system", f"Бот упал: {type(exc).__name__}. Подробности — в журнале studio.")
            return
        for reply in replies:
            self.add("bot", reply.text, reply.buttons, reply.inline)
        if step is not None:
            said = next((line.strip() for r in replies[-1:] for line in r.text.splitlines() if line.strip()), "")
            if said and not _VOLATILE.search(said):
                step["expect"] = {"says": said[:80]}
            self.steps.append(step)

    def act_as_agent(self, action: str, value: str) -> str:
        """An agent's comment, note or new state on the newest ticket in the in-process SimpleOne."""
        if self.agent is None:
            return "Агент доступен только со встроенным эмулятором SimpleOne."
        if action == "command":
            answer = self.agent(value)
        else:
            listing = self.agent("list").strip().splitlines()
            if not listing or listing[0].startswith("no tickets"):
                return "Заявок пока нет: сначала создайте заявку в симуляторе."
            ticket = listing[-1].split()[0]
            answer = self.agent(f"{action} {ticket} {value}")
            if answer.startswith("ok"):
                key = {"comment": "agent_comment", "note": "work_note", "state": "ticket_state"}[action]
                self.steps.append({"simpleone": {key: value}})
        self.add("agent", answer)
        return answer

    async def pass_notices(self) -> int:
        """The notices the bot has for the studio's users, shown in the conversation."""
        notices = [n for n in await self.storage.notices_unsent(100) if n.peer.startswith(PEER_PREFIX)]
        for notice in notices:
            if notice.peer == self.peer:
                self.add("notice", notice.text, notice.buttons, inline=True)
        if notices:
            await self.storage.notices_sent([n.id for n in notices])
        return len(notices)

    async def show_notices(self, every: float = 0.3) -> None:
        while True:
            try:
                await self.pass_notices()
            except Exception:
                log.exception("reading notices failed")
            await asyncio.sleep(every)

    # --- conversation tests -------------------------------------------------------------
    async def run_tests(self) -> dict[str, Any]:
        async with self._tests_lock:
            started = time.perf_counter()
            outcomes, problems = await self.run_tests_with(self.flows)
        return {
            "passed": sum(o.passed for o in outcomes),
            "failed": sum(not o.passed for o in outcomes),
            "seconds": round(time.perf_counter() - started, 1),
            "problems": [finding_line(f) for f in problems],
            "tests": [{"name": o.test.name, "where": f"{o.test.path}:{o.test.line}", "passed": o.passed,
                       "failures": [failure_data(f) for f in o.failures]} for o in outcomes],
        }

    def test_yaml(self, name: str) -> str:
        test: dict[str, Any] = {"name": name or "разговор из studio", "steps": self.steps or [{"show": True}]}
        text = yaml.safe_dump([test], allow_unicode=True, sort_keys=False, width=120)
        return "".join("  " + line if line.strip() else line for line in text.splitlines(keepends=True))

    def save_test(self, name: str) -> dict[str, Any]:
        """Append this conversation to flows/tests/studio.yaml; the file is checked as flowlint would."""
        block = self.test_yaml(name)
        path = self.flows_dir / "tests" / SAVED_TESTS
        path.parent.mkdir(parents=True, exist_ok=True)
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        head = before if before else "# Разговоры, сохранённые из supportbot studio.\ntests:\n"
        if head and not head.endswith("\n"):
            head += "\n"
        path.write_text(head + block, encoding="utf-8")
        _tests, problems = load_conversations([path])
        if problems:  # leave the file as it was
            if before:
                path.write_text(before, encoding="utf-8")
            else:
                path.unlink()
        return {"path": str(path), "yaml": block, "problems": [finding_line(f) for f in problems],
                "saved": not problems}


def failure_data(f: Finding) -> dict[str, Any]:
    """A failed step, with its expectation and what came instead where the words tell them apart:
    flowlint's report (engine/convreport.py) is a summary line, details, and the whole reply as
    lines starting with "| "; older one-line messages read "expected …, got: …"."""
    data: dict[str, Any] = {"text": finding_line(f), "where": f"{f.path}:{f.line}", "message": f.message}
    summary, *details = f.message.splitlines()
    reply = [line.strip()[2:] for line in details if line.strip().startswith("| ")]
    if reply:
        quoted = _QUOTED.search(summary)
        data["expected"] = quoted.group(1) if quoted else summary
        data["got"] = "\n".join(reply)
        return data
    found = _GOT.match(f.message)
    if found:
        data["expected"], data["got"] = found["expected"], found["got"]
    return data
