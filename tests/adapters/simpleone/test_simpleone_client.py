"""The SimpleOne client against the emulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from pathlib import Path
from typing import Any

import pytest

from adapters.simpleone.client import RecordNotFound, SimpleOneClient, SimpleOneConfig, default_transport
from adapters.simpleone.records import flag, person_from, text, ticket_from
from adapters.simpleone.transport import HttpAnswer, HttpRequest
from emulators.simpleone.server import RunningEmulator, start_emulator
from emulators.simpleone.state import STATE_TITLES, ManualClock
from engine.ports import (
    Attachment,
    Person,
    Ticket,
    TicketRef,
    TicketSystem,
    TicketSystemError,
    TicketSystemRejected,
    TicketSystemUnavailable,
    Upload,
)

INCIDENT, REQUEST = "itsm_incident", "itsm_request"


def logins(emulator: RunningEmulator) -> int:
    return sum(1 for e in emulator.state.request_log if e.path in ("/v1/auth/login", "/rest/v1/auth/login"))


def api_calls(emulator: RunningEmulator) -> list[tuple[str, str]]:
    return [(e.method, e.path) for e in emulator.state.request_log]


def test_client_satisfies_the_engine_port(client: SimpleOneClient) -> None:
    port: TicketSystem = client  # mypy checks the protocol; the runtime check is below
    for name in ("find_person", "create_ticket", "list_tickets", "get_ticket", "add_comment", "upload_files",
                 "find_attachments"):
        assert callable(getattr(port, name))


# --------------------------------------------------------------------------- TicketSystem


async def test_find_person_by_exact_email(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    sys_id = emulator.state.add_user("ivan.petrov@ranepa.ru", "Ivan", "Petrov")
    emulator.state.add_user("ivan.petrov2@ranepa.ru", "Ivan", "Petrov-2")
    assert await client.find_person("  ivan.petrov@ranepa.ru ") == Person(
        sys_id=sys_id, email="ivan.petrov@ranepa.ru", name="Ivan Petrov"
    )
    assert await client.find_person("nobody@ranepa.ru") is None


async def test_find_person_skips_inactive_users(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    emulator.state.add_user("left@ranepa.ru", "Gone", "Away", active=False)
    assert await client.find_person("left@ranepa.ru") is None


async def test_find_person_refuses_query_injection_without_asking(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    emulator.state.add_user("victim@ranepa.ru", "V", "W")
    assert await client.find_person("x@ranepa.ru^ORemailISNOTEMPTY") is None
    assert await client.find_person("") is None
    assert api_calls(emulator) == []


async def test_find_person_in_demo_mode_creates_newcomers(creds: Any) -> None:
    emulator = await start_emulator(auto_users_domains=["ranepa.ru"])
    client = SimpleOneClient(SimpleOneConfig(emulator.url, username="bot", password="bot-password"))
    try:
        person = await client.find_person("maria.ivanova@ranepa.ru")
        assert person is not None and person.name == "Maria Ivanova"
        assert await client.find_person("maria.ivanova@ranepa.ru") == person
        assert await client.find_person("maria@example.com") is None
    finally:
        await client.close()
        await emulator.close()


async def test_create_ticket_returns_its_number(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    caller = emulator.state.add_user("a@ranepa.ru", "A", "B")
    fields = {"subject": "No wifi", "description": "Room 101", "caller": caller, "contact_type": "20"}
    ref = await client.create_ticket(INCIDENT, fields)
    stored = emulator.state.record(INCIDENT, ref.sys_id)
    assert stored is not None
    assert ref == TicketRef(table=INCIDENT, sys_id=ref.sys_id, number="INC0000001", state="-2",
                            updated_at=stored["sys_updated_at"])
    assert {k: stored[k] for k in fields} == fields
    assert (
        await client.create_ticket(REQUEST, {"subject": "Laptop", "caller": caller})
    ).number == "REQ0000001"


async def test_get_ticket(client: SimpleOneClient, emulator: RunningEmulator, clock: ManualClock) -> None:
    caller = emulator.state.add_user("a@ranepa.ru", "A", "B")
    ref = await client.create_ticket(INCIDENT, {"subject": "S", "description": "D", "caller": caller})
    clock.advance(90)
    emulator.state.set_field(INCIDENT, ref.sys_id, "state", "2")
    assert await client.get_ticket(INCIDENT, ref.sys_id) == Ticket(
        table=INCIDENT,
        sys_id=ref.sys_id,
        number="INC0000001",
        subject="S",
        description="D",
        state="2",
        caller_id=caller,
        created_at="2025-01-15 09:00:00",
        updated_at="2025-01-15 09:01:30",
        active=True,
    )


async def test_get_tickets_reads_many_at_once_in_pages(
    client: SimpleOneClient, emulator: RunningEmulator, clock: ManualClock
) -> None:
    caller = emulator.state.add_user("many@ranepa.ru", "M", "N")
    refs = [await client.create_ticket(INCIDENT, {"subject": f"S{n}", "caller": caller}) for n in range(103)]
    emulator.state.set_field(INCIDENT, refs[5].sys_id, "state", "2")
    emulator.state.delete(INCIDENT, refs[7].sys_id)
    calls = len(emulator.state.request_log)
    found = await client.get_tickets(INCIDENT, [r.sys_id for r in refs] + [refs[0].sys_id])
    assert sorted(t.number for t in found) == sorted(r.number for n, r in enumerate(refs) if n != 7)
    assert {t.sys_id: t.state for t in found}[refs[5].sys_id] == "2"
    assert len(emulator.state.request_log) - calls == 2  # 102 distinct ids: two pages of at most 100
    assert await client.get_tickets(INCIDENT, []) == []


async def test_get_tickets_sends_the_documented_in_query(emulator: RunningEmulator) -> None:
    transport = _Recorder()
    async with SimpleOneClient(SimpleOneConfig(emulator.url, token="x" * 32), transport=transport) as spy:
        with pytest.raises(TicketSystemRejected):
            await spy.get_tickets(INCIDENT, ["111", "222"])
    (request,) = transport.requests
    assert dict(request.params)["sysparm_query"] == "sys_idIN111@222"  # the reference's list separator


def _attachment_queries(requests: list[HttpRequest]) -> list[str]:
    return [dict(r.params).get("sysparm_query", "") for r in requests if r.url.endswith("/sys_attachment")]


class _Spy:
    """A transport over the real one that keeps every request (the emulator still answers)."""

    def __init__(self, config: SimpleOneConfig) -> None:
        self.inner = default_transport(config)
        self.requests: list[HttpRequest] = []

    async def send(self, request: HttpRequest) -> HttpAnswer:
        self.requests.append(request)
        return await self.inner.send(request)

    async def close(self) -> None:
        await self.inner.close()


def _file(tmp_path: Path, name: str, content: bytes) -> Upload:
    path = tmp_path / name
    path.write_bytes(content)
    return Upload(name, "application/octet-stream", path)


@pytest.mark.parametrize("mode", ["error", "drop"])
async def test_find_attachments_settles_an_unclear_upload_without_the_sys_id(
    client: SimpleOneClient, emulator: RunningEmulator, clock: ManualClock, tmp_path: Path, mode: str
) -> None:
    """Nothing known on the record: the file is found by name, size and time, as a real instance
    allows (record_document_id is a Document ID, so a query by the sys_id finds nothing)."""
    early = await client.create_ticket(INCIDENT, {"subject": "old"})
    await client.upload_files(INCIDENT, early.sys_id, [_file(tmp_path, "скрин.png", b"\x89PNG" * 10)])
    clock.advance(60)
    ref = await client.create_ticket(INCIDENT, {"subject": "x"})
    shot = _file(tmp_path, "скрин.png", b"\x89PNG" * 10)
    emulator.faults.fail_after_write(1, mode=mode, method="POST", path_prefix="/v1/attachments/")  # type: ignore[arg-type]
    with pytest.raises(TicketSystemUnavailable):
        await client.upload_files(INCIDENT, ref.sys_id, [shot])
    wanted = [Attachment("скрин.png", 40), Attachment("скрин.png", 41), Attachment("other.png", 40)]
    # The same file on an older ticket is before `since`: only the unclear upload is found.
    assert await client.find_attachments(INCIDENT, ref.sys_id, wanted, since=ref.updated_at) == [
        Attachment("скрин.png", 40)]
    assert len(emulator.state.records("sys_attachment")) == 2
    assert await client.find_attachments(INCIDENT, ref.sys_id, [], since=ref.updated_at) == []


async def test_find_attachments_reads_the_document_id_off_a_known_attachment(
    client: SimpleOneClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A file the upload's answer named (with its id) tells the record's Document ID: the
    record's own rows are listed, and the same file on another record is not taken for ours."""
    ref = await client.create_ticket(INCIDENT, {"subject": "x"})
    other = await client.create_ticket(INCIDENT, {"subject": "y"})
    (first,) = await client.upload_files(INCIDENT, ref.sys_id, [_file(tmp_path, "a.txt", b"a")])
    doc_id = emulator.state.document_id(INCIDENT, ref.sys_id)
    assert first.name == "a.txt" and first.size == 1 and first.sys_id and first.document_id == doc_id
    log = _file(tmp_path, "log.txt", b"log")
    await client.upload_files(INCIDENT, other.sys_id, [log])  # someone else's, same name and size
    emulator.faults.fail_next(1, method="POST", path_prefix="/v1/attachments/")  # ours never landed
    with pytest.raises(TicketSystemUnavailable):
        await client.upload_files(INCIDENT, ref.sys_id, [log])
    wanted = [Attachment("log.txt", 3)]
    # The limit of matching by name, size and time alone:
    assert await client.find_attachments(INCIDENT, ref.sys_id, wanted, since=ref.updated_at) == wanted
    bare = Attachment(first.name, first.size, first.sys_id)  # the id alone: read back for its Document ID
    for known in ([first], [bare]):
        assert await client.find_attachments(INCIDENT, ref.sys_id, wanted, since=ref.updated_at, known=known) == []
    await client.upload_files(INCIDENT, ref.sys_id, [log])
    (found,) = await client.find_attachments(INCIDENT, ref.sys_id, wanted, since=ref.updated_at, known=[bare])
    assert found.document_id == doc_id and found.sys_id != first.sys_id


async def test_find_attachments_without_ids_from_the_upload_answer(
    emulator: RunningEmulator, tmp_path: Path, creds: Any
) -> None:
    """The upload answers 200 with no body: a file known to have landed (no ids) whose name,
    size and time match exactly one row gives the Document ID all the same."""
    config = SimpleOneConfig(emulator.url, username=creds.username, password=creds.password)
    spy = _Spy(config)
    async with SimpleOneClient(config, transport=spy) as client:
        emulator.state.upload_reply = "empty"
        ref = await client.create_ticket(INCIDENT, {"subject": "x"})
        other = await client.create_ticket(INCIDENT, {"subject": "y"})
        assert await client.upload_files(INCIDENT, ref.sys_id, [_file(tmp_path, "a.txt", b"a")]) == []
        log = _file(tmp_path, "log.txt", b"log")
        await client.upload_files(INCIDENT, other.sys_id, [log])
        emulator.faults.fail_next(1, method="POST", path_prefix="/v1/attachments/")
        with pytest.raises(TicketSystemUnavailable):
            await client.upload_files(INCIDENT, ref.sys_id, [log])
        known = [Attachment("a.txt", 1)]
        wanted = [Attachment("log.txt", 3)]
        assert await client.find_attachments(INCIDENT, ref.sys_id, wanted, since=ref.updated_at, known=known) == []
        doc_id = emulator.state.document_id(INCIDENT, ref.sys_id)
        queries = _attachment_queries(spy.requests)
        assert f"record_document_id={doc_id}^sys_created_at>={ref.updated_at}" in queries
        assert not any(ref.sys_id in q for q in queries)  # never the sys_id for a Document ID


async def test_upload_takes_any_2xx_for_success_whatever_the_body(tmp_path: Path) -> None:
    """Any 2xx, whatever its body, unless the body is the envelope saying it failed (see below)."""
    path = tmp_path / "a.txt"
    path.write_bytes(b"x")
    record = {"sys_id": "166031411802010400", "file_name": "a.txt", "size_bytes": "1",
              "record_document_id": "0" * 32}
    answers = [
        (HttpAnswer(200), []),
        (HttpAnswer(201, b"Created", "text/plain"), []),
        (_json(200, {"files": ["a.txt"]}), []),
        (_json(200, {"status": "OK", "data": [record, "junk"]}), [Attachment("a.txt", 1, record["sys_id"], "0" * 32)]),
    ]
    for answer, expected in answers:
        async with SimpleOneClient(SimpleOneConfig("https://sd.example", token="t" * 32),
                                   transport=_Recorder(answer)) as client:
            assert await client.upload_files(INCIDENT, "166031411802010329",
                                             [Upload("a.txt", "text/plain", path)]) == expected
    # A 200 HTML page is a proxy's, not SimpleOne's: the upload surely did not get through.
    async with SimpleOneClient(SimpleOneConfig("https://sd.example", token="t" * 32),
                               transport=_Recorder(HttpAnswer(200, b"<html>login</html>", "text/html"))) as client:
        with pytest.raises(TicketSystemUnavailable) as caught:
            await client.upload_files(INCIDENT, "166031411802010329", [Upload("a.txt", "text/plain", path)])
    assert caught.value.maybe_done is False


async def test_get_ticket_is_none_when_absent_or_malformed(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    assert await client.get_ticket(INCIDENT, "166031411802099999") is None
    calls = len(emulator.state.request_log)
    for forged in ("../user/1", "1?sysparm_query=x", "", "a b"):
        assert await client.get_ticket(INCIDENT, forged) is None
    assert len(emulator.state.request_log) == calls  # refused before any request


async def test_list_tickets_merges_tables_newest_first(
    client: SimpleOneClient, emulator: RunningEmulator, clock: ManualClock
) -> None:
    state = emulator.state
    me, other = state.add_user("me@ranepa.ru", "M", "E"), state.add_user("x@ranepa.ru", "X", "Y")
    made: dict[str, TicketRef] = {}
    for name, table, caller in [
        ("i1", INCIDENT, me),
        ("r1", REQUEST, me),
        ("x1", INCIDENT, other),
        ("i2", INCIDENT, me),
        ("r2", REQUEST, me),
    ]:
        clock.advance(60)
        made[name] = await client.create_ticket(table, {"subject": name, "caller": caller})
    state.set_field(INCIDENT, made["i2"].sys_id, "active", "0")

    everything = await client.list_tickets(me, [INCIDENT, REQUEST], active_only=False, limit=10)
    assert [t.subject for t in everything] == ["r2", "i2", "r1", "i1"]
    assert [t.table for t in everything] == [REQUEST, INCIDENT, REQUEST, INCIDENT]
    assert all(t.caller_id == me for t in everything)
    assert everything[1].active is False

    active = await client.list_tickets(me, [INCIDENT, REQUEST], active_only=True, limit=10)
    assert [t.subject for t in active] == ["r2", "r1", "i1"]
    assert [
        t.subject for t in await client.list_tickets(me, [INCIDENT, REQUEST], active_only=False, limit=3)
    ] == [
        "r2",
        "i2",
        "r1",
    ]
    assert await client.list_tickets(me, [], active_only=False, limit=10) == []
    assert await client.list_tickets("166031411802099999", [INCIDENT], active_only=False, limit=10) == []
    with pytest.raises(TicketSystemRejected):
        await client.list_tickets(f"{me}^ORactive=1", [INCIDENT], active_only=False, limit=10)


async def test_list_tickets_sends_the_documented_query(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    transport = _Recorder()
    async with SimpleOneClient(SimpleOneConfig(emulator.url, token="x" * 32), transport=transport) as spy:
        with pytest.raises(TicketSystemRejected):  # the static token is wrong; the request still went out
            await spy.list_tickets("155", [INCIDENT], active_only=True, limit=5)
    (request,) = transport.requests
    assert dict(request.params)["sysparm_query"] == "caller=155^active=1^ORDERBYDESCsys_created_at"
    assert dict(request.params)["sysparm_limit"] == "5"


async def test_add_comment_appends_journal_entries(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    ref = await client.create_ticket(INCIDENT, {"subject": "x"})
    await client.add_comment(INCIDENT, ref.sys_id, "additional_comments", "It still does not work")
    await client.add_comment(INCIDENT, ref.sys_id, "additional_comments", "Now it does, thanks")
    await client.add_comment(INCIDENT, ref.sys_id, "work_notes", "internal")
    journal = emulator.state.journal(INCIDENT, ref.sys_id)
    assert [(e.field, e.text) for e in journal] == [
        ("additional_comments", "It still does not work"),
        ("additional_comments", "Now it does, thanks"),
        ("work_notes", "internal"),
    ]
    with pytest.raises(RecordNotFound):
        await client.add_comment(INCIDENT, "166031411802099999", "additional_comments", "x")
    with pytest.raises(TicketSystemRejected):
        await client.add_comment(INCIDENT, ref.sys_id, "subject^x", "x")


async def test_upload_files_one_and_several(
    client: SimpleOneClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    ref = await client.create_ticket(INCIDENT, {"subject": "x"})
    files = []
    for name, mime, content in [
        ("screen.png", "image/png", b"\x89PNG\r\n" + bytes(range(256))),
        ("log.txt", "text/plain", "ошибка 0x80070005".encode()),
        ("report.pdf", "application/pdf", b"%PDF-1.7"),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        files.append(Upload(name=name, mime=mime, path=path))
    await client.upload_files(INCIDENT, ref.sys_id, files[:1])
    await client.upload_files(INCIDENT, ref.sys_id, files[1:])
    await client.upload_files(INCIDENT, ref.sys_id, [])
    stored = emulator.state.attachments(INCIDENT, ref.sys_id)
    assert [(a["file_name"], a["mime_content_type"]) for a in stored] == [(f.name, f.mime) for f in files]
    for meta, upload in zip(stored, files, strict=True):
        assert emulator.state.attachment_bytes(meta["sys_id"]) == upload.path.read_bytes()
        assert meta["size_bytes"] == str(upload.path.stat().st_size)
    uploads = [e for e in emulator.state.request_log if e.path.startswith("/v1/attachments/upload/")]
    assert len(uploads) == 2


async def test_upload_errors_are_rejections(client: SimpleOneClient, tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"x")
    with pytest.raises(RecordNotFound):
        await client.upload_files(INCIDENT, "166031411802099999", [Upload("a.txt", "text/plain", path)])
    with pytest.raises(TicketSystemRejected, match="cannot read"):
        await client.upload_files(
            INCIDENT, "166031411802099999", [Upload("b", "text/plain", tmp_path / "gone")]
        )


# --------------------------------------------------------------------------- generic Table API


async def test_generic_record_methods(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    caller = emulator.state.add_user("a@ranepa.ru", "Anna", "B")
    created = await client.create_record(INCIDENT, {"subject": "x", "caller": caller, "urgency": 3})
    assert created["caller"]["value"] == caller and created["urgency"] == "3"
    sys_id = created["sys_id"]
    got = await client.get_record(INCIDENT, sys_id, fields=["number", "caller.email"])
    assert got == {"number": "INC0000001", "caller.email": "a@ranepa.ru"}
    shown = await client.get_record(INCIDENT, sys_id, display_value=True, exclude_reference_link=True)
    assert shown["caller"] == "Anna B"
    patched = await client.update_record(INCIDENT, sys_id, {"urgency": 1})
    assert patched["urgency"] == "1"
    put = await client.update_record(INCIDENT, sys_id, {"impact": 2}, method="PUT")
    assert put["impact"] == "2" and put["urgency"] == "1"
    for i in range(4):
        await client.create_record(INCIDENT, {"subject": f"n{i}"})
    page = await client.list_records(INCIDENT, query="subjectSTARTSWITHn^ORDERBYDESCsubject", limit=3, page=1)
    assert [r["subject"] for r in page] == ["n3", "n2", "n1"]
    page2 = await client.list_records(
        INCIDENT, query="subjectSTARTSWITHn^ORDERBYDESCsubject", limit=3, page=2
    )
    assert [r["subject"] for r in page2] == ["n0"]
    (attachment,) = await client.upload(
        INCIDENT, sys_id, [("a.bin", "application/octet-stream", b"\x00\x01")]
    )
    assert await client.download(attachment["sys_id"]) == b"\x00\x01"
    await client.delete_record(INCIDENT, sys_id)
    with pytest.raises(RecordNotFound):
        await client.get_record(INCIDENT, sys_id)
    with pytest.raises(RecordNotFound):
        await client.download("166031411802099999")
    with pytest.raises(ValueError):
        await client.list_records(INCIDENT, limit=0)


# --------------------------------------------------------------------------- auth


async def test_logs_in_once_and_reuses_the_token(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    for _ in range(3):
        await client.list_records(INCIDENT)
    assert logins(emulator) == 1
    login = emulator.state.request_log[0]
    assert (login.method, login.path, login.status) == ("POST", "/v1/auth/login", 200)  # the documented one


async def test_relogs_in_once_after_tokens_expire(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    await client.list_records(INCIDENT)
    emulator.faults.expire_tokens()
    ref = await client.create_ticket(INCIDENT, {"subject": "after expiry"})
    assert logins(emulator) == 2
    assert [(m, s) for m, _, s in [(e.method, e.path, e.status) for e in emulator.state.request_log]] == [
        ("POST", 200),  # login
        ("GET", 200),
        ("POST", 401),  # the create, refused with the old token
        ("POST", 200),  # login again
        ("POST", 200),  # the create, once
    ]
    assert [r["sys_id"] for r in emulator.state.records(INCIDENT)] == [ref.sys_id]


async def test_relogs_in_when_the_token_lifetime_ends(
    client: SimpleOneClient, emulator: RunningEmulator, clock: ManualClock
) -> None:
    await client.list_records(INCIDENT)
    clock.advance(2 * 3600)
    await client.list_records(INCIDENT)
    assert logins(emulator) == 2


async def test_concurrent_401s_cause_one_login(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    await client.list_records(INCIDENT)
    emulator.faults.expire_tokens()
    emulator.faults.latency = 0.02  # keep the requests in flight together
    await asyncio.gather(*(client.list_records(INCIDENT) for _ in range(8)))
    assert logins(emulator) == 2


async def test_concurrent_first_calls_share_one_login(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    await asyncio.gather(*(client.list_records(INCIDENT) for _ in range(5)))
    assert logins(emulator) == 1


async def test_a_401_that_relogin_does_not_fix_is_rejected(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    await client.list_records(INCIDENT)
    emulator.faults.fail_next(2, status=401, method="GET")
    with pytest.raises(TicketSystemRejected, match="401"):
        await client.list_records(INCIDENT)
    assert logins(emulator) == 2  # exactly one re-login, no loop


async def test_wrong_password_is_rejected(make_client: Any, emulator: RunningEmulator) -> None:
    client = make_client(password="wrong")
    with pytest.raises(TicketSystemRejected, match=r"POST /v1/auth/login -> HTTP 401"):
        await client.find_person("a@ranepa.ru")
    assert api_calls(emulator) == [("POST", "/v1/auth/login")]


async def test_static_token(make_client: Any, emulator: RunningEmulator, creds: Any) -> None:
    client = make_client(token=creds.static_token)
    emulator.faults.expire_tokens()  # issued tokens only; the static one is configuration
    ref = await client.create_ticket(INCIDENT, {"subject": "x"})
    assert (await client.get_ticket(INCIDENT, ref.sys_id)) is not None
    assert logins(emulator) == 0
    wrong = make_client(token="y" * 32)
    with pytest.raises(TicketSystemRejected, match="401"):
        await wrong.list_records(INCIDENT)
    assert logins(emulator) == 0  # a static token is never traded for a login


async def test_login_failure_is_unavailable_when_the_server_is_down(
    make_client: Any, emulator: RunningEmulator
) -> None:
    client = make_client(read_retries=0)
    emulator.faults.fail_next(path_prefix="/v1/auth/login")
    with pytest.raises(TicketSystemUnavailable, match="auth/login -> HTTP 500"):
        await client.list_records(INCIDENT)
    assert await client.list_records(INCIDENT) == []  # the next call logs in afresh


async def test_secrets_never_reach_logs_or_errors(
    make_client: Any, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture, creds: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    client = make_client()
    await client.list_records(INCIDENT)  # login
    emulator.faults.expire_tokens()
    await client.list_records(INCIDENT)  # 401, re-login
    emulator.faults.html_next(status=200, path_prefix="/v1/auth/login")
    emulator.faults.expire_tokens()
    with pytest.raises(TicketSystemError) as failed:
        await client.list_records(INCIDENT)
    errors.append(str(failed.value))
    with pytest.raises(TicketSystemError) as failed:
        await make_client(password=creds.password + "x").list_records(INCIDENT)
    errors.append(str(failed.value))
    with pytest.raises(TicketSystemError) as failed:
        await make_client(token=creds.static_token + "z").list_records(INCIDENT)
    errors.append(str(failed.value))

    secrets = [creds.password, creds.password + "x", creds.static_token, *emulator.state._tokens]
    assert len(secrets) >= 5  # three logins issued tokens
    assert "logged in to SimpleOne" in caplog.text and "logging in again" in caplog.text
    logged = [record.getMessage() for record in caplog.records] + [repr(r.args) for r in caplog.records]
    for secret in secrets:
        assert not any(secret in line for line in logged), secret
        assert not any(secret in line for line in errors), secret
    assert creds.password not in repr(client._config)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_server_errors_are_unavailable(
    client: SimpleOneClient, emulator: RunningEmulator, status: int
) -> None:
    emulator.faults.fail_next(status=status, method="POST", path_prefix="/rest/v1/table/")
    with pytest.raises(TicketSystemUnavailable) as failed:
        await client.create_ticket(INCIDENT, {"subject": "x"})
    message = str(failed.value)
    assert f"POST /rest/v1/table/itsm_incident -> HTTP {status}" in message
    assert "emulated fault" in message  # an excerpt of the body, for the log
    assert emulator.state.records(INCIDENT) == []


@pytest.mark.parametrize("status", [200, 502, 403])
async def test_html_pages_are_unavailable_whatever_the_status(
    make_client: Any, emulator: RunningEmulator, status: int
) -> None:
    client = make_client(read_retries=0)  # a 502 would be tried again (test_a_read_is_retried…)
    await client.list_records(INCIDENT)
    emulator.faults.html_next(status=status)
    with pytest.raises(TicketSystemUnavailable, match=rf"HTTP {status}: an HTML page.*Corporate proxy"):
        await client.list_records(INCIDENT)


@pytest.mark.parametrize(("arm", "maybe_done"), [
    (lambda f: f.fail_next(status=500, method="POST"), True),
    (lambda f: f.fail_next(status=502, method="POST"), True),
    (lambda f: f.fail_next(status=503, method="POST"), False),
    (lambda f: f.fail_next(status=429, method="POST"), False),
    (lambda f: f.html_next(status=200, method="POST"), False),  # a proxy's login page
    (lambda f: f.html_next(status=502, method="POST"), True),
    (lambda f: f.drop_next(method="POST"), True),
    (lambda f: f.fail_after_write(method="POST"), True),
])
async def test_a_failure_says_whether_the_write_may_have_happened(
    client: SimpleOneClient, emulator: RunningEmulator, arm: Any, maybe_done: bool
) -> None:
    await client.list_records(INCIDENT)  # logged in
    arm(emulator.faults)
    with pytest.raises(TicketSystemUnavailable) as info:
        await client.create_ticket(INCIDENT, {"subject": "x"})
    assert info.value.maybe_done is maybe_done


async def test_no_connection_is_surely_not_a_write(creds: Any) -> None:
    emulator = await start_emulator()
    url = emulator.url
    await emulator.close()
    async with SimpleOneClient(SimpleOneConfig(url, token=creds.static_token, connect_timeout=1)) as dead:
        with pytest.raises(TicketSystemUnavailable) as info:
            await dead.create_ticket(INCIDENT, {"subject": "x"})
    assert info.value.maybe_done is False


async def test_outage_is_unavailable_until_it_ends(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    emulator.faults.set_outage(True)
    with pytest.raises(TicketSystemUnavailable, match="503"):
        await client.find_person("a@ranepa.ru")
    emulator.faults.set_outage(False)
    assert await client.find_person("a@ranepa.ru") is None


async def test_a_hang_is_a_timeout(make_client: Any, emulator: RunningEmulator) -> None:
    client = make_client(read_timeout=0.2, read_retries=0)
    await client.list_records(INCIDENT)
    emulator.faults.hang_next(method="GET")
    with pytest.raises(
        TicketSystemUnavailable, match=r"GET /rest/v1/table/itsm_incident: timed out \(read\)"
    ):
        await client.list_records(INCIDENT)
    assert await client.list_records(INCIDENT) == []


async def test_a_dropped_connection_is_unavailable(make_client: Any, emulator: RunningEmulator) -> None:
    client = make_client(read_retries=0)
    await client.list_records(INCIDENT)
    # A read on a reused connection is retried once by the transport (a keep-alive race is
    # normal); a second drop is a failure. A write is never resent: its first drop fails.
    emulator.faults.drop_next(2)
    with pytest.raises(TicketSystemUnavailable, match="connection dropped"):
        await client.list_records(INCIDENT)
    assert await client.list_records(INCIDENT) == []
    emulator.faults.drop_next(1, method="POST")
    with pytest.raises(TicketSystemUnavailable, match="connection dropped"):
        await client.create_record(INCIDENT, {"subject": "s"})


async def test_nothing_listening_is_unavailable(creds: Any) -> None:
    emulator = await start_emulator()
    url = emulator.url
    await emulator.close()
    async with SimpleOneClient(SimpleOneConfig(url, token=creds.static_token, connect_timeout=1)) as client:
        with pytest.raises(TicketSystemUnavailable, match="cannot connect"):
            await client.list_records(INCIDENT)


async def test_client_errors_are_rejected(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    with pytest.raises(RecordNotFound):
        await client.list_records("no_such_table")
    with pytest.raises(TicketSystemRejected, match=r"HTTP 400.*sysparm_query"):
        await client.list_records(INCIDENT, query="not a query")
    with pytest.raises(TicketSystemRejected, match="HTTP 400"):
        await client.create_record(INCIDENT, {"subject": ["not", "a", "scalar"]})
    emulator.faults.fail_next(status=403)
    with pytest.raises(TicketSystemRejected, match="HTTP 403"):
        await client.list_records(INCIDENT)
    with pytest.raises(TicketSystemRejected, match="invalid SimpleOne table"):
        await client.list_records("../etc")
    assert not issubclass(TicketSystemRejected, TicketSystemUnavailable)


# --------------------------------------------------------------------------- state labels


def choice_reads(emulator: RunningEmulator) -> int:
    return table_reads(emulator, "sys_choice")


async def test_state_labels_are_the_instances_own_read_once_per_table_for_a_while(
    make_client: Any, emulator: RunningEmulator
) -> None:
    client = make_client(labels_ttl=600)
    now = [1000.0]
    client._monotonic = lambda: now[0]
    labels = await asyncio.gather(*(client.state_labels(INCIDENT) for _ in range(5)))
    assert all(found == STATE_TITLES for found in labels)
    assert choice_reads(emulator) == 1  # at once or one after another: one read
    assert (await client.state_labels(REQUEST))["7"] == "Выполнен"
    now[0] += 599
    await client.state_labels(INCIDENT)
    assert choice_reads(emulator) == 2  # one per table
    emulator.state.set_field("sys_choice", next(
        r["sys_id"] for r in emulator.state.records("sys_choice", "table_id=itsm_incident^value=2")), "title", "Делаем")
    now[0] += 2
    assert (await client.state_labels(INCIDENT))["2"] == "Делаем"  # read again after the TTL
    assert choice_reads(emulator) == 3


async def test_state_labels_never_fail_and_keep_what_was_known(make_client: Any, emulator: RunningEmulator) -> None:
    client = make_client(labels_ttl=600, labels_retry_after=60)
    now = [1000.0]
    client._monotonic = lambda: now[0]
    emulator.faults.fail_next(1, status=403, method="GET", path_prefix="/rest/v1/table/sys_choice")
    assert await client.state_labels(INCIDENT) == {}  # refused: nothing known, nothing raised
    assert await client.state_labels(INCIDENT) == {}
    assert choice_reads(emulator) == 1  # not asked again at once
    now[0] += 61
    assert await client.state_labels(INCIDENT) == STATE_TITLES
    now[0] += 601
    emulator.faults.fail_next(3, status=500, method="GET", path_prefix="/rest/v1/table/sys_choice")
    assert await client.state_labels(INCIDENT) == STATE_TITLES  # down: the labels read before
    assert choice_reads(emulator) == 2 + 3


async def test_state_labels_are_asked_for_in_the_bots_language(emulator: RunningEmulator) -> None:
    transport = _Recorder()
    async with SimpleOneClient(SimpleOneConfig(emulator.url, token="x" * 32), transport=transport) as spy:
        assert await spy.state_labels(INCIDENT) == {}  # the recorder answers 401: no labels, no failure
    (request,) = transport.requests
    assert request.url.endswith("/rest/v1/table/sys_choice")
    assert ("sysparm_query", "table_id=itsm_incident^column_id=state^language=ru") in request.params


# --------------------------------------------------------------------------- retries of reads


def table_reads(emulator: RunningEmulator, table: str = INCIDENT) -> int:
    return sum(1 for e in emulator.state.request_log if e.method == "GET" and e.path == f"/rest/v1/table/{table}")


@pytest.mark.parametrize("arm", [
    lambda f: f.fail_next(2, status=500, method="GET"),
    lambda f: f.fail_next(2, status=503, method="GET"),
    lambda f: f.html_next(2, status=502, method="GET"),  # a proxy's error page
    lambda f: f.drop_next(4, method="GET"),  # aiohttp itself resends once on a reused connection
    lambda f: f.hang_next(2, seconds=5, method="GET"),
], ids=["500", "503", "html-502", "drop", "timeout"])
async def test_a_read_is_retried_after_a_transient_failure(
    make_client: Any, emulator: RunningEmulator, arm: Any
) -> None:
    client = make_client(read_timeout=0.3)
    caller = emulator.state.add_user("a@ranepa.ru", "A", "B")
    emulator.state.add_record(INCIDENT, {"subject": "s", "caller": caller})
    await client.list_records(REQUEST)  # logged in
    arm(emulator.faults)
    (ticket,) = await client.list_tickets(caller, [INCIDENT], active_only=True, limit=10)
    assert ticket.subject == "s"
    assert emulator.faults.pending() == []  # every armed failure was met, and then one success


async def test_a_read_gives_up_after_two_retries(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    await client.list_records(REQUEST)
    emulator.faults.fail_next(3, status=500, method="GET")
    with pytest.raises(TicketSystemUnavailable, match="HTTP 500"):
        await client.list_records(INCIDENT)
    assert table_reads(emulator) == 3
    assert await client.list_records(INCIDENT) == []


@pytest.mark.parametrize("status", [400, 403, 404, 429])
async def test_a_read_refused_or_throttled_is_not_retried(
    client: SimpleOneClient, emulator: RunningEmulator, status: int
) -> None:
    await client.list_records(REQUEST)
    emulator.faults.fail_next(status=status, method="GET")
    with pytest.raises(TicketSystemError):
        await client.list_records(INCIDENT)
    assert table_reads(emulator) == 1


async def test_a_proxy_login_page_is_not_retried(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    await client.list_records(REQUEST)
    emulator.faults.html_next(status=200, method="GET")  # the same page would come again
    with pytest.raises(TicketSystemUnavailable, match="HTML page"):
        await client.list_records(INCIDENT)
    assert table_reads(emulator) == 1


async def test_a_login_that_fails_with_a_5xx_inside_a_read_is_retried(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    await client.list_records(REQUEST)
    emulator.faults.expire_tokens()
    emulator.faults.fail_next(1, status=502, path_prefix="/v1/auth/login")
    assert await client.list_records(INCIDENT) == []
    assert logins(emulator) == 3  # the first, the one that failed, and its retry


async def test_my_tickets_list_works_while_one_request_in_three_fails(
    client: SimpleOneClient, emulator: RunningEmulator
) -> None:
    caller = emulator.state.add_user("a@ranepa.ru", "A", "B")
    emulator.state.add_record(INCIDENT, {"subject": "inc", "caller": caller})
    emulator.state.add_record(REQUEST, {"subject": "req", "caller": caller})
    emulator.faults.set_fail_every(3)
    for _ in range(10):
        found = await client.list_tickets(caller, [INCIDENT, REQUEST], active_only=True, limit=10)
        assert sorted(t.subject for t in found) == ["inc", "req"]
    assert any(e.status == 500 for e in emulator.state.request_log)


@pytest.mark.parametrize(("arm", "write"), [
    (lambda f: f.fail_next(status=500, method="POST", path_prefix="/rest/v1/table/"), "create"),
    (lambda f: f.fail_next(status=503, method="POST", path_prefix="/rest/v1/table/"), "create"),
    (lambda f: f.drop_next(method="POST", path_prefix="/rest/v1/table/"), "create"),
    (lambda f: f.fail_next(status=500, method="PATCH"), "comment"),
    (lambda f: f.fail_next(status=500, method="POST", path_prefix="/v1/attachments/"), "upload"),
])
async def test_a_write_is_not_retried_by_the_client(
    client: SimpleOneClient, emulator: RunningEmulator, arm: Any, write: str, tmp_path: Path
) -> None:
    ref = await client.create_ticket(INCIDENT, {"subject": "x"})
    before = len(emulator.state.request_log)
    arm(emulator.faults)
    with pytest.raises(TicketSystemUnavailable):
        if write == "create":
            await client.create_ticket(INCIDENT, {"subject": "y"})
        elif write == "comment":
            await client.add_comment(INCIDENT, ref.sys_id, "additional_comments", "hello")
        else:
            (tmp_path / "a.txt").write_bytes(b"a")
            await client.upload_files(INCIDENT, ref.sys_id, [Upload("a.txt", "text/plain", tmp_path / "a.txt")])
    assert len(emulator.state.request_log) - before == 1  # sent once: the outbox decides about again


async def test_retries_end_within_the_read_budget(make_client: Any, emulator: RunningEmulator) -> None:
    client = make_client(read_budget=1.0, read_retry_delay=0.05)  # read_timeout stays 30 s
    await client.list_records(REQUEST)
    emulator.faults.fail_next(1, method="GET")
    emulator.faults.hang_next(1, seconds=60, method="GET")
    started = asyncio.get_running_loop().time()
    with pytest.raises(TicketSystemUnavailable, match="read budget"):
        await client.list_records(INCIDENT)
    assert asyncio.get_running_loop().time() - started < 10  # the budget, not the 30 s read timeout
    assert table_reads(emulator) == 2  # the retry was cut off; no third try past the budget


async def test_no_retry_starts_that_could_not_end_within_the_budget(
    make_client: Any, emulator: RunningEmulator
) -> None:
    client = make_client(read_budget=0.5, read_retry_delay=2.0)  # the first delay is 1 s at least
    await client.list_records(REQUEST)
    emulator.faults.fail_next(1, method="GET")
    with pytest.raises(TicketSystemUnavailable, match="HTTP 500"):
        await client.list_records(INCIDENT)
    assert table_reads(emulator) == 1


def test_retry_settings_are_checked(emulator: RunningEmulator) -> None:
    for bad in ({"read_retries": -1}, {"read_retry_delay": -0.1}, {"read_budget": 0}):
        with pytest.raises(ValueError, match="read_"):
            SimpleOneConfig(emulator.url, token="x" * 32, **bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["error", "html", "hang", "drop"])
async def test_fail_after_write_leaves_the_ticket_to_be_found(
    make_client: Any, emulator: RunningEmulator, mode: str
) -> None:
    client = make_client(read_timeout=0.3)
    caller = emulator.state.add_user("a@ranepa.ru", "A", "B")
    marker = "[sb:7f3a]"
    emulator.faults.fail_after_write(mode=mode, seconds=5)  # type: ignore[arg-type]
    with pytest.raises(TicketSystemUnavailable):
        await client.create_ticket(
            INCIDENT, {"subject": "x", "description": f"text {marker}", "caller": caller}
        )
    (stored,) = emulator.state.records(INCIDENT)  # created once, and not again by the client
    found = await client.find_ticket_by_marker(INCIDENT, caller, marker)
    assert found == TicketRef(INCIDENT, stored["sys_id"], stored["number"], stored["state"], stored["sys_updated_at"])


async def test_find_ticket_by_marker(client: SimpleOneClient, emulator: RunningEmulator) -> None:
    me, other = (
        emulator.state.add_user("me@ranepa.ru", "M", "E"),
        emulator.state.add_user("o@ranepa.ru", "O", "T"),
    )
    await client.create_ticket(INCIDENT, {"subject": "x", "description": "mine [sb:1]", "caller": other})
    assert await client.find_ticket_by_marker(INCIDENT, me, "[sb:1]") is None  # someone else's ticket
    first = await client.create_ticket(INCIDENT, {"subject": "x", "description": "a [sb:1]", "caller": me})
    await client.create_ticket(INCIDENT, {"subject": "x", "description": "a duplicate [sb:1]", "caller": me})
    await client.create_ticket(INCIDENT, {"subject": "x", "description": "[sb:2]", "caller": me})
    assert await client.find_ticket_by_marker(INCIDENT, me, "[sb:1]") == first  # the oldest wins
    with pytest.raises(TicketSystemRejected):
        await client.find_ticket_by_marker(INCIDENT, me, "x^ORactive=1")
    with pytest.raises(ValueError):
        await client.find_ticket_by_marker(INCIDENT, me, " ")


async def test_delete_accepts_an_empty_success() -> None:
    recorder = _Recorder(HttpAnswer(204))
    async with SimpleOneClient(
        SimpleOneConfig("https://sd.example", token="t" * 32), transport=recorder
    ) as client:
        await client.delete_record(INCIDENT, "166031411802010329")
    assert [r.method for r in recorder.requests] == ["DELETE"]


async def test_upload_names_the_parts_files_or_files_n(tmp_path: Path) -> None:
    ok = _json(200, {"status": "OK", "data": []})
    path = tmp_path / "a.txt"
    path.write_bytes(b"x")
    for count, names in [(1, ["files"]), (3, ["files[1]", "files[2]", "files[3]"])]:
        recorder = _Recorder(ok)
        config = SimpleOneConfig("https://sd.example", token="t" * 32)
        async with SimpleOneClient(config, transport=recorder) as client:
            await client.upload_files(
                INCIDENT, "166031411802010329", [Upload("a.txt", "text/plain", path)] * count
            )
        (request,) = recorder.requests
        assert request.url == "https://sd.example/v1/attachments/upload/itsm_incident/166031411802010329"
        assert dict(request.headers)["Content-Type"].startswith("multipart/form-data; boundary=")
        assert request.body is not None
        assert re.findall(rb'name="([^"]+)"; filename="a.txt"', request.body) == [
            n.encode() for n in names
        ]


async def test_multipart_headers_cannot_be_broken_by_a_file_name_or_type(tmp_path: Path) -> None:
    recorder = _Recorder(_json(200, {"status": "OK", "data": []}))
    async with SimpleOneClient(SimpleOneConfig("https://sd.example", token="t" * 32), transport=recorder) as client:
        await client.upload(INCIDENT, "166031411802010329",
                            [('evil"\r\nX-Injected: 1.txt', "text/plain\r\nX-Injected: 2", b"data")])
    (request,) = recorder.requests
    assert request.body is not None
    head = request.body.split(b"\r\n\r\n", 1)[0]
    assert b"X-Injected" in head and b"\r\nX-Injected" not in head  # still inside the quoted name
    # The file name is sanitised first (the line break goes), and what is left is escaped.
    assert b'filename="evil%22 X-Injected: 1.txt"' in head
    assert head.endswith(b"Content-Type: application/octet-stream")


async def test_a_proxy_page_in_another_charset_is_quoted_readably() -> None:
    page = "<html><title>Доступ запрещён</title></html>".encode("cp1251")
    recorder = _Recorder(HttpAnswer(403, page, "text/html", "windows-1251"))
    async with SimpleOneClient(SimpleOneConfig("https://sd.example", token="t" * 32), transport=recorder) as client:
        with pytest.raises(TicketSystemUnavailable, match="Доступ запрещён"):
            await client.list_records(INCIDENT)


# --------------------------------------------------------------------------- answers the emulator never gives


def _json(status: int, value: object) -> HttpAnswer:
    return HttpAnswer(status, json.dumps(value).encode(), "application/json")


class _Recorder:
    """A transport that answers every request with one canned answer and keeps the requests."""

    def __init__(self, answer: HttpAnswer | None = None) -> None:
        self.answer = answer or _json(401, {"status": "ERROR"})
        self.requests: list[HttpRequest] = []

    async def send(self, request: HttpRequest) -> HttpAnswer:
        self.requests.append(request)
        a = self.answer
        return HttpAnswer(a.status, a.content, a.content_type, a.charset)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("response", "why"),
    [
        (HttpAnswer(200, b"OK, probably", "text/plain"), "not JSON"),
        (HttpAnswer(200, b"\xff\xfe\x00garbage", "application/json"), "not JSON"),
        (_json(200, {"status": "ERROR", "data": []}), "status is not OK"),
        (_json(200, ["no", "envelope"]), "status is not OK"),
        (_json(200, {"status": "OK", "data": {"sys_id": "1"}}), "not a list of records"),
        (_json(200, {"status": "OK", "data": []}), "holds no record"),
        (HttpAnswer(302), "HTTP 302"),
        (HttpAnswer(200, b"<!doctype html><p>maintenance", "text/plain"), "HTML"),
        (_json(200, {"status": "OK", "data": [{"number": "INC1"}]}), "has no sys_id"),
    ],
)
async def test_malformed_success_answers_are_unavailable(response: HttpAnswer, why: str) -> None:
    config = SimpleOneConfig("https://sd.example", token="t" * 32)
    async with SimpleOneClient(config, transport=_Recorder(response)) as client:
        with pytest.raises(TicketSystemUnavailable, match=why):
            await client.create_ticket(INCIDENT, {"subject": "x"})


async def test_requests_carry_user_agent_bearer_and_json_accept() -> None:
    recorder = _Recorder(_json(200, {"status": "OK", "data": []}))
    config = SimpleOneConfig("https://sd.example/", token="t" * 32, user_agent="supportbot-test/1")
    async with SimpleOneClient(config, transport=recorder) as client:
        await client.list_records(INCIDENT, fields=["sys_id", "caller.email"], limit=5, page=2)
    (request,) = recorder.requests
    assert request.url == "https://sd.example/rest/v1/table/itsm_incident"
    assert dict(request.params) == {
        "sysparm_fields": "sys_id,caller.email",
        "sysparm_limit": "5",
        "sysparm_page": "2",
    }
    headers = dict(request.headers)
    assert headers["User-Agent"] == "supportbot-test/1"
    assert headers["Authorization"] == "Bearer " + "t" * 32
    assert headers["Accept"] == "application/json"
    assert request.body is None


# --------------------------------------------------------------------------- config and parsing


@pytest.mark.parametrize(
    "options",
    [
        {"base_url": "sd.ranepa.ru", "token": "t"},
        {"base_url": "ftp://sd.ranepa.ru", "token": "t"},
        {"base_url": "https://user:pw@sd.ranepa.ru", "token": "t"},
        {"base_url": "https://sd.ranepa.ru"},
        {"base_url": "https://sd.ranepa.ru", "username": "bot"},
        {"base_url": "https://sd.ranepa.ru", "token": "t", "username": "bot", "password": "p"},
        {"base_url": "https://sd.ranepa.ru", "token": "t", "read_timeout": 0},
        {"base_url": "https://sd.ranepa.ru", "token": "t", "max_connections": 0},
        {"base_url": "https://sd.ranepa.ru", "token": "t", "pool_timeout": 0},
        {"base_url": "https://sd.ranepa.ru", "token": "t", "verify_tls": False, "ca_bundle": "/etc/ca.pem"},
    ],
)
def test_config_rejects_bad_settings(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimpleOneConfig(**options)


def test_config_defaults_and_repr_hide_secrets() -> None:
    config = SimpleOneConfig("https://sd.ranepa.ru", username="bot", password="hunter2")
    assert (config.connect_timeout, config.read_timeout, config.verify_tls) == (5.0, 30.0, True)
    assert "hunter2" not in repr(config)
    assert "tok-123" not in repr(SimpleOneConfig("https://sd.ranepa.ru", token="tok-123"))


def test_a_configured_ca_bundle_is_loaded(tmp_path: Path) -> None:
    bad_bundle = tmp_path / "ca.pem"
    bad_bundle.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        SimpleOneClient(SimpleOneConfig("https://sd.example", token="t", ca_bundle=bad_bundle))


def test_records_parse_reference_objects_and_plain_strings() -> None:
    base = {"sys_id": "1", "number": "INC1", "state": -2, "sys_created_at": "2025-01-01 00:00:00"}
    as_object = {
        **base,
        "caller": {"value": "155", "link": "http://x/rest/v1/table/user/155"},
        "active": True,
    }
    as_string = {**base, "caller": "155", "active": "1"}
    assert ticket_from(INCIDENT, as_object) == ticket_from(INCIDENT, as_string)
    ticket = ticket_from(INCIDENT, as_string)
    assert (ticket.caller_id, ticket.state, ticket.subject, ticket.active) == ("155", "-2", "", True)
    assert ticket_from(INCIDENT, {**base, "active": "false"}).active is False
    assert [flag(v, default=True) for v in ("0", 0, False, "no", "1", 1, "true", None, "?")] == [
        False,
        False,
        False,
        False,
        True,
        True,
        True,
        True,
        True,
    ]
    assert text({"display_value": "Anna"}) == "Anna"
    assert person_from({"sys_id": "1", "email": "a@b", "first_name": "A", "last_name": "B"}).name == "A B"
    # [doc] the name is first and last name; an undocumented display_name is not relied on.
    assert person_from({"sys_id": "1", "email": "a@b", "first_name": "A", "display_name": "X Y"}).name == "A"
    assert person_from({"sys_id": "1", "email": "a@b", "last_name": " B ", "first_name": None}).name == "B"


async def test_two_identical_files_are_two_only_if_two_rows_show_them(
    client: SimpleOneClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Without a Document ID, rows are matched by name and size: one landed row stands for one
    of two identical wanted files, not both (the other, never sent, would be lost)."""
    ref = await client.create_ticket(INCIDENT, {"subject": "x"})
    await client.upload_files(INCIDENT, ref.sys_id, [_file(tmp_path, "scan.pdf", b"pdf")])
    twins = [Attachment("scan.pdf", 3), Attachment("scan.pdf", 3)]
    found = await client.find_attachments(INCIDENT, ref.sys_id, twins, since=ref.updated_at)
    assert len(found) == 1


async def test_an_upload_answered_2xx_with_a_failed_status_is_unclear_not_done(
    client: SimpleOneClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    ref = await client.create_ticket(INCIDENT, {"subject": "x"})
    emulator.faults.fail_next(1, status=200, method="POST", path_prefix="/v1/attachments/")
    with pytest.raises(TicketSystemUnavailable) as raised:
        await client.upload_files(INCIDENT, ref.sys_id, [_file(tmp_path, "a.txt", b"a")])
    assert raised.value.maybe_done
