"""The SimpleOne client against the emulator over HTTP: the three ways to authenticate, the
envelope's messages, people looked up in employee then user, and reference fields in both shapes."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from adapters.simpleone.client import PEOPLE_TABLES, RecordNotFound, SimpleOneConfig, default_transport
from adapters.simpleone.transport import HttpAnswer, HttpRequest
from emulators.simpleone.server import RunningEmulator
from engine.ports import Person, TicketSystemRejected, TicketSystemUnavailable

INCIDENT = "itsm_incident"
DOCUMENTED_LOGIN, FORM_LOGIN = "/v1/auth/login", "/rest/v1/auth/login"


def calls(emulator: RunningEmulator) -> list[tuple[str, str, int]]:
    return [(e.method, e.path, e.status) for e in emulator.state.request_log]


# --------------------------------------------------------------------------- login


async def test_the_documented_json_login_comes_first(make_client: Any, emulator: RunningEmulator) -> None:
    client = make_client()
    await client.list_records(INCIDENT)
    # The emulator takes only JSON there (400 for a form), so a 200 means the body was JSON.
    assert calls(emulator)[0] == ("POST", DOCUMENTED_LOGIN, 200)
    assert FORM_LOGIN not in [path for _, path, _ in calls(emulator)]


@pytest.mark.parametrize("status", [404, 405])
async def test_the_form_login_is_the_fallback_when_the_documented_one_is_absent(
    make_client: Any, emulator: RunningEmulator, status: int
) -> None:
    emulator.faults.fail_next(status=status, path_prefix=DOCUMENTED_LOGIN)
    client = make_client()
    await client.list_records(INCIDENT)
    emulator.faults.expire_tokens()
    await client.list_records(INCIDENT)  # the re-login goes straight to the fallback
    assert calls(emulator) == [
        ("POST", DOCUMENTED_LOGIN, status),
        ("POST", FORM_LOGIN, 200),
        ("GET", f"/rest/v1/table/{INCIDENT}", 200),
        ("GET", f"/rest/v1/table/{INCIDENT}", 401),
        ("POST", FORM_LOGIN, 200),
        ("GET", f"/rest/v1/table/{INCIDENT}", 200),
    ]


async def test_a_refused_documented_login_is_not_retried_elsewhere(
    make_client: Any, emulator: RunningEmulator
) -> None:
    client = make_client(read_retries=0)  # one try: the read retries are not the point here
    emulator.faults.fail_next(status=500, path_prefix=DOCUMENTED_LOGIN)
    with pytest.raises(TicketSystemUnavailable, match="HTTP 500"):
        await client.list_records(INCIDENT)
    assert [path for _, path, _ in calls(emulator)] == [DOCUMENTED_LOGIN]


async def test_basic_auth_sends_the_credentials_on_every_request_and_never_logs_in(
    make_client: Any, emulator: RunningEmulator
) -> None:
    client = make_client(auth="basic")
    caller = emulator.state.add_user("basic@ranepa.ru", "B", "A")
    ref = await client.create_ticket(INCIDENT, {"subject": "x", "caller": caller})
    emulator.faults.expire_tokens()  # tokens mean nothing to Basic
    assert await client.get_ticket(INCIDENT, ref.sys_id) is not None
    assert [path for _, path, _ in calls(emulator)] == [f"/rest/v1/table/{INCIDENT}",
                                                         f"/rest/v1/table/{INCIDENT}/{ref.sys_id}"]


async def test_basic_auth_401_rejects_the_credentials_without_a_retry(
    make_client: Any, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture, creds: Any
) -> None:
    caplog.set_level(logging.INFO)
    client = make_client(auth="basic", password=creds.password + "-wrong")
    with pytest.raises(TicketSystemRejected, match="HTTP 401"):
        await client.list_records(INCIDENT)
    assert calls(emulator) == [("GET", f"/rest/v1/table/{INCIDENT}", 401)]
    assert "refused the username and password (HTTP Basic)" in caplog.text
    assert creds.password not in caplog.text


def test_the_auth_mode_is_inferred_or_checked() -> None:
    url = "https://sd.ranepa.ru"
    assert SimpleOneConfig(url, token="t").auth_mode == "token"
    assert SimpleOneConfig(url, username="u", password="p").auth_mode == "login"
    assert SimpleOneConfig(url, username="u", password="p", auth="basic").auth_mode == "basic"
    for bad in (
        {"token": "t", "auth": "basic"},
        {"token": "t", "auth": "login"},
        {"auth": "token", "username": "u", "password": "p"},
        {"auth": "basic", "username": "u"},
        {"auth": "kerberos", "username": "u", "password": "p"},
    ):
        with pytest.raises(ValueError):
            SimpleOneConfig(url, **bad)


# --------------------------------------------------------------------------- envelope


async def test_envelope_messages_are_logged_as_warnings_with_the_path(
    make_client: Any, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.simpleone.client")
    client = make_client()
    assert await client.list_records(INCIDENT) == []
    assert caplog.records == []  # `"messages": []` says nothing
    emulator.state.messages.append({"message": "Поле 'urgency' доступно только для чтения"})
    assert await client.list_records(INCIDENT) == []  # the data is still the answer
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert f"GET /rest/v1/table/{INCIDENT}" in record.getMessage()
    assert "доступно только для чтения" in record.getMessage()


# --------------------------------------------------------------------------- people


async def test_an_employee_only_in_employee_signs_in_typed_in_another_case(
    make_client: Any, emulator: RunningEmulator
) -> None:
    client = make_client()
    staff = emulator.state.add_user("ivanov-ii@ranepa.ru", "Иван", "Иванов", table="employee")
    await client.list_records(INCIDENT)  # logged in
    emulator.state.request_log.clear()
    assert await client.find_person("Ivanov-II@RANEPA.ru") == Person(staff, "ivanov-ii@ranepa.ru", "Иван Иванов")
    # Found in `employee`, asked first; `user` is not asked then.
    assert [path for _, path, _ in calls(emulator)] == ["/rest/v1/table/employee"]


async def test_a_student_is_found_in_user_after_employee(make_client: Any, emulator: RunningEmulator) -> None:
    client = make_client()
    student = emulator.state.add_user("Student.One@ranepa.ru", "Анна", "Кузнецова")
    assert await client.find_person("student.one@ranepa.ru") == Person(student, "Student.One@ranepa.ru",
                                                                       "Анна Кузнецова")
    paths = [path for _, path, _ in calls(emulator) if path.startswith("/rest/v1/table/")]
    assert paths == ["/rest/v1/table/employee", "/rest/v1/table/user"]
    emulator.state.add_user("gone@ranepa.ru", "G", "O", table="employee", active=False)
    assert await client.find_person("gone@ranepa.ru") is None


async def test_the_people_tables_are_the_callers_choice(make_client: Any, emulator: RunningEmulator) -> None:
    client = make_client()
    emulator.state.add_user("staff@ranepa.ru", "S", "T", table="employee")
    student = emulator.state.add_user("student@ranepa.ru", "S", "U")
    assert await client.find_person("student@ranepa.ru", tables=["employee"]) is None
    assert (await client.find_person("student@ranepa.ru", tables=["user"])) == Person(student, "student@ranepa.ru",
                                                                                      "S U")
    assert PEOPLE_TABLES == ("employee", "user")


async def test_a_people_table_the_instance_lacks_is_skipped(
    make_client: Any, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    del emulator.state.tables["employee"]  # an instance without the employee table
    student = emulator.state.add_user("s@ranepa.ru", "S", "U")
    assert (await client.find_person("s@ranepa.ru")) == Person(student, "s@ranepa.ru", "S U")
    assert "refused the people table 'employee'" in caplog.text
    with pytest.raises(RecordNotFound):  # none of the tables exists: a configuration error
        await client.find_person("s@ranepa.ru", tables=["employee", "no_such_people"])


async def test_the_person_look_up_is_the_documented_query(make_client: Any, emulator: RunningEmulator) -> None:
    seen: list[HttpRequest] = []
    inner = default_transport(SimpleOneConfig(emulator.url, token="t"))

    class Spy:
        async def send(self, request: HttpRequest) -> HttpAnswer:
            seen.append(request)
            return await inner.send(request)

        async def close(self) -> None:
            await inner.close()

    client = make_client(transport=Spy())
    assert await client.find_person("a@ranepa.ru", tables=["employee"]) is None
    params = dict(seen[-1].params)
    assert params["sysparm_query"] == "active=1^email=a@ranepa.ru"
    assert params["sysparm_fields"] == "sys_id,email,first_name,last_name,username,active"


# --------------------------------------------------------------------------- references


class _KeepReferenceLinks:
    """Passes requests on without sysparm_exclude_reference_link: the instance's default answer,
    with references as {"value": sys_id, "link": ...} [doc]."""

    def __init__(self, url: str) -> None:
        self.inner = default_transport(SimpleOneConfig(url, token="t"))

    async def send(self, request: HttpRequest) -> HttpAnswer:
        params = [(k, v) for k, v in request.params if k != "sysparm_exclude_reference_link"]
        return await self.inner.send(HttpRequest(request.method, request.url, params, request.headers, request.body))

    async def close(self) -> None:
        await self.inner.close()


async def test_reference_fields_are_read_as_plain_strings_or_value_link_objects(
    make_client: Any, emulator: RunningEmulator
) -> None:
    caller = emulator.state.add_user("ref@ranepa.ru", "R", "F", table="employee")
    plain = make_client()
    linked = make_client(transport=_KeepReferenceLinks(emulator.url))
    ref = await plain.create_ticket(INCIDENT, {"subject": "x", "description": "[sb:9]", "caller": caller})
    raw = await linked.get_record(INCIDENT, ref.sys_id, fields=["caller"], exclude_reference_link=True)
    assert raw["caller"] == {"value": caller, "link": f"{emulator.url}/rest/v1/table/user/{caller}"}
    for client in (plain, linked):
        ticket = await client.get_ticket(INCIDENT, ref.sys_id)
        assert ticket is not None and ticket.caller_id == caller
        (listed,) = await client.list_tickets(caller, [INCIDENT], active_only=True, limit=5)
        assert listed.caller_id == caller
        assert await client.find_ticket_by_marker(INCIDENT, caller, "[sb:9]") == ref


async def test_a_people_table_the_account_may_not_read_is_skipped(
    make_client: Any, emulator: RunningEmulator
) -> None:
    """An account that reads only `user` (as before employee was asked) still signs people in."""
    client = make_client()
    emulator.state.add_user("student@ranepa.ru", "S", "T", table="user")
    emulator.faults.fail_next(10, status=403, path_prefix="/rest/v1/table/employee")
    person = await client.find_person("student@ranepa.ru")
    assert person is not None and person.email == "student@ranepa.ru"
