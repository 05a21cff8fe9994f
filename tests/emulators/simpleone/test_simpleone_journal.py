"""The emulator's journal, as shared/reference/simpleone-api.md "Comments" documents it: journal
fields read back empty, their writes (and state changes) become sys_activity_feed_item records,
read through the Table API with dot-walking, IN with @, parentheses and sys_id>; and a test
or a human can act as an agent."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from emulators.simpleone.query import QueryError, parse_query
from emulators.simpleone.server import RunningEmulator
from tests.simpleone_fixtures import USERNAME

INCIDENTS = "/rest/v1/table/itsm_incident"
FEED = "/rest/v1/table/sys_activity_feed_item"
PUBLIC, INTERNAL = "additional_comments.itsm_incident", "work_notes.itsm_incident"


def data(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "OK" and isinstance(body["data"], list)
    return body["data"]


async def new_incident(raw: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    (created,) = data(await raw.post(INCIDENTS, json={"subject": "Принтер", **fields}))
    return created


async def feed(raw: httpx.AsyncClient, query: str, **params: str) -> list[dict[str, Any]]:
    fields = "sys_id,type_id.name,content,record_id,table_id,sys_created_at,sys_created_by"
    return data(await raw.get(FEED, params={"sysparm_query": query, "sysparm_fields": fields,
                                            "sysparm_exclude_reference_link": "1", **params}))


# --------------------------------------------------------------------------- the query language


def test_eighteen_digit_sys_ids_compare_exactly() -> None:
    # As floats these two are the same number: `sys_id>LAST` would miss the newer entry.
    newer = {"sys_id": "166031411802010336"}
    assert parse_query("sys_id>166031411802010329").matches(newer.get)
    assert not parse_query("sys_id>166031411802010336").matches(newer.get)
    ordered = parse_query("ORDERBYsys_id").apply(
        [{"sys_id": "166031411802010336"}, {"sys_id": "166031411802010329"}], lambda r: r.get)
    assert [r["sys_id"] for r in ordered] == ["166031411802010329", "166031411802010336"]


def test_parentheses_group_one_or_group_as_the_widget_writes_it() -> None:
    query = parse_query(f"(type_id.name={PUBLIC}^ORtype_id.name=history)^record_idIN1@2^sys_id>5^ORDERBYsys_id")
    assert query == parse_query(f"type_id.name={PUBLIC}^ORtype_id.name=history^record_idIN1@2^sys_id>5^ORDERBYsys_id")
    assert parse_query("(state=2)") == parse_query("state=2")


@pytest.mark.parametrize(("text", "why"), [
    ("(a=1^b=2)", "only group \\^OR"),
    ("(a=1^ORb=2", "never closed"),
    ("(a=1^OR(b=2)", "does not start with a field"),
    ("(a=1^ORDERBYa", "only group \\^OR"),
])
def test_parentheses_beyond_one_or_group_are_refused(text: str, why: str) -> None:
    with pytest.raises(QueryError, match=why):
        parse_query(text)


# --------------------------------------------------------------------------- journal entries


async def test_a_journal_field_reads_back_empty_and_becomes_a_feed_item(
    raw: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    ticket = await new_incident(raw)
    path = f"{INCIDENTS}/{ticket['sys_id']}"
    (patched,) = data(await raw.patch(path, json={"additional_comments": "Проверьте кабель"}))
    (read,) = data(await raw.get(path, params={"sysparm_fields": "sys_id,additional_comments,work_notes"}))
    assert read == {"sys_id": ticket["sys_id"], "additional_comments": "", "work_notes": ""}
    (entry,) = await feed(raw, f"record_id={ticket['sys_id']}")
    assert entry["type_id.name"] == PUBLIC
    assert json.loads(entry["content"]) == {"message": "Проверьте кабель"}
    assert entry["record_id"] == ticket["sys_id"] and entry["sys_created_by"] == USERNAME
    assert entry["sys_created_at"] == patched["sys_updated_at"]
    assert len(entry["sys_id"]) == 18 and entry["sys_id"].isdigit()
    # table_id is a reference whose record names the ticket's table
    (table,) = data(await raw.get(f"/rest/v1/table/sys_db_table/{entry['table_id']}"))
    assert table["name"] == "itsm_incident"


async def test_create_with_a_work_note_writes_an_internal_entry(raw: httpx.AsyncClient) -> None:
    ticket = await new_incident(raw, work_notes="Открыто ботом")
    (entry,) = await feed(raw, f"record_id={ticket['sys_id']}")
    assert entry["type_id.name"] == INTERNAL
    assert json.loads(entry["content"]) == {"message": "Открыто ботом"}


async def test_the_nested_content_shape_can_be_chosen(raw: httpx.AsyncClient, emulator: RunningEmulator) -> None:
    emulator.state.nested_journal_content = True
    ticket = await new_incident(raw, additional_comments="Готово")
    (entry,) = await feed(raw, f"record_id={ticket['sys_id']}")
    assert json.loads(entry["content"]) == {"message": {"display_value": "Готово"}}


async def test_a_state_change_writes_one_history_entry(raw: httpx.AsyncClient) -> None:
    ticket = await new_incident(raw)
    path = f"{INCIDENTS}/{ticket['sys_id']}"
    data(await raw.patch(path, json={"state": "2"}))
    data(await raw.patch(path, json={"state": "2", "urgency": "1"}))  # no change of state: no entry
    data(await raw.patch(path, json={"subject": "Принтер HP"}))
    (entry,) = await feed(raw, f"record_id={ticket['sys_id']}")
    assert entry["type_id.name"] == "history"
    assert json.loads(entry["content"]) == {"history_items": [{
        "column_id": "state", "old_db_value": "-2", "new_db_value": "2",
        "old_display_value": "-2", "new_display_value": "2",
    }]}


async def test_a_closing_state_makes_the_ticket_inactive_and_reopening_revives_it(raw: httpx.AsyncClient) -> None:
    ticket = await new_incident(raw)
    path = f"{INCIDENTS}/{ticket['sys_id']}"
    assert data(await raw.patch(path, json={"state": "7"}))[0]["active"] == "1"  # done, awaiting confirmation
    assert data(await raw.patch(path, json={"state": "10"}))[0]["active"] == "0"
    assert data(await raw.patch(path, json={"state": "2"}))[0]["active"] == "1"


async def test_the_widget_query_reads_public_and_history_entries_incrementally(raw: httpx.AsyncClient) -> None:
    first, second, other = await new_incident(raw), await new_incident(raw), await new_incident(raw)
    for ticket in (first, second, other):
        path = f"{INCIDENTS}/{ticket['sys_id']}"
        data(await raw.patch(path, json={"additional_comments": f"public {ticket['number']}"}))
        data(await raw.patch(path, json={"work_notes": "secret"}))
        data(await raw.patch(path, json={"state": "2"}))
    ids = f"{first['sys_id']}@{second['sys_id']}"
    widget = f"(type_id.name={PUBLIC}^ORtype_id.name=history)^record_idIN{ids}"
    entries = await feed(raw, f"{widget}^ORDERBYsys_id")
    assert [(e["record_id"], e["type_id.name"]) for e in entries] == [
        (first["sys_id"], PUBLIC), (first["sys_id"], "history"), (second["sys_id"], PUBLIC),
        (second["sys_id"], "history"),
    ]
    assert [e["sys_id"] for e in entries] == sorted(e["sys_id"] for e in entries)
    # Only what came after the last one seen
    last = entries[1]["sys_id"]
    later = await feed(raw, f"{widget}^sys_id>{last}^ORDERBYsys_id")
    assert later == entries[2:]
    assert await feed(raw, f"{widget}^sys_id>{entries[-1]['sys_id']}^ORDERBYsys_id") == []


async def test_deleting_a_ticket_deletes_its_entries(raw: httpx.AsyncClient) -> None:
    ticket, kept = await new_incident(raw, additional_comments="a"), await new_incident(raw, additional_comments="b")
    data(await raw.delete(f"{INCIDENTS}/{ticket['sys_id']}"))
    assert [e["record_id"] for e in await feed(raw, "")] == [kept["sys_id"]]


# --------------------------------------------------------------------------- acting as an agent


async def test_the_control_api_lets_a_test_act_as_an_agent(raw: httpx.AsyncClient, emulator: RunningEmulator) -> None:
    ticket = await new_incident(raw)
    for action, value in (("comment", "Перезагрузите ноутбук"), ("note", "Пароль админа 123"), ("state", "3")):
        reply = await raw.post("/_emulator/agent", json={"action": action, "ticket": ticket["number"], "value": value})
        assert reply.status_code == 200, reply.text
        assert reply.json()["sys_id"] == ticket["sys_id"]
    entries = await feed(raw, f"record_id={ticket['sys_id']}^ORDERBYsys_id")
    assert [(e["type_id.name"], e["sys_created_by"]) for e in entries] == [
        (PUBLIC, "agent"), (INTERNAL, "agent"), ("history", "agent"),
    ]
    (read,) = data(await raw.get(f"{INCIDENTS}/{ticket['sys_id']}"))
    assert read["state"] == "3"
    # by sys_id too; refusals name the problem
    by_id = await raw.post("/_emulator/agent", json={"action": "comment", "ticket": ticket["sys_id"], "value": "x"})
    assert by_id.status_code == 200
    for body, status in (({"action": "delete", "ticket": ticket["number"], "value": "x"}, 400),
                         ({"action": "comment", "ticket": "INC9999999", "value": "x"}, 404),
                         ({"action": "comment", "ticket": ticket["number"], "value": "  "}, 400),
                         ({"action": "comment", "ticket": ticket["number"]}, 400)):
        assert (await raw.post("/_emulator/agent", json=body)).status_code == status


# --------------------------------------------------------------------------- two-way support (issue 14)


async def test_many_tickets_in_one_in_query_after_a_cursor(raw: httpx.AsyncClient) -> None:
    tickets = [await new_incident(raw) for _ in range(120)]
    for ticket in (tickets[110], tickets[3], tickets[60]):
        path = f"{INCIDENTS}/{ticket['sys_id']}"
        data(await raw.patch(path, json={"additional_comments": f"public {ticket['number']}"}))
        data(await raw.patch(path, json={"work_notes": "secret"}))
    asked = "@".join(t["sys_id"] for t in tickets[:100])  # the first batch: tickets[110] is not in it
    entries = await feed(raw, f"type_id.name={PUBLIC}^record_idIN{asked}^ORDERBYsys_id")
    assert [e["record_id"] for e in entries] == [tickets[3]["sys_id"], tickets[60]["sys_id"]]
    later = await feed(raw, f"type_id.name={PUBLIC}^record_idIN{asked}^sys_id>{entries[0]['sys_id']}^ORDERBYsys_id")
    assert later == entries[1:]


async def test_the_newest_entries_first_and_the_page_before(raw: httpx.AsyncClient) -> None:
    ticket = await new_incident(raw)
    path = f"{INCIDENTS}/{ticket['sys_id']}"
    for i in range(5):
        data(await raw.patch(path, json={"additional_comments": f"c{i}"}))
        data(await raw.patch(path, json={"work_notes": "secret"}))
    query = f"type_id.name={PUBLIC}^record_id={ticket['sys_id']}"
    newest = await feed(raw, f"{query}^ORDERBYDESCsys_id", sysparm_limit="2")
    assert [json.loads(e["content"])["message"] for e in newest] == ["c4", "c3"]
    assert int(newest[0]["sys_id"]) > int(newest[1]["sys_id"])  # 18-digit ids, compared as numbers
    before = await feed(raw, f"{query}^sys_id<{newest[-1]['sys_id']}^ORDERBYDESCsys_id", sysparm_limit="2")
    assert [json.loads(e["content"])["message"] for e in before] == ["c2", "c1"]
    first = await feed(raw, f"{query}^sys_id<{before[-1]['sys_id']}^ORDERBYDESCsys_id", sysparm_limit="2")
    assert [json.loads(e["content"])["message"] for e in first] == ["c0"]


async def test_an_agent_s_comment_is_stored_as_given_html_included(
    raw: httpx.AsyncClient, emulator: RunningEmulator
) -> None:
    ticket = await new_incident(raw)
    html = "<p>Проверьте&nbsp;кабель</p><ul><li>питание</li></ul>"
    emulator.state.act_as_agent("comment", ticket["number"], html)
    (entry,) = await feed(raw, f"type_id.name={PUBLIC}^record_id={ticket['sys_id']}")
    assert json.loads(entry["content"]) == {"message": html}
