"""Properties over open inputs: whatever a user sends in whatever step, the engine answers,
never raises, and the way back to the menu stays open. And flowlint survives any YAML."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.storage.sqlite import open_sqlite
from emulators.mail_sink import MemoryMailSink
from engine.actions.context import AuthPolicy, Services
from engine.convtest import START_TIME
from engine.dialogue.runtime import Engine
from engine.flows.source import StaticFlows
from engine.load import load_flow_set
from engine.ports import Binding, Incoming, IncomingFile, Session
from supportbot.conversation_world import EmulatorWorld
from tests.log_records import ErrorRecords

FLOWS = Path(__file__).resolve().parents[3] / "flows"

RICH_SLOTS = {
    "service": {"id": "wifi", "name": "Беспроводная сеть (Wi-Fi)", "group": "Сетевая инфраструктура",
                "group_id": "network_infrastructure"},
    "description": "Пропадает Wi-Fi в корпусе 2",
    "files": [],
    "tickets": [{"number": "INC0000001", "subject": "s", "status": "В работе", "table": "itsm_incident",
                 "sys_id": "166031411802010329", "created": "2026-01-01 10:00:00", "updated": "2026-01-01 10:00:00"}],
    "ticket": {"number": "INC0000001", "subject": "s", "status": "В работе", "table": "itsm_incident",
               "sys_id": "166031411802010329"},
    "auth": {"email": "p@ranepa.ru", "minutes": 10, "attempts_left": 3, "wait_seconds": 5},
    "email": "p@ranepa.ru",
}

texts = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["Назад", "Отмена", "Главное меню", "Помощь", "Начать", "Выйти", "Далее", "1", "2", "13", "99",
                     "0", "-1", "Готово", "Без файлов", "Отправить", "p@ranepa.ru", "123456", "{user.email}", ""]),
    st.integers(-5, 200).map(str),
)
payloads = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.builds(lambda e, i: json.dumps({"e": e, "i": i}),
              st.sampled_from(["pick", "menu", "back", "submit", "done", "pick_next", "pick_up", "x"]),
              st.one_of(st.none(), st.integers(-3, 100), st.text(max_size=3))),
)
files = st.lists(st.builds(lambda n, s: IncomingFile(n, "image/png", b"x" * s),
                           st.sampled_from(["a.png", "b.exe", "c", "d.PDF", "../../etc/passwd"]),
                           st.integers(0, 3000)), max_size=3)
incomings = st.builds(
    lambda t, p, f, u: Incoming(text=t, payload=p, files=f, unsupported=u),
    texts, payloads, files, st.lists(st.sampled_from(["sticker", "audio_message"]), max_size=1),
)


def test_any_input_in_any_state_is_answered_and_the_menu_stays_reachable() -> None:
    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    states = sorted(flow_set.states)
    loop = asyncio.new_event_loop()
    errors = ErrorRecords()
    logging.getLogger("engine").addHandler(errors)
    try:
        world = loop.run_until_complete(EmulatorWorld.start(flow_set.tickets.tables))
        storage = loop.run_until_complete(open_sqlite(":memory:"))
        person = loop.run_until_complete(world.tickets.find_person("p@ranepa.ru"))
        assert person is not None
        services = Services(storage, world.tickets, MemoryMailSink(), world.spool, AuthPolicy(),
                            clock=lambda: START_TIME)
        engine = Engine(StaticFlows(flow_set), services)
        counter = iter(range(10**9))

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.sampled_from(states), st.booleans(), st.lists(incomings, min_size=1, max_size=4))
        def check(state: str, signed_in: bool, events: list[Incoming]) -> None:
            peer = f"prop:{next(counter)}"
            errors.records.clear()  # each example answers for its own log

            async def run() -> None:
                if signed_in:
                    await storage.put_binding(Binding(peer, "p@ranepa.ru", person.sys_id, "P", START_TIME))
                slots = json.loads(json.dumps(RICH_SLOTS))
                start = Session(peer, state, slots, flow_set.version, START_TIME, 0)
                assert await storage.commit_step(_commit(start))
                for incoming in events:
                    replies = await engine.handle(peer, incoming)
                    assert len(replies) == 1 and replies[0].text.strip()
                    for row in replies[0].buttons:
                        assert 0 < len(row) <= 5
                replies = await engine.handle(peer, Incoming(text="Главное меню"))
                assert engine.sessions._cache[peer].state == flow_set.bot.start, replies

            loop.run_until_complete(run())
            assert not errors.records, [r.getMessage() for r in errors.records]

        try:
            check()
        finally:  # an open SQLite worker thread would keep the test process from exiting
            loop.run_until_complete(storage.close())
            loop.run_until_complete(world.close())
    finally:
        logging.getLogger("engine").removeHandler(errors)
        loop.close()


def _commit(session: Session) -> object:
    from engine.ports import StepCommit

    return StepCommit(session, 0)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["flow", "start", "states", "say", "on", "to", "buttons", "label", "event", "input", "kind",
                         "slot", "pick", "from", "catalog", "groups", "entries", "bot", "simpleone", "x"]),
        inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=300), yaml_values.map(lambda v: yaml.safe_dump(v, allow_unicode=True))))
def test_flowlint_never_raises_on_arbitrary_yaml(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "broken.yaml").write_text(text, encoding="utf-8")
        result = load_flow_set([Path(tmp)])
        # One lone file is never a whole flow set: there must be findings, each with a place.
        assert result.flow_set is None and result.findings
        assert all(f.line >= 1 and f.col >= 1 and f.code.startswith("F") for f in result.findings)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(sorted(p.name for p in FLOWS.glob("*.yaml"))))
def test_flowlint_never_raises_on_mangled_real_flows(seed: int, victim: str) -> None:
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        for path in FLOWS.glob("*.yaml"):
            text = path.read_text(encoding="utf-8")
            if path.name == victim:
                lines = text.splitlines()
                for _ in range(rnd.randint(1, 4)):
                    i = rnd.randrange(len(lines))
                    op = rnd.choice(["drop", "dup", "swap", "char"])
                    if op == "drop":
                        lines.pop(i)
                    elif op == "dup":
                        lines.insert(i, lines[i])
                    elif op == "swap":
                        j = rnd.randrange(len(lines))
                        lines[i], lines[j] = lines[j], lines[i]
                    elif lines[i]:
                        k = rnd.randrange(len(lines[i]))
                        lines[i] = lines[i][:k] + rnd.choice("{}[]:-&*!|>'\" \tx") + lines[i][k + 1:]
                    if not lines:
                        break
                text = "\n".join(lines)
            Path(tmp, path.name).write_text(text, encoding="utf-8")
        result = load_flow_set([Path(tmp)])
        for finding in result.findings:
            assert finding.line >= 1 and finding.code.startswith("F")


