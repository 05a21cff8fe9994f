"""The SimpleOne emulator over real HTTP on loopback, spoken to with plain httpx."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import httpx
import pytest

from emulators.simpleone.server import RunningEmulator, serve_forever, start_emulator
from emulators.simpleone.state import STATE_TITLES, ManualClock
from tests.simpleone_fixtures import PASSWORD, STATIC_TOKEN, USERNAME

INCIDENTS = "/rest/v1/table/itsm_incident"


def data(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "OK"
    assert isinstance(body["data"], list)
    return body["data"]


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "ERROR" and body["error"]["message"]


# --------------------------------------------------------------------------- auth


async def test_login_is_form_encoded_and_returns_a_32_char_auth_key(emulator: RunningEmulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        form = {"username": USERNAME, "password": PASSWORD, "language": "ru"}
        reply = await http.post("/rest/v1/auth/login", data=form)
        assert reply.status_code == 200
        body = reply.json()
        assert body["status"] == "OK"
        token = body["data"]["auth_key"]
        assert isinstance(token, str) and len(token) == 32
        listed = await http.get(INCIDENTS, headers={"Authorization": f"Bearer {token}"})
        assert data(listed) == []
        assert_error(await http.post("/rest/v1/auth/login", json=form), 400)
        bad = {**form, "password": "wrong"}
        assert_error(await http.post("/rest/v1/auth/login", data=bad), 401)


async def test_the_documented_login_takes_json_without_the_rest_prefix(emulator: RunningEmulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        body = {"username": USERNAME, "password": PASSWORD}
        reply = await http.post("/v1/auth/login", json=body)
        assert reply.status_code == 200
        token = reply.json()["data"]["auth_key"]
        assert isinstance(token, str) and len(token) == 32
        listed = await http.get(INCIDENTS, headers={"Authorization": f"Bearer {token}"})
        assert data(listed) == []
        assert_error(await http.post("/v1/auth/login", data=body), 400)
        assert_error(await http.post("/v1/auth/login", json={**body, "password": "wrong"}), 401)
        assert_error(await http.post("/v1/auth/login", json=["not", "an", "object"]), 400)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic Ym90Ondyb25n"},  # bot:wrong
        {"Authorization": "Digest whatever"},
    ],
)
async def test_every_api_endpoint_needs_valid_credentials(
    emulator: RunningEmulator, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=emulator.url, headers=headers) as http:
        for method, path in [
            ("GET", INCIDENTS),
            ("POST", INCIDENTS),
            ("GET", f"{INCIDENTS}/166031411802010329"),
            ("PATCH", f"{INCIDENTS}/166031411802010329"),
            ("POST", "/v1/attachments/upload/itsm_incident/166031411802010329"),
            ("GET", "/v1/attachments/download/166031411802010329"),
        ]:
            assert_error(await http.request(method, path), 401)


async def test_basic_and_static_token_are_accepted(emulator: RunningEmulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        assert data(await http.get(INCIDENTS, auth=(USERNAME, PASSWORD))) == []
        static = {"Authorization": f"Bearer {STATIC_TOKEN}"}
        assert data(await http.get(INCIDENTS, headers=static)) == []


async def test_issued_tokens_expire_by_switch_and_by_ttl(
    emulator: RunningEmulator, clock: ManualClock
) -> None:
    async def login(http: httpx.AsyncClient) -> dict[str, str]:
        form = {"username": USERNAME, "password": PASSWORD, "language": "ru"}
        token = (await http.post("/rest/v1/auth/login", data=form)).json()["data"]["auth_key"]
        return {"Authorization": f"Bearer {token}"}

    async with httpx.AsyncClient(base_url=emulator.url) as http:
        old = await login(http)
        emulator.faults.expire_tokens()
        assert_error(await http.get(INCIDENTS, headers=old), 401)
        fresh = await login(http)
        assert data(await http.get(INCIDENTS, headers=fresh)) == []
        clock.advance(3601)  # the fixture's token_ttl is an hour
        assert_error(await http.get(INCIDENTS, headers=fresh), 401)
        static = {"Authorization": f"Bearer {STATIC_TOKEN}"}
        assert data(await http.get(INCIDENTS, headers=static)) == []


# --------------------------------------------------------------------------- Table API


async def test_create_returns_a_one_element_list_with_platform_fields(
    raw: httpx.AsyncClient, emulator: RunningEmulator, clock: ManualClock
) -> None:
    caller = emulator.state.add_user("ivan.petrov@ranepa.ru", "Ivan", "Petrov")
    reply = await raw.post(INCIDENTS, json={"subject": "No wifi", "caller": caller, "contact_type": 20})
    (record,) = data(reply)
    assert re.fullmatch(r"\d{18}", record["sys_id"])
    assert record["number"] == "INC0000001"
    assert record["sys_created_at"] == record["sys_updated_at"] == "2025-01-15 09:00:00"
    assert record["state"] == "-2" and record["active"] == "1"
    assert record["contact_type"] == "20"  # stored and returned as text
    assert record["caller"] == {
        "value": caller,
        "link": f"{emulator.url}/rest/v1/table/user/{caller}",
    }
    clock.advance(60)
    (second,) = data(await raw.post(INCIDENTS, json={"subject": "Printer"}))
    assert second["number"] == "INC0000002" and second["sys_created_at"] == "2025-01-15 09:01:00"
    assert second["sys_id"] != record["sys_id"]


async def test_numbers_are_per_table(raw: httpx.AsyncClient) -> None:
    numbers = {}
    for table in ("itsm_incident", "itsm_request", "itsm_inquiry", "itsm_task"):
        (record,) = data(await raw.post(f"/rest/v1/table/{table}", json={"subject": "x"}))
        numbers[table] = record["number"]
    assert numbers == {
        "itsm_incident": "INC0000001",
        "itsm_request": "REQ0000001",
        "itsm_inquiry": "INQ0000001",
        "itsm_task": "TASK0000001",
    }


async def test_platform_fields_cannot_be_written_through_the_api(raw: httpx.AsyncClient) -> None:
    body = {"subject": "x", "sys_id": "1", "number": "INC9999999", "sys_created_at": "1999-01-01 00:00:00"}
    (record,) = data(await raw.post(INCIDENTS, json=body))
    assert record["sys_id"] != "1" and record["number"] == "INC0000001"
    assert record["sys_created_at"] != "1999-01-01 00:00:00"


async def test_state_labels_are_served_from_sys_choice(raw: httpx.AsyncClient) -> None:
    query = "table_id=itsm_request^column_id=state^language=ru^ORDERBYsequence"
    rows = data(await raw.get("/rest/v1/table/sys_choice", params={"sysparm_query": query,
                                                                     "sysparm_fields": "value,title",
                                                                     "sysparm_limit": "100"}))
    assert {r["value"]: r["title"] for r in rows} == STATE_TITLES
    assert rows[0] == {"value": "-2", "title": "Зарегистрирован"}
    (one,) = data(await raw.get("/rest/v1/table/sys_choice", params={
        "sysparm_query": "table_id=itsm_incident^column_id=state^value=2^language=ru"}))
    assert one["title"] == "В работе" and len(one["sys_id"]) == 18


async def test_a_state_display_value_is_its_label(raw: httpx.AsyncClient, emulator: RunningEmulator) -> None:
    sys_id = emulator.state.add_record("itsm_incident", {"subject": "s", "state": "7"})
    emulator.state.add_record("itsm_incident", {"subject": "unknown code", "state": "99"})
    params = {"sysparm_fields": "subject,state", "sysparm_query": "ORDERBYsubject"}
    assert [r["state"] for r in data(await raw.get(INCIDENTS, params=params))] == ["7", "99"]
    shown = data(await raw.get(INCIDENTS, params={**params, "sysparm_display_value": "1"}))
    assert [r["state"] for r in shown] == ["Выполнен", "99"]  # a code with no label shows as it is
    (alone,) = data(await raw.get(f"{INCIDENTS}/{sys_id}", params={"sysparm_display_value": "1"}))
    assert alone["state"] == "Выполнен" and alone["subject"] == "s"


async def test_reference_shapes_display_values_and_dot_walked_fields(
    raw: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    caller = emulator.state.add_user("olga@ranepa.ru", "Olga", "Smirnova")
    (created,) = data(await raw.post(INCIDENTS, json={"subject": "x", "caller": caller}))
    path = f"{INCIDENTS}/{created['sys_id']}"
    (plain,) = data(await raw.get(path, params={"sysparm_exclude_reference_link": "1"}))
    assert plain["caller"] == caller
    (shown,) = data(await raw.get(path, params={"sysparm_display_value": "1"}))
    assert shown["caller"]["display_value"] == "Olga Smirnova"
    assert shown["caller"]["link"].endswith(f"/rest/v1/table/user/{caller}")
    params = {"sysparm_display_value": "true", "sysparm_exclude_reference_link": "true"}
    (shown_plain,) = data(await raw.get(path, params=params))
    assert shown_plain["caller"] == "Olga Smirnova"
    params = {"sysparm_fields": "number, caller.email,caller.last_name,nonexistent"}
    (picked,) = data(await raw.get(path, params=params))
    assert picked == {
        "number": "INC0000001",
        "caller.email": "olga@ranepa.ru",
        "caller.last_name": "Smirnova",
    }
    assert_error(await raw.get(path, params={"sysparm_display_value": "maybe"}), 400)


async def test_list_pages_with_default_limit_20(raw: httpx.AsyncClient, emulator: RunningEmulator) -> None:
    for i in range(45):
        emulator.state.add_record("itsm_incident", {"subject": f"s{i:02d}"})
    first = data(await raw.get(INCIDENTS))
    assert [r["subject"] for r in first] == [f"s{i:02d}" for i in range(20)]
    third = data(await raw.get(INCIDENTS, params={"sysparm_page": 3}))
    assert [r["subject"] for r in third] == [f"s{i:02d}" for i in range(40, 45)]
    small = data(await raw.get(INCIDENTS, params={"sysparm_limit": 7, "sysparm_page": 2}))
    assert [r["subject"] for r in small] == [f"s{i:02d}" for i in range(7, 14)]
    assert data(await raw.get(INCIDENTS, params={"sysparm_page": 4})) == []
    for bad in ({"sysparm_limit": 0}, {"sysparm_page": 0}, {"sysparm_limit": "x"}, {"sysparm_page": "-1"}):
        assert_error(await raw.get(INCIDENTS, params=bad), 400)


async def test_query_filters_and_orders(raw: httpx.AsyncClient, emulator: RunningEmulator) -> None:
    state = emulator.state
    me, other = state.add_user("me@ranepa.ru", "Me", "Self"), state.add_user("x@ranepa.ru", "X", "Y")
    rows = [
        ("a", me, "1", "-2", "2025-01-10 10:00:00"),
        ("b", me, "0", "7", "2025-01-12 10:00:00"),
        ("c", me, "1", "2", "2025-01-11 10:00:00"),
        ("d", other, "1", "2", "2025-01-13 10:00:00"),
    ]
    for subject, caller, active, st, at in rows:
        state.add_record(
            "itsm_incident",
            {"subject": subject, "caller": caller, "active": active, "state": st, "sys_created_at": at},
        )

    async def subjects(query: str) -> list[str]:
        return [r["subject"] for r in data(await raw.get(INCIDENTS, params={"sysparm_query": query}))]

    assert await subjects(f"caller={me}^active=1^ORDERBYDESCsys_created_at") == ["c", "a"]
    assert await subjects(f"caller={me}^ORDERBYsys_created_at") == ["a", "c", "b"]
    assert await subjects("stateIN-2@7^ORDERBYsubject") == ["a", "b"]
    assert await subjects("stateNOT IN-2@7^ORDERBYDESCsubject") == ["d", "c"]
    assert await subjects("subject=a^ORsubject=d") == ["a", "d"]
    assert await subjects("sys_created_at>=2025-01-12 00:00:00") == ["b", "d"]
    assert await subjects("caller.email=x@ranepa.ru") == ["d"]
    assert await subjects("subjectLIKEB^ORstate>5") == ["b"]
    assert_error(await raw.get(INCIDENTS, params={"sysparm_query": "caller=1^^x"}), 400)
    assert_error(await raw.get(INCIDENTS, params={"sysparm_query": "Nonsense"}), 400)


async def test_patch_and_put_update_and_journal_fields_append(
    raw: httpx.AsyncClient, emulator: RunningEmulator, clock: ManualClock
) -> None:
    (created,) = data(await raw.post(INCIDENTS, json={"subject": "x", "work_notes": "opened by bot"}))
    path = f"{INCIDENTS}/{created['sys_id']}"
    clock.advance(30)
    (patched,) = data(await raw.patch(path, json={"additional_comments": "first", "urgency": 2}))
    assert patched["urgency"] == "2" and patched["sys_updated_at"] == "2025-01-15 09:00:30"
    assert "additional_comments" not in patched
    clock.advance(30)
    data(await raw.put(path, json={"additional_comments": "second"}))
    entries = emulator.state.journal("itsm_incident", created["sys_id"])
    assert [(e.field, e.text, e.author) for e in entries] == [
        ("work_notes", "opened by bot", USERNAME),
        ("additional_comments", "first", USERNAME),
        ("additional_comments", "second", USERNAME),
    ]
    assert entries[2].created_at == "2025-01-15 09:01:00"
    over_http = (await raw.get(f"/_emulator/journal/itsm_incident/{created['sys_id']}")).json()
    assert [e["text"] for e in over_http] == ["opened by bot", "first", "second"]


async def test_bad_bodies_unknown_tables_and_records_are_json_errors(raw: httpx.AsyncClient) -> None:
    (created,) = data(await raw.post(INCIDENTS, json={"subject": "x"}))
    path = f"{INCIDENTS}/{created['sys_id']}"
    assert_error(
        await raw.post(INCIDENTS, content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    assert_error(await raw.post(INCIDENTS, json=["a list"]), 400)
    assert_error(await raw.patch(path, json={"subject": {"nested": True}}), 400)
    assert_error(await raw.get("/rest/v1/table/no_such_table"), 404)
    assert_error(await raw.post("/rest/v1/table/no_such_table", json={}), 404)
    assert_error(await raw.get(f"{INCIDENTS}/166031411802099999"), 404)
    assert_error(await raw.patch(f"{INCIDENTS}/166031411802099999", json={"subject": "y"}), 404)
    assert_error(await raw.get("/rest/v2/anything"), 404)
    assert_error(await raw.request("TRACE", INCIDENTS), 405)


async def test_delete_removes_the_record(raw: httpx.AsyncClient) -> None:
    (created,) = data(await raw.post(INCIDENTS, json={"subject": "x"}))
    path = f"{INCIDENTS}/{created['sys_id']}"
    assert data(await raw.delete(path)) == []
    assert_error(await raw.get(path), 404)
    assert_error(await raw.delete(path), 404)


async def test_users_table_and_auto_created_demo_users() -> None:
    emulator = await start_emulator(auto_users_domains=["ranepa.ru"])
    try:
        async with httpx.AsyncClient(base_url=emulator.url, auth=("bot", "bot-password")) as http:
            query = {"sysparm_query": "email=anna.kuznetsova@ranepa.ru"}
            (user,) = data(await http.get("/rest/v1/table/user", params=query))
            assert user["first_name"] == "Anna" and user["last_name"] == "Kuznetsova"
            assert user["active"] == "1" and user["username"] == "anna.kuznetsova"
            assert "display_name" not in user  # [doc] not a documented person field
            (again,) = data(await http.get("/rest/v1/table/user", params=query))
            assert again["sys_id"] == user["sys_id"]
            for other in ("email=someone@gmail.com", "email=@ranepa.ru", "emailLIKEx@ranepa.ru"):
                assert data(await http.get("/rest/v1/table/user", params={"sysparm_query": other})) == []
        assert len(emulator.state.records("user")) == 1
    finally:
        await emulator.close()


PEOPLE_FIELDS = "sys_id,email,first_name,last_name,username,active"


async def test_an_employee_is_found_in_employee_and_in_user_a_student_only_in_user(
    raw: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    # [doc] `employee` is a child table of `user`: one record, one sys_id, seen through both.
    staff = emulator.state.add_user("Ivanov-II@RANEPA.ru", "Иван", "Иванов", table="employee")
    student = emulator.state.add_user("student@ranepa.ru", "Пётр", "Петров")
    for table, expected in (("employee", [staff]), ("user", [staff, student])):
        found = data(await raw.get(f"/rest/v1/table/{table}", params={"sysparm_fields": PEOPLE_FIELDS}))
        assert [r["sys_id"] for r in found] == expected
    # The documented look-up, typed in another case: [doc] `=` is case-insensitive.
    query = {"sysparm_query": "active=1^email=ivanov-ii@ranepa.ru", "sysparm_fields": PEOPLE_FIELDS}
    for table in ("employee", "user"):
        (person,) = data(await raw.get(f"/rest/v1/table/{table}", params=query))
        assert person == {"sys_id": staff, "email": "Ivanov-II@RANEPA.ru", "first_name": "Иван",
                          "last_name": "Иванов", "username": "Ivanov-II", "active": "1"}
    query["sysparm_query"] = "active=1^email=STUDENT@ranepa.ru"
    assert data(await raw.get("/rest/v1/table/employee", params=query)) == []
    assert [r["sys_id"] for r in data(await raw.get("/rest/v1/table/user", params=query))] == [student]
    # Read one by sys_id through the parent; a change through one table shows in the other.
    (read,) = data(await raw.get(f"/rest/v1/table/user/{staff}"))
    assert read["last_name"] == "Иванов"
    data(await raw.patch(f"/rest/v1/table/user/{staff}", json={"active": "0"}))
    (changed,) = data(await raw.get(f"/rest/v1/table/employee/{staff}"))
    assert changed["active"] == "0"
    assert_error(await raw.get(f"/rest/v1/table/employee/{student}"), 404)
    # A ticket's caller may be an employee: the reference (to `user`) resolves to the same record.
    (ticket,) = data(await raw.post(INCIDENTS, json={"subject": "x", "caller": staff}))
    (shown,) = data(await raw.get(f"{INCIDENTS}/{ticket['sys_id']}",
                                  params={"sysparm_display_value": "1", "sysparm_fields": "caller,caller.email"}))
    assert shown["caller"]["display_value"] == "Иван Иванов" and shown["caller.email"] == "Ivanov-II@RANEPA.ru"
    # Deleted through the parent, the record leaves the child table too.
    assert data(await raw.delete(f"/rest/v1/table/user/{staff}")) == []
    assert_error(await raw.get(f"/rest/v1/table/employee/{staff}"), 404)


@pytest.mark.parametrize("kind", ["employee", "user"])
async def test_auto_created_people_can_be_employees_or_students(kind: str) -> None:
    emulator = await start_emulator(auto_users_domains=["ranepa.ru"], auto_users_table=kind)
    try:
        async with httpx.AsyncClient(base_url=emulator.url, auth=("bot", "bot-password")) as http:
            # The client's look-up: employee first, then user, with other conditions beside the email.
            query = {"sysparm_query": "active=1^email=Olga.Smirnova@ranepa.ru"}
            in_employee = data(await http.get("/rest/v1/table/employee", params=query))
            (in_user,) = data(await http.get("/rest/v1/table/user", params=query))
            assert in_user["first_name"] == "Olga" and in_user["last_name"] == "Smirnova"
            assert [r["sys_id"] for r in in_employee] == ([in_user["sys_id"]] if kind == "employee" else [])
            # The same address in another case is the same person, not a second one.
            query = {"sysparm_query": "active=1^email=olga.smirnova@RANEPA.ru"}
            (again,) = data(await http.get("/rest/v1/table/user", params=query))
            assert again["sys_id"] == in_user["sys_id"]
            query = {"sysparm_query": "email=a@ranepa.ru^ORemail=b@ranepa.ru"}
            assert data(await http.get("/rest/v1/table/user", params=query)) == []
        assert len(emulator.state.records("user")) == 1
        assert len(emulator.state.records("employee")) == (1 if kind == "employee" else 0)
    finally:
        await emulator.close()
    with pytest.raises(ValueError):
        await start_emulator(auto_users_table="itsm_incident")


async def test_every_reply_carries_messages_beside_status_and_data(
    emulator: RunningEmulator, raw: httpx.AsyncClient
) -> None:
    # [doc] the documented replies are {"messages": [], "status": "OK", "data": [...]}.
    (created,) = data(reply := await raw.post(INCIDENTS, json={"subject": "x"}))
    replies = [
        reply,
        await raw.get(INCIDENTS),
        await raw.get(f"{INCIDENTS}/{created['sys_id']}"),
        await raw.patch(f"{INCIDENTS}/{created['sys_id']}", json={"subject": "y"}),
        await raw.post(f"/v1/attachments/upload/itsm_incident/{created['sys_id']}",
                       files={"files": ("a.txt", b"a", "text/plain")}),
        await raw.delete(f"{INCIDENTS}/{created['sys_id']}"),
        await raw.post("/rest/v1/auth/login", data={"username": USERNAME, "password": PASSWORD}),
        await raw.post("/v1/auth/login", json={"username": USERNAME, "password": PASSWORD}),
        await raw.get(f"{INCIDENTS}/{created['sys_id']}"),  # an error (404)
    ]
    for one in replies:
        assert one.json()["messages"] == [], one.text
    emulator.state.messages.append({"message": "Field 'x' is read-only"})
    body = (await raw.get(INCIDENTS)).json()
    assert body["messages"] == [{"message": "Field 'x' is read-only"}] and body["status"] == "OK"


async def test_set_field_simulates_an_agent_and_bumps_updated_at(
    raw: httpx.AsyncClient, emulator: RunningEmulator, clock: ManualClock
) -> None:
    sys_id = emulator.state.add_record("itsm_incident", {"subject": "x"})
    clock.advance(3600)
    emulator.state.set_field("itsm_incident", sys_id, "state", "2")
    query = {"sysparm_query": "sys_updated_at>2025-01-15 09:30:00"}
    (changed,) = data(await raw.get(INCIDENTS, params=query))
    assert changed["state"] == "2" and changed["sys_updated_at"] == "2025-01-15 10:00:00"
    reply = await raw.post(
        "/_emulator/set_field",
        json={"table": "itsm_incident", "sys_id": sys_id, "field": "active", "value": False},
    )
    assert reply.status_code == 200
    assert emulator.state.record("itsm_incident", sys_id)["active"] == "0"  # type: ignore[index]


# --------------------------------------------------------------------------- attachments


async def test_upload_list_and_download_attachments(
    raw: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    (ticket,) = data(await raw.post(INCIDENTS, json={"subject": "x"}))
    url = f"/v1/attachments/upload/itsm_incident/{ticket['sys_id']}"
    (one,) = data(await raw.post(url, files={"files": ("log.txt", b"hello", "text/plain")}))
    assert one["file_name"] == "log.txt" and one["mime_content_type"] == "text/plain"
    assert one["size_bytes"] == "5" and one["sys_created_at"]
    doc_id = one["record_document_id"]
    several: Any = [
        ("files[1]", ("a.png", b"\x89PNG....", "image/png")),
        ("files[2]", ("b.pdf", b"%PDF-1.4", "application/pdf")),
        ("note", (None, b"ignored form field")),
    ]
    created = data(await raw.post(url, files=several))
    assert [a["file_name"] for a in created] == ["a.png", "b.pdf"]
    assert {a["record_document_id"] for a in created} == {doc_id}
    query = {"sysparm_query": f"record_document_id={doc_id}^ORDERBYfile_name"}
    listed = data(await raw.get("/rest/v1/table/sys_attachment", params=query))
    assert [a["file_name"] for a in listed] == ["a.png", "b.pdf", "log.txt"]
    got = await raw.get(f"/v1/attachments/download/{created[0]['sys_id']}")
    assert (
        got.status_code == 200
        and got.content == b"\x89PNG...."
        and got.headers["content-type"] == "image/png"
    )
    assert emulator.state.attachment_bytes(one["sys_id"]) == b"hello"
    assert len(emulator.state.attachments("itsm_incident", ticket["sys_id"])) == 3


async def test_record_document_id_is_a_document_id_not_the_sys_id(
    raw: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    """[doc] sys_attachment.record_document_id holds the record's Document ID, a 32-character
    UUID built from the table's and the record's ids: the naive query by sys_id finds nothing."""
    (ticket,) = data(await raw.post(INCIDENTS, json={"subject": "x"}))
    (other,) = data(await raw.post(INCIDENTS, json={"subject": "y"}))
    (request,) = data(await raw.post("/rest/v1/table/itsm_request", json={"subject": "z"}))
    docs = {}
    for table, record in (("itsm_incident", ticket), ("itsm_incident", other), ("itsm_request", request)):
        url = f"/v1/attachments/upload/{table}/{record['sys_id']}"
        (att,) = data(await raw.post(url, files={"files": ("a.txt", b"a", "text/plain")}))
        docs[record["sys_id"]] = att["record_document_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", att["record_document_id"])
        assert att["record_document_id"] == emulator.state.document_id(table, record["sys_id"])
    assert len(set(docs.values())) == 3  # one per record, the table's id taken in
    attachments = "/rest/v1/table/sys_attachment"
    naive = {"sysparm_query": f"record_document_id={ticket['sys_id']}"}
    assert data(await raw.get(attachments, params=naive)) == []
    by_doc = {"sysparm_query": f"record_document_id={docs[ticket['sys_id']]}"}
    assert [a["file_name"] for a in data(await raw.get(attachments, params=by_doc))] == ["a.txt"]
    # Deleting a record takes its attachments, and only its own.
    assert (await raw.delete(f"{INCIDENTS}/{ticket['sys_id']}")).status_code == 200
    assert len(emulator.state.records("sys_attachment")) == 2
    assert len(emulator.state.attachments("itsm_incident", other["sys_id"])) == 1


async def test_the_upload_answer_can_be_made_empty(raw: httpx.AsyncClient, emulator: RunningEmulator) -> None:
    """The upload's reply body is undocumented: the emulator answers the envelope with the new
    records by default, or (upload_reply = "empty") 200 and no body; the file is stored either way."""
    (ticket,) = data(await raw.post(INCIDENTS, json={"subject": "x"}))
    url = f"/v1/attachments/upload/itsm_incident/{ticket['sys_id']}"
    emulator.state.upload_reply = "empty"
    reply = await raw.post(url, files={"files": ("log.txt", b"hello", "text/plain")})
    assert reply.status_code == 200 and reply.content == b""
    (stored,) = emulator.state.attachments("itsm_incident", ticket["sys_id"])
    got = await raw.get(f"/v1/attachments/download/{stored['sys_id']}")
    assert got.status_code == 200 and got.content == b"hello"
    assert "filename*=UTF-8''log.txt" in got.headers["content-disposition"]


async def test_upload_errors(raw: httpx.AsyncClient, emulator: RunningEmulator) -> None:
    (ticket,) = data(await raw.post(INCIDENTS, json={"subject": "x"}))
    good = {"files": ("a.txt", b"x", "text/plain")}
    assert_error(await raw.post("/v1/attachments/upload/itsm_incident/166031411802099999", files=good), 404)
    assert_error(await raw.post("/v1/attachments/upload/nope/1", files=good), 404)
    url = f"/v1/attachments/upload/itsm_incident/{ticket['sys_id']}"
    assert_error(await raw.post(url, json={"files": "x"}), 400)
    assert_error(await raw.post(url, files={"other": ("a.txt", b"x", "text/plain")}), 400)
    assert_error(await raw.get("/v1/attachments/download/166031411802099999"), 404)
    emulator.state.max_upload_bytes = 10
    assert_error(
        await raw.post(url, files={"files": ("big.bin", b"x" * 11, "application/octet-stream")}), 413
    )
    assert emulator.state.attachments("itsm_incident", ticket["sys_id"]) == []


# --------------------------------------------------------------------------- faults


async def test_fail_next_hits_only_matching_requests(
    raw: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    emulator.faults.fail_next(2, status=500, method="POST", path_prefix=INCIDENTS)
    assert data(await raw.get(INCIDENTS)) == []  # GET does not match
    assert_error(await raw.post(INCIDENTS, json={"subject": "x"}), 500)
    assert_error(await raw.post(INCIDENTS, json={"subject": "x"}), 500)
    assert len(data(await raw.post(INCIDENTS, json={"subject": "x"}))) == 1
    assert len(emulator.state.records("itsm_incident")) == 1  # failed requests wrote nothing


@pytest.mark.parametrize("status", [200, 502])
async def test_html_pages(raw: httpx.AsyncClient, emulator: RunningEmulator, status: int) -> None:
    emulator.faults.html_next(status=status)
    reply = await raw.get(INCIDENTS)
    assert reply.status_code == status and reply.headers["content-type"].startswith("text/html")
    assert "<html>" in reply.text
    assert data(await raw.get(INCIDENTS)) == []


async def test_drop_and_hang_close_the_connection_without_an_answer(
    raw: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    emulator.faults.drop_next()
    with pytest.raises(httpx.RemoteProtocolError):
        await raw.get(INCIDENTS)
    emulator.faults.hang_next(seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        await raw.get(INCIDENTS, timeout=httpx.Timeout(5, read=0.2))
    emulator.faults.hang_next(seconds=0.05)
    with pytest.raises(httpx.RemoteProtocolError):  # a short hang still ends with no answer
        await raw.get(INCIDENTS)
    assert data(await raw.get(INCIDENTS)) == []
    # 0: the 30 s hang is still waiting behind the client's back (close() ends it).
    assert [e.status for e in emulator.state.request_log] == [499, 0, 499, 200]


@pytest.mark.parametrize("mode", ["error", "html", "hang", "drop"])
async def test_fail_after_write_keeps_the_write(
    raw: httpx.AsyncClient, emulator: RunningEmulator, mode: str
) -> None:
    emulator.faults.fail_after_write(mode=mode, seconds=0.05)  # type: ignore[arg-type]
    assert data(await raw.get(INCIDENTS)) == []  # reads do not consume it
    try:
        reply = await raw.post(INCIDENTS, json={"subject": "lost answer"})
    except httpx.TransportError:
        assert mode in {"hang", "drop"}
    else:
        assert mode in {"error", "html"} and reply.status_code >= 500
    (stored,) = emulator.state.records("itsm_incident")
    assert stored["subject"] == "lost answer"
    assert len(data(await raw.post(INCIDENTS, json={"subject": "fine"}))) == 1


async def test_after_write_fault_waits_for_a_write_that_succeeds(
    raw: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    emulator.faults.fail_after_write()
    assert_error(await raw.patch(f"{INCIDENTS}/166031411802099999", json={"subject": "x"}), 404)
    assert_error(await raw.post(INCIDENTS, json={"subject": "x"}), 500)
    assert emulator.faults.pending() == []


async def test_outage_and_latency(raw: httpx.AsyncClient, emulator: RunningEmulator) -> None:
    emulator.faults.set_outage(True)
    assert_error(await raw.get(INCIDENTS), 503)
    assert_error(await raw.post("/rest/v1/auth/login", data={"username": "bot"}), 503)
    emulator.faults.set_outage(False)
    emulator.faults.latency = 0.1
    started = time.monotonic()
    assert data(await raw.get(INCIDENTS)) == []
    assert time.monotonic() - started >= 0.1


async def test_a_random_error_rate_fails_about_that_share(raw: httpx.AsyncClient, emulator: RunningEmulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as control:
        assert (await control.post("/_emulator/faults", json={"error_rate": 0.3})).json()["error_rate"] == 0.3
        assert_error(await control.post("/_emulator/faults", json={"error_rate": 1.5}), 400)
        statuses = [(await raw.post(INCIDENTS, json={"subject": f"s{n}"})).status_code for n in range(400)]
        failed = statuses.count(500)
        assert statuses.count(200) + statuses.count(201) + failed == 400
        assert 80 <= failed <= 160  # 30 % of 400, give or take
        # Half of them come after the write: more records than successes.
        assert len(emulator.state.records("itsm_incident")) > 400 - failed
        await control.post("/_emulator/faults", json={"clear": True})
        assert emulator.faults.error_rate == 0.0


async def test_fail_every_fails_every_nth_request_before_it_is_handled(
    raw: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as control:
        assert (await control.post("/_emulator/faults", json={"fail_every": 3})).json()["fail_every"] == 3
        assert_error(await control.post("/_emulator/faults", json={"fail_every": -1}), 400)
        assert_error(await control.post("/_emulator/faults", json={"fail_every": "3"}), 400)
        statuses = [(await raw.post(INCIDENTS, json={"subject": f"s{n}"})).status_code for n in range(9)]
        assert [s == 500 for s in statuses] == [False, False, True] * 3
        assert len(emulator.state.records("itsm_incident")) == 6  # a failed one was never handled
        await control.post("/_emulator/faults", json={"clear": True})
        assert emulator.faults.fail_every == 0
        assert [(await raw.get(INCIDENTS)).status_code for _ in range(4)] == [200] * 4


async def test_faults_state_and_reset_over_http(raw: httpx.AsyncClient, emulator: RunningEmulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as control:  # the control API needs no auth
        spec = {
            "add": [
                {"kind": "error", "count": 1, "status": 429, "method": "GET"},
                {"kind": "error", "after_write": True, "path_prefix": "/rest/v1/table/itsm_request"},
            ],
            "outage": False,
        }
        reply = await control.post("/_emulator/faults", json=spec)
        assert reply.status_code == 200 and len(reply.json()["rules"]) == 2
        assert_error(await raw.get(INCIDENTS), 429)
        assert_error(await raw.post("/rest/v1/table/itsm_request", json={"subject": "r"}), 500)
        for bad in (
            {"add": [{"kind": "explode"}]},
            {"latency": -1},
            {"bogus": 1},
            {"add": [{"kind": "error", "count": 0}]},
        ):
            assert_error(await control.post("/_emulator/faults", json=bad), 400)
        await control.post("/_emulator/faults", json={"outage": True})
        assert_error(await raw.get(INCIDENTS), 503)
        assert (await control.get("/_emulator/state")).status_code == 200  # control ignores outage
        await control.post("/_emulator/faults", json={"clear": True})

        sys_id = (
            await control.post(
                "/_emulator/users", json={"email": "a@ranepa.ru", "first_name": "A", "last_name": "B"}
            )
        ).json()["sys_id"]
        person = {"email": "e@ranepa.ru", "first_name": "E", "last_name": "F", "table": "employee"}
        staff = (await control.post("/_emulator/users", json=person)).json()["sys_id"]
        assert_error(await control.post("/_emulator/users", json={**person, "table": "itsm_incident"}), 400)
        data(await raw.post(INCIDENTS, json={"subject": "x", "caller": sys_id, "additional_comments": "hi"}))
        dump = (await control.get("/_emulator/state")).json()
        assert [r["subject"] for r in dump["tables"]["itsm_request"]] == ["r"]
        assert [r["email"] for r in dump["tables"]["user"]] == ["a@ranepa.ru", "e@ranepa.ru"]
        assert [r["sys_id"] for r in dump["tables"]["employee"]] == [staff]
        (journal,) = dump["journals"].values()
        assert journal[0]["text"] == "hi"
        assert ["GET", INCIDENTS, 429] in dump["requests"]

        assert (await control.post("/_emulator/reset")).status_code == 200
        dump = (await control.get("/_emulator/state")).json()
        # Empty but for the instance's configuration: the state labels in sys_choice.
        assert all(rows == [] for name, rows in dump["tables"].items() if name != "sys_choice")
        assert dump["journals"] == {} and len(dump["tables"]["sys_choice"]) == 2 * len(STATE_TITLES)
        assert data(await raw.get(INCIDENTS)) == []


# --------------------------------------------------------------------------- running it


async def test_closing_ends_a_hanging_request_promptly() -> None:
    emulator = await start_emulator()
    emulator.faults.hang_next()  # the default hang is minutes long
    async with httpx.AsyncClient(base_url=emulator.url, auth=("bot", "bot-password")) as http:
        pending = asyncio.create_task(http.get(INCIDENTS))
        while not emulator.state.request_log:  # noqa: ASYNC110 - no event to wait on in the emulator
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await emulator.close()
        assert time.monotonic() - started < 3
        with pytest.raises(httpx.TransportError):
            await pending


async def test_serve_forever_logs_url_and_credentials_and_stops_when_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="emulators.simpleone.server")
    task = asyncio.create_task(serve_forever("127.0.0.1", 0, username="demo", password="demo-pass"))
    url = None
    for _ in range(200):
        found = re.search(r"listening on (http://\S+)", caplog.text)
        if found:
            url = found.group(1)
            break
        await asyncio.sleep(0.01)
    assert url is not None
    assert (
        "username=demo" in caplog.text and "password=demo-pass" in caplog.text and "ranepa.ru" in caplog.text
    )
    async with httpx.AsyncClient(base_url=url, auth=("demo", "demo-pass")) as http:
        lookup = await http.get("/rest/v1/table/user", params={"sysparm_query": "email=new.person@ranepa.ru"})
        assert data(lookup)[0]["email"] == "new.person@ranepa.ru"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with httpx.AsyncClient(base_url=url) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(INCIDENTS)


async def test_inactive_tickets_updated_since_a_time(
    raw: httpx.AsyncClient, emulator: RunningEmulator, clock: ManualClock
) -> None:
    old = emulator.state.add_record("itsm_incident", {"subject": "old", "active": "0"})
    clock.advance(3600)  # 10:00:00
    recent = emulator.state.add_record("itsm_incident", {"subject": "recent"})
    emulator.state.add_record("itsm_incident", {"subject": "open"})
    emulator.state.set_field("itsm_incident", recent, "active", "0")
    query = "active=0^sys_updated_at>=2025-01-15 10:00:00^ORDERBYDESCsys_updated_at"
    assert [r["sys_id"] for r in data(await raw.get(INCIDENTS, params={"sysparm_query": query}))] == [recent]
    query = "active=0^sys_updated_at>=2025-01-15 09:00:00^ORDERBYDESCsys_updated_at"
    assert [r["sys_id"] for r in data(await raw.get(INCIDENTS, params={"sysparm_query": query}))] == [recent, old]
