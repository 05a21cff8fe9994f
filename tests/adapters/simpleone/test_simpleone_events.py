"""Push from SimpleOne over real HTTP: POST /simpleone/events on an aiohttp server on loopback,
the SimpleOne emulator over HTTP, the real client, SQLite and the status watcher. An event only
makes the bot look; a forged, malformed or duplicate one changes nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig
from adapters.simpleone.events import EVENTS_PATH, MAX_BODY, SECRET_HEADER, RefusalLog, add_events_route
from adapters.storage.sqlite import SqliteStorage, open_sqlite
from emulators.simpleone.server import RunningEmulator
from emulators.simpleone.state import ManualClock
from engine.flows.model import FlowSet
from engine.flows.source import StaticFlows
from engine.ports import Binding, WatchedTicket
from engine.work.status_watch import StatusWatcher
from tests.http_served import served
from tests.simpleone_fixtures import PASSWORD, USERNAME

INC = "itsm_incident"
PEER = "vk:100"
SECRET = "push-secret-0123456789-abcdef"



@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    opened = await open_sqlite(tmp_path / "db")
    await opened.put_binding(Binding(PEER, "100@ranepa.ru", "caller-1", "Caller", 0.0))
    yield opened
    await opened.close()


@pytest.fixture
async def endpoint(storage: SqliteStorage, flow_set: FlowSet) -> AsyncIterator[str]:
    app = web.Application()
    add_events_route(app, storage, StaticFlows(flow_set), secret=SECRET)
    async with served(app) as port:
        yield f"http://127.0.0.1:{port}{EVENTS_PATH}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def watcher(storage: SqliteStorage, emulator: RunningEmulator, flow_set: FlowSet,
                  clock: ManualClock) -> AsyncIterator[StatusWatcher]:
    client = SimpleOneClient(SimpleOneConfig(emulator.url, username=USERNAME, password=PASSWORD, read_timeout=5))
    yield StatusWatcher(storage, client, StaticFlows(flow_set), interval=3600,
                        clock=lambda: clock.now.timestamp())
    await client.close()


async def followed_ticket(emulator: RunningEmulator, storage: SqliteStorage, watcher: StatusWatcher) -> str:
    """A ticket of PEER's, followed, and looked at once (its journal cursor set)."""
    sys_id = emulator.state.add_record(INC, {"subject": "Не печатает принтер", "caller": "caller-1"})
    record = emulator.state.record(INC, sys_id)
    assert record is not None
    await storage.watch_add([WatchedTicket(INC, sys_id, record["number"], PEER, record["state"],
                                           record["sys_updated_at"])])
    await watcher.run_once()
    return sys_id


def event(sys_id: str, kind: str = "comment_added", table: str = INC) -> dict[str, str]:
    return {"event": kind, "table": table, "sys_id": sys_id}


async def post(http: aiohttp.ClientSession, url: str, body: Any, *, secret: str | None = SECRET,
               raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    data = raw if raw is not None else json.dumps(body).encode()
    async with http.post(url, data=data, headers=headers) as answer:
        text = await answer.text()
        try:
            return answer.status, json.loads(text)
        except ValueError:
            return answer.status, text


async def test_an_event_makes_the_watcher_tell_an_agents_comment_at_once(
        emulator: RunningEmulator, storage: SqliteStorage, watcher: StatusWatcher, endpoint: str,
        http: aiohttp.ClientSession) -> None:
    sys_id = await followed_ticket(emulator, storage, watcher)
    task = asyncio.create_task(watcher.run())  # a round now; the next one is an hour away
    try:
        for _ in range(500):
            if watcher.rounds == 2:
                break
            await asyncio.sleep(0.01)
        emulator.state.act_as_agent("comment", sys_id, "Подскажите номер кабинета")
        start = time.monotonic()
        assert await post(http, endpoint, event(sys_id)) == (200, {"ok": True})
        while not await storage.notices_unsent():
            assert time.monotonic() - start < 5, "not told"
            await asyncio.sleep(0.01)
        waited = time.monotonic() - start
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert waited < 2.0  # one look for pokes a second
    (notice,) = await storage.notices_unsent()
    assert notice.peer == PEER and "Подскажите номер кабинета" in notice.text
    assert watcher.poked_rounds == 1


async def test_a_duplicate_event_tells_nothing_twice(
        emulator: RunningEmulator, storage: SqliteStorage, watcher: StatusWatcher, endpoint: str,
        http: aiohttp.ClientSession) -> None:
    sys_id = await followed_ticket(emulator, storage, watcher)
    emulator.state.act_as_agent("comment", sys_id, "Перезагрузите компьютер")
    for kind in ("ticket_changed", "comment_added", "comment_added"):  # the rule fires twice; a resend
        assert await post(http, endpoint, event(sys_id, kind)) == (200, {"ok": True})
    assert await watcher.run_poked() == 1
    assert await post(http, endpoint, event(sys_id)) == (200, {"ok": True})  # late, again
    assert await watcher.run_poked() == 0
    assert watcher.poked_rounds == 2
    assert len(await storage.notices_unsent()) == 1


async def test_an_event_for_a_ticket_not_followed_is_answered_alike_and_changes_nothing(
        emulator: RunningEmulator, storage: SqliteStorage, watcher: StatusWatcher, endpoint: str,
        http: aiohttp.ClientSession) -> None:
    sys_id = await followed_ticket(emulator, storage, watcher)
    stranger = emulator.state.add_record(INC, {"subject": "Чужая", "caller": "caller-2"})
    emulator.state.act_as_agent("comment", stranger, "Чужой комментарий")
    followed = await post(http, endpoint, event(sys_id, "ticket_changed"))
    # Not followed, or not there at all: the same answer, so nobody learns what the bot follows.
    assert await post(http, endpoint, event(stranger)) == followed == (200, {"ok": True})
    assert await post(http, endpoint, event("9" * 18)) == followed
    assert [w.sys_id for w in await storage.watch_poked()] == [sys_id]
    assert await watcher.run_poked() == 0
    assert await storage.notices_unsent() == []


@pytest.mark.parametrize("secret", [None, "", "wrong-secret-of-the-same-size--", SECRET[:-1], SECRET + "x",
                                    "пароль-не-тот-совсем-длинный"])
async def test_a_forged_secret_is_refused_and_changes_nothing(
        emulator: RunningEmulator, storage: SqliteStorage, watcher: StatusWatcher, endpoint: str,
        http: aiohttp.ClientSession, secret: str | None, caplog: pytest.LogCaptureFixture) -> None:
    sys_id = await followed_ticket(emulator, storage, watcher)
    caplog.set_level(logging.WARNING, logger="adapters.simpleone.events")
    status, body = await post(http, endpoint, event(sys_id), secret=secret)
    assert status == 403 and body["ok"] is False
    assert await storage.watch_poked() == []
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert SECRET not in caplog.text and (not secret or secret not in caplog.text)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "not JSON"),
    (b"{not json", "not JSON"),
    (b"\xff\xfe{}", "not JSON"),
    (b'{"event": NaN}', "not JSON"),
    (b"[" * 10_00 + b"]" * 10_00, "not JSON"),  # deep nesting: refused before parsing
    (b'{"event": {"a": {"b": {"c": {"d": 1}}}}}', "not JSON"),
    (b"[]", "not an event object"),
    (b'"ticket_changed"', "not an event object"),
    (b'{"event": "ticket_changed", "table": "itsm_incident"}', "expected exactly"),
    (b'{"event": "ticket_changed", "table": "itsm_incident", "sys_id": "1", "state": "closed"}',
     "expected exactly"),
    (b'{"event": "deleted", "table": "itsm_incident", "sys_id": "1"}', "event must be"),
    (b'{"event": "ticket_changed", "table": "user", "sys_id": "1"}', "table is not"),
    (b'{"event": "ticket_changed", "table": "sys_user; drop", "sys_id": "1"}', "table is not"),
    (b'{"event": "ticket_changed", "table": "itsm_incident", "sys_id": 166031411802010329}', "sys_id must"),
    (b'{"event": "ticket_changed", "table": "itsm_incident", "sys_id": "1660314118020103\xd9\xa9"}', "sys_id must"),
    (b'{"event": "ticket_changed", "table": "itsm_incident", "sys_id": "%"}', "sys_id must"),
])
async def test_a_malformed_body_is_refused_with_a_short_reason(
        storage: SqliteStorage, endpoint: str, http: aiohttp.ClientSession, raw: bytes, reason: str) -> None:
    await storage.watch_add([WatchedTicket(INC, "1", "INC1", PEER, "2", "2025-01-01 10:00:00")])
    status, body = await post(http, endpoint, None, raw=raw)
    assert status == 400 and body["ok"] is False and body["error"].startswith(reason)
    assert await storage.watch_poked() == []


async def test_a_huge_body_is_refused_unread(storage: SqliteStorage, endpoint: str,
                                             http: aiohttp.ClientSession) -> None:
    padded = json.dumps(event("1") | {"pad": "x" * MAX_BODY}).encode()
    assert (await post(http, endpoint, None, raw=padded))[0] == 413
    huge = b"{" + b" " * (5 * 1024 * 1024) + b"}"  # past aiohttp's own 1 MiB limit too

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(huge), 65536):
            yield huge[start:start + 65536]

    headers = {SECRET_HEADER: SECRET}
    try:
        async with http.post(endpoint, data=chunks(), headers=headers) as answer:
            assert answer.status == 413
    except aiohttp.ClientError:
        pass  # the server may close the connection before the rest is sent: refused either way
    assert (await post(http, endpoint, event("1")))[0] == 200  # and the server is fine


async def test_a_storm_of_refusals_is_logged_about_once_a_second(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = RefusalLog(clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="adapters.simpleone.events")
    for i in range(1000):
        now[0] = i / 100  # 100 a second for 10 s
        refusals.refused("wrong or missing secret", "203.0.113.9")
    assert 10 <= len(caplog.records) <= 11
    assert "100 refused since the last such line (this one included)" in caplog.records[1].getMessage()


def test_a_short_secret_is_refused(flow_set: FlowSet) -> None:
    with pytest.raises(ValueError, match="16"):
        add_events_route(web.Application(), object(), StaticFlows(flow_set), secret="short")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- property

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_events = st.fixed_dictionaries({
    "event": st.sampled_from(["ticket_changed", "comment_added", "x"]) | st.text(max_size=5),
    "table": st.sampled_from([INC, "itsm_request", "user"]) | st.text(max_size=5),
    "sys_id": st.from_regex(r"[0-9]{1,20}", fullmatch=True) | st.text(max_size=5) | st.integers(),
}, optional={"extra": _json})
_bodies = (st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode())
           | _events.map(lambda v: json.dumps(v).encode()))


def test_no_body_ever_gets_a_server_error(flow_set: FlowSet, tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    try:
        storage = loop.run_until_complete(open_sqlite(tmp_path / "db"))
        loop.run_until_complete(storage.watch_add([WatchedTicket(INC, "12", "INC12", PEER, "2", "")]))
        app = web.Application()
        add_events_route(app, storage, StaticFlows(flow_set), secret=SECRET)
        context = served(app)
        url = f"http://127.0.0.1:{loop.run_until_complete(context.__aenter__())}{EVENTS_PATH}"

        async def session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

        http = loop.run_until_complete(session())

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(_bodies, st.sampled_from([SECRET, None, "x" * 16]))
        def check(raw: bytes, secret: str | None) -> None:
            status, body = loop.run_until_complete(post(http, url, None, raw=raw, secret=secret))
            assert status in (200, 400, 403, 413), (status, body)
            assert isinstance(body, dict) and isinstance(body.get("ok"), bool)
            assert (status == 200) == body["ok"]
            if status == 200:
                assert secret == SECRET and body == {"ok": True}

        try:
            check()
        finally:
            loop.run_until_complete(http.close())
            loop.run_until_complete(context.__aexit__(None, None, None))
            loop.run_until_complete(storage.close())
    finally:
        loop.close()
