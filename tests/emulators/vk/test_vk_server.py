"""The fake VK server over real HTTP on loopback: spoken to with httpx, aiohttp and vkbottle."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vkbottle import API, AiohttpClient, Bot, Keyboard, KeyboardButtonColor, Text, VKAPIError
from vkbottle.bot import Message
from vkbottle.polling import BotPolling
from vkbottle_types.events.bot_events import MessageNew

from emulators.vk.callback import CallbackConfirmationError
from emulators.vk.keyboard import KeyboardError, parse_keyboard
from emulators.vk.server import RunningVkEmulator
from tests.vk_fixtures import GROUP_ID, TOKEN

PEER = 1001
HEX40 = re.compile(r"[0-9a-f]{40}")


# --------------------------------------------------------------------------- helpers


async def call(http: httpx.AsyncClient, method: str, token: str = TOKEN, **params: Any) -> dict[str, Any]:
    form = {"access_token": token, "v": "5.199", **{k: str(v) for k, v in params.items()}}
    reply = await http.post(f"/method/{method}", data=form)
    assert reply.status_code == 200, reply.text  # VK answers errors with HTTP 200 too
    body: dict[str, Any] = reply.json()
    return body


def ok(body: dict[str, Any]) -> Any:
    assert "error" not in body, body
    return body["response"]


def vk_error(body: dict[str, Any], code: int) -> str:
    assert "response" not in body, body
    assert body["error"]["error_code"] == code, body
    message: str = body["error"]["error_msg"]
    return message


async def send(http: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    return await call(http, "messages.send", **{"peer_id": PEER, "random_id": 0, "message": "Здравствуйте", **params})


async def lp_server(http: httpx.AsyncClient) -> dict[str, Any]:
    server: dict[str, Any] = ok(await call(http, "groups.getLongPollServer", group_id=GROUP_ID))
    return server


async def check(
    http: httpx.AsyncClient, server: dict[str, Any], *, ts: str | None = None, key: str | None = None, wait: float = 0
) -> dict[str, Any]:
    params = {"act": "a_check", "key": key or server["key"], "ts": ts or server["ts"], "wait": wait}
    reply = await http.get(server["server"], params=params)
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def button(label: str = "Да", payload: Any = None, color: str | None = None, kind: str = "text") -> dict[str, Any]:
    action: dict[str, Any] = {"type": kind, "label": label}
    if payload is not None:
        action["payload"] = payload
    out: dict[str, Any] = {"action": action}
    if color is not None:
        out["color"] = color
    return out


def grid(*row_sizes: int) -> list[list[dict[str, Any]]]:
    return [[button(f"b{r}.{i}", '{"n":1}') for i in range(size)] for r, size in enumerate(row_sizes)]


def kb(rows: Any, **flags: Any) -> str:
    return json.dumps({"buttons": rows, **flags}, ensure_ascii=False)


# --------------------------------------------------------------------------- method API basics


async def test_groups_get_by_id_has_the_shape_bot_polling_reads(http: httpx.AsyncClient) -> None:
    result = ok(await call(http, "groups.getById"))
    assert result["profiles"] == []
    group = result["groups"][0]
    assert group["id"] == GROUP_ID and group["type"] == "group"
    assert isinstance(group["name"], str) and isinstance(group["screen_name"], str)
    assert ok(await call(http, "groups.getById", group_id=GROUP_ID))["groups"][0]["id"] == GROUP_ID
    vk_error(await call(http, "groups.getById", group_id=GROUP_ID + 1), 100)


async def test_token_and_version_may_come_in_the_query_string(http: httpx.AsyncClient) -> None:
    reply = await http.post("/method/groups.getById", params={"access_token": TOKEN, "v": "5.199"})
    assert ok(reply.json())["groups"][0]["id"] == GROUP_ID
    reply = await http.get("/method/groups.getById", params={"access_token": TOKEN, "v": "5.199"})
    assert ok(reply.json())["groups"][0]["id"] == GROUP_ID


async def test_unknown_or_missing_token_is_error_5_and_the_token_is_not_echoed(http: httpx.AsyncClient) -> None:
    body = await call(http, "messages.send", token="stolen", peer_id=PEER, random_id=0, message="x")
    assert vk_error(body, 5).startswith("User authorization failed: invalid access_token")
    echoed = {p["key"]: p["value"] for p in body["error"]["request_params"]}
    assert echoed["method"] == "messages.send" and echoed["peer_id"] == str(PEER)
    assert "access_token" not in echoed
    reply = await http.post("/method/groups.getById", data={"v": "5.199"})
    vk_error(reply.json(), 5)


async def test_the_access_log_leaves_the_token_out(make_vk: Any, caplog: pytest.LogCaptureFixture) -> None:
    vk = await make_vk(access_log=True)
    with caplog.at_level(logging.INFO, logger="emulators.vk.server"):
        async with httpx.AsyncClient(base_url=vk.url) as http:
            await http.post("/method/groups.getById", params={"access_token": TOKEN, "v": "5.199"})
            ok(await send(http))
    assert "/method/groups.getById 200" in caplog.text
    assert TOKEN not in caplog.text
    assert "access_token" not in vk.sent[0].params


async def test_unknown_method_is_error_3_and_missing_version_error_8(http: httpx.AsyncClient) -> None:
    assert vk_error(await call(http, "messages.sendTelepathically"), 3) == "Unknown method passed"
    reply = await http.post("/method/groups.getById", data={"access_token": TOKEN})
    vk_error(reply.json(), 8)


async def test_long_poll_server_points_at_the_emulator(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    assert server["server"] == f"{vk.url}/lp/{GROUP_ID}"
    assert HEX40.fullmatch(server["key"])
    assert isinstance(server["ts"], str) and server["ts"].isdigit()
    assert vk.api_url == vk.url + "/method/"
    assert "group_id" in vk_error(await call(http, "groups.getLongPollServer", group_id=5), 100)
    vk_error(await call(http, "groups.getLongPollServer"), 100)


# --------------------------------------------------------------------------- messages.send


async def test_send_records_every_field(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    keyboard = kb([[button("Меню", '{"cmd":"menu"}', "primary")]], one_time=False)
    message_id = ok(await send(http, message="Заявка создана", random_id=42, keyboard=keyboard, dont_parse_links=1))
    assert isinstance(message_id, int) and message_id > 0
    [sent] = vk.sent
    assert (sent.peer_id, sent.text, sent.random_id, sent.message_id) == (PEER, "Заявка создана", 42, message_id)
    assert sent.keyboard == json.loads(keyboard)
    assert sent.token == TOKEN and sent.attachment == "" and sent.params["dont_parse_links"] == "1"
    assert sent.labels() == ["Меню"]
    ok(await call(http, "messages.send", user_id=PEER + 1, random_id=0, attachment="doc1_2"))
    ok(await call(http, "messages.send", chat_id=3, random_id=0, message="в беседу"))
    assert [(m.peer_id, m.keyboard, m.attachment) for m in vk.sent[1:]] == [
        (PEER + 1, None, "doc1_2"),
        (2_000_000_003, None, ""),
    ]


async def test_send_refuses_empty_messages_and_bad_random_ids(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    assert "message is empty" in vk_error(await send(http, message=""), 100)
    assert "message is empty" in vk_error(await send(http, message="   "), 100)
    reply = await http.post("/method/messages.send", data={"access_token": TOKEN, "v": "5.199", "peer_id": PEER,
                                                         "message": "hi"})
    assert "random_id" in vk_error(reply.json(), 100)
    vk_error(await send(http, random_id=-1), 100)
    vk_error(await send(http, random_id="abc"), 100)
    vk_error(await call(http, "messages.send", random_id=0, message="to whom?"), 100)
    assert vk.sent == []


async def test_messages_over_4096_characters_are_error_914(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    ok(await send(http, message="я" * 4096))
    assert vk_error(await send(http, message="я" * 4097), 914) == "Message is too long"
    assert [len(m.text) for m in vk.sent] == [4096]


async def test_random_id_makes_a_resend_idempotent(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    first = ok(await send(http, random_id=7, message="раз"))
    again = ok(await send(http, random_id=7, message="раз"))
    assert again == first and len(vk.sent) == 1
    other_peer = ok(await send(http, peer_id=PEER + 1, random_id=7))
    zero_a, zero_b = ok(await send(http, random_id=0)), ok(await send(http, random_id=0))
    assert len({first, other_peer, zero_a, zero_b}) == 4
    assert len(vk.sent) == 4


async def test_random_id_is_forgotten_after_an_hour(make_vk: Any, clock: Any) -> None:
    vk = await make_vk(clock=clock)
    async with httpx.AsyncClient(base_url=vk.url) as http:
        first = ok(await send(http, random_id=9))
        clock.advance(3599)
        assert ok(await send(http, random_id=9)) == first
        clock.advance(2)
        assert ok(await send(http, random_id=9)) != first
    assert len(vk.sent) == 2


async def test_a_user_who_forbade_messages_is_error_901(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    vk.state.denied_peers.add(PEER)
    vk_error(await send(http), 901)
    ok(await send(http, peer_id=PEER + 1))
    items = ok(await call(http, "messages.send", peer_ids=f"{PEER},{PEER + 2}", random_id=0, message="всем"))
    assert items[0] == {"peer_id": PEER, "error": {"code": 901, "description": items[0]["error"]["description"]}}
    assert items[1]["peer_id"] == PEER + 2 and items[1]["message_id"] == vk.sent[-1].message_id
    assert [m.peer_id for m in vk.sent] == [PEER + 1, PEER + 2]


VALID_KEYBOARDS: dict[str, str] = {
    "hide with empty buttons": kb([]),
    "hide, one_time false": kb([], one_time=False),
    "one text button without payload": kb([[button("Да")]]),
    "10 rows x 4 = 40 buttons": kb(grid(*[4] * 10)),
    "a row of 5": kb(grid(5)),
    "inline 6 rows, 10 buttons": kb(grid(2, 2, 2, 2, 1, 1), inline=True),
    "one_time regular": kb(grid(1), one_time=True, inline=False),
    "inline without one_time": kb(grid(1), inline=True, one_time=False),
    "label of 40": kb([[button("л" * 40)]]),
    "payload of 255": kb([[button("x", json.dumps("p" * 253))]]),
    "payload as an inline object (vkbottle)": kb([[button("x", {"cmd": "menu", "page": 2})]]),
    "every colour": kb([[button(c, color=c) for c in ("primary", "secondary", "negative", "positive")]]),
    "callback with colour": kb([[button("cb", '{"a":1}', "positive", kind="callback")]], inline=True),
    "open_link": kb([[{"action": {"type": "open_link", "label": "Сайт", "link": "https://www.ranepa.ru"}}]]),
    "location, vkpay, open_app": kb(
        [
            [{"action": {"type": "location"}}],
            [{"action": {"type": "vkpay", "hash": "action=transfer-to-group&group_id=1"}}],
            [{"action": {"type": "open_app", "app_id": 1, "owner_id": -1, "label": "App"}}],
        ]
    ),
}


@pytest.mark.parametrize("keyboard", VALID_KEYBOARDS.values(), ids=VALID_KEYBOARDS.keys())
async def test_valid_keyboards_are_accepted(vk: RunningVkEmulator, http: httpx.AsyncClient, keyboard: str) -> None:
    ok(await send(http, keyboard=keyboard))
    assert vk.sent[-1].keyboard == json.loads(keyboard)


INVALID_KEYBOARDS: dict[str, tuple[str, str]] = {
    "not JSON": ("{buttons: []", "not valid JSON"),
    "an array": ("[]", "should be an object"),
    "no buttons": (json.dumps({"one_time": True}), "buttons is required"),
    "buttons an object": (json.dumps({"buttons": {}}), "array of rows"),
    "a row that is an object": (kb([button()]), "buttons[0] should be an array"),
    "an empty row": (kb([[button()], []]), "buttons[1] is an empty row"),
    "6 in a row": (kb(grid(6)), "at most 5"),
    "11 rows": (kb(grid(*[1] * 11)), "at most 10 rows"),
    "41 buttons": (kb(grid(5, 5, 5, 5, 5, 5, 5, 5, 1)), "at most 40 buttons"),
    "inline 7 rows": (kb(grid(*[1] * 7), inline=True), "at most 6 rows"),
    "inline 11 buttons": (kb(grid(5, 5, 1), inline=True), "at most 10 buttons"),
    "one_time with inline": (kb(grid(1), one_time=True, inline=True), "one_time is not allowed"),
    "one_time not a boolean": (kb(grid(1), one_time="yes"), "one_time should be a boolean"),
    "inline not a boolean": (kb(grid(1), inline=1), "inline should be a boolean"),
    "empty label": (kb([[button("")]]), "label is empty"),
    "label of 41": (kb([[button("л" * 41)]]), "longer than 40"),
    "no label": (kb([[{"action": {"type": "text"}}]]), "label is required"),
    "a number as the label": (kb([[{"action": {"type": "text", "label": 5}}]]), "label is required"),
    "payload of 256": (kb([[button("x", json.dumps("p" * 254))]]), "longer than 255"),
    "payload not JSON": (kb([[button("x", "{oops")]]), "payload is not valid JSON"),
    "empty payload": (kb([[button("x", "")]]), "payload is not valid JSON"),
    "a number as the payload": (kb([[button("x", 5)]]), "payload should be"),
    "an unknown colour": (kb([[button("x", color="red")]]), "color 'red'"),
    "a colour on a link": (
        kb([[{"action": {"type": "open_link", "label": "L", "link": "https://vk.com"}, "color": "primary"}]]),
        "only allowed on text and callback",
    ),
    "an unknown action": (kb([[{"action": {"type": "teleport", "label": "x"}}]]), "'teleport' is unknown"),
    "no action": (kb([[{"color": "primary"}]]), "action is required"),
    "a button that is a string": (kb([["Да"]]), "buttons[0][0] should be an object"),
    "a link without link": (kb([[{"action": {"type": "open_link", "label": "L"}}]]), "link should be"),
    "callback label of 41": (kb([[button("л" * 41, '{"a":1}', kind="callback")]]), "longer than 40"),
}


@pytest.mark.parametrize("keyboard,problem", INVALID_KEYBOARDS.values(), ids=INVALID_KEYBOARDS.keys())
async def test_invalid_keyboards_are_error_911_naming_the_problem(
    vk: RunningVkEmulator, http: httpx.AsyncClient, keyboard: str, problem: str
) -> None:
    message = vk_error(await send(http, keyboard=keyboard), 911)
    assert message.startswith("Keyboard format is invalid: ")
    assert problem in message
    assert vk.sent == []


def test_vkbottle_keyboards_pass_the_check() -> None:
    keyboard = (
        Keyboard(one_time=True)
        .add(Text("Новая заявка", {"cmd": "new"}), color=KeyboardButtonColor.PRIMARY)
        .add(Text("Мои заявки"))
        .row()
        .add(Text("Помощь", {"cmd": "help"}), color=KeyboardButtonColor.SECONDARY)
    )
    parsed = parse_keyboard(keyboard.get_json())
    assert [b["action"]["label"] for row in parsed["buttons"] for b in row] == ["Новая заявка", "Мои заявки", "Помощь"]


# -- the keyboard rules, restated independently and checked against random keyboards -------------

COLOURS = ("primary", "secondary", "negative", "positive")


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def expected_verdict(keyboard: dict[str, Any]) -> bool:
    """dev.vk.com's rules for text buttons, written apart from the validator."""
    inline = keyboard.get("inline") is True
    if inline and keyboard.get("one_time") is True:
        return False
    rows = keyboard["buttons"]
    most_rows, most_buttons = (6, 10) if inline else (10, 40)
    if len(rows) > most_rows or sum(map(len, rows)) > most_buttons:
        return False
    for row in rows:
        if not 1 <= len(row) <= 5:
            return False
        for b in row:
            if not 1 <= len(b["action"]["label"]) <= 40:
                return False
            payload = b["action"].get("payload")
            if payload is not None and (len(payload) > 255 or not _is_json(payload)):
                return False
            if "color" in b and b["color"] not in COLOURS:
                return False
    return True


json_payloads = st.recursive(
    st.none() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
).map(lambda v: json.dumps(v, ensure_ascii=False))
# Keyboards of clean buttons (testing the counts) and of buttons with any fault (testing the
# button rules), so both verdicts are common.
clean_buttons = st.builds(
    button, st.text(min_size=1, max_size=40), st.none() | json_payloads, st.none() | st.sampled_from(COLOURS)
)
any_buttons = st.builds(
    button,
    st.text(max_size=42) | st.text(min_size=39, max_size=42),
    st.one_of(st.none(), json_payloads, st.text(max_size=20), st.just(json.dumps("p" * 254))),
    st.none() | st.sampled_from((*COLOURS, "red")),
)


def rows_of(buttons: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[list[list[dict[str, Any]]]]:
    return st.one_of(
        st.lists(st.lists(buttons, min_size=1, max_size=5), max_size=10),
        st.lists(st.lists(buttons, min_size=1, max_size=2), max_size=6),
        st.lists(st.lists(buttons, max_size=6), max_size=11),
    )


keyboards_st = st.builds(
    lambda rows, flags: {"buttons": rows, **flags},
    st.one_of(rows_of(clean_buttons), rows_of(clean_buttons), rows_of(any_buttons)),
    st.fixed_dictionaries({}, optional={"inline": st.booleans(), "one_time": st.booleans()}),
)


@settings(max_examples=250, deadline=None)
@given(keyboards_st)
def test_the_validator_matches_the_rules_on_random_keyboards(keyboard: dict[str, Any]) -> None:
    try:
        parse_keyboard(json.dumps(keyboard, ensure_ascii=False))
        accepted = True
    except KeyboardError:
        accepted = False
    assert accepted == expected_verdict(keyboard)


any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
)


@settings(max_examples=200, deadline=None)
@given(any_json | st.text().map(lambda t: {"raw": t}))
def test_the_validator_never_fails_otherwise_than_with_keyboard_error(value: Any) -> None:
    text = value["raw"] if isinstance(value, dict) and set(value) == {"raw"} else json.dumps(value)
    try:
        assert isinstance(parse_keyboard(text), dict)
    except KeyboardError as exc:
        assert str(exc)


# --------------------------------------------------------------------------- other methods


async def test_get_by_id_returns_the_whole_message_of_a_cropped_update(
    vk: RunningVkEmulator, http: httpx.AsyncClient
) -> None:
    posted = await vk.user(PEER).send_doc("акт.pdf", b"%PDF-1.4 test", text="вот акт", cropped=True)
    delivered = posted.update["object"]["message"]
    assert delivered["is_cropped"] is True and delivered["attachments"] == []
    result = ok(await call(http, "messages.getById", message_ids=f"{posted.message_id},999999"))
    assert result["count"] == 1
    [full] = result["items"]
    assert full["id"] == posted.message_id and "is_cropped" not in full
    assert full["attachments"][0]["doc"]["title"] == "акт.pdf"
    vk_error(await call(http, "messages.getById"), 100)


async def test_callback_buttons_make_message_events_answered_with_send_message_event_answer(
    vk: RunningVkEmulator, http: httpx.AsyncClient
) -> None:
    keyboard = kb([[button("Обновить", '{"cmd":"refresh"}', kind="callback")]], inline=True)
    ok(await send(http, keyboard=keyboard))
    posted = await vk.user(PEER).press("Обновить")
    assert posted.update["type"] == "message_event" and posted.message_id == 0
    event = posted.update["object"]
    assert event["payload"] == {"cmd": "refresh"} and event["user_id"] == PEER and event["peer_id"] == PEER
    data = json.dumps({"type": "show_snackbar", "text": "Готово"})
    assert ok(await call(http, "messages.sendMessageEventAnswer", event_id=event["event_id"], user_id=PEER,
                         peer_id=PEER, event_data=data)) == 1
    [answer] = vk.state.event_answers
    assert (answer.event_id, answer.user_id, answer.event_data) == (event["event_id"], PEER, json.loads(data))
    vk_error(await call(http, "messages.sendMessageEventAnswer", user_id=PEER, peer_id=PEER), 100)
    vk_error(await call(http, "messages.sendMessageEventAnswer", event_id="e", user_id=PEER, peer_id=PEER,
                        event_data="[1]"), 100)


# --------------------------------------------------------------------------- rate limit and faults


async def test_more_than_20_calls_a_second_per_token_is_error_6(make_vk: Any, clock: Any) -> None:
    vk = await make_vk(clock=clock)
    async with httpx.AsyncClient(base_url=vk.url) as http:
        for _ in range(20):
            ok(await call(http, "groups.getById"))
        assert vk_error(await call(http, "groups.getById"), 6) == "Too many requests per second"
        ok(await call(http, "groups.getById", token="second-token"))  # the limit is per token
        clock.advance(0.5)
        vk_error(await call(http, "groups.getById"), 6)
        clock.advance(0.5)  # the first 20 are now a full second old
        ok(await call(http, "groups.getById"))
        vk.state.rate_limit = None
        for _ in range(40):
            ok(await call(http, "groups.getById"))
    assert vk.state.calls.count(("groups.getById", 6)) == 2


async def test_the_rate_limit_is_a_sliding_window(make_vk: Any, clock: Any) -> None:
    vk = await make_vk(clock=clock, rate_limit=3)
    async with httpx.AsyncClient(base_url=vk.url) as http:
        ok(await call(http, "groups.getById"))
        clock.advance(0.6)
        ok(await call(http, "groups.getById"))
        ok(await call(http, "groups.getById"))
        vk_error(await call(http, "groups.getById"), 6)
        clock.advance(0.5)  # the first call left the window, the other two did not
        ok(await call(http, "groups.getById"))
        vk_error(await call(http, "groups.getById"), 6)


async def test_fail_next_answers_the_chosen_error_for_the_chosen_method(
    vk: RunningVkEmulator, http: httpx.AsyncClient
) -> None:
    vk.faults.fail_next("messages.send", 2, code=6)
    ok(await call(http, "groups.getById"))  # another method is not affected
    assert vk_error(await send(http), 6) == "Too many requests per second"
    vk_error(await send(http), 6)
    ok(await send(http))
    vk.faults.fail_next(code=10)
    assert vk_error(await call(http, "groups.getById"), 10) == "Internal server error"
    assert len(vk.sent) == 1


async def test_drop_hang_http_latency_and_outage(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    vk.faults.drop_next("messages.send")
    with pytest.raises(httpx.TransportError):
        await send(http)
    vk.faults.hang_next(seconds=0.2)
    started = time.monotonic()
    with pytest.raises(httpx.TransportError):
        await call(http, "groups.getById")
    assert time.monotonic() - started >= 0.2
    vk.faults.http_next(status=502)
    reply = await http.post("/method/groups.getById", data={"access_token": TOKEN, "v": "5.199"})
    assert reply.status_code == 502
    vk.faults.latency = 0.2
    started = time.monotonic()
    ok(await call(http, "groups.getById"))
    assert time.monotonic() - started >= 0.2
    vk.faults.clear()
    vk.faults.set_outage(True)
    url = (await vk.user(PEER).send_doc("a.txt", b"a")).update["object"]["message"]["attachments"][0]["doc"]["url"]
    for path in ("/method/groups.getById", f"/lp/{GROUP_ID}", url):
        assert (await http.get(path)).status_code == 503
    assert (await http.get("/_vk/state")).status_code == 200  # control is never faulted
    vk.faults.set_outage(False)
    ok(await call(http, "groups.getById"))
    assert vk.sent == []


async def test_long_poll_requests_can_be_dropped(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    vk.faults.drop_next("longpoll")
    with pytest.raises(httpx.TransportError):
        await check(http, server)
    ok(await call(http, "groups.getById"))  # a long-poll rule does not touch API methods
    assert (await check(http, server))["updates"] == []
    with pytest.raises(ValueError):
        vk.faults.fail_next("longpoll", code=6)


async def test_faults_over_http(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    spec = {"add": [{"kind": "error", "count": 1, "code": 10, "method": "messages.send"}], "rate_limit": None}
    reply = await http.post("/_vk/faults", json=spec)
    assert reply.status_code == 200 and reply.json()["rate_limit"] is None
    vk_error(await send(http), 10)
    ok(await send(http))
    for bad in ({"add": [{"kind": "melt"}]}, {"latency": -1}, {"rate_limit": 0}, {"surprise": 1},
                {"add": [{"kind": "error", "method": "longpoll"}]}):
        assert (await http.post("/_vk/faults", json=bad)).status_code == 400, bad
    assert vk.faults.pending() == [] and vk.state.rate_limit is None
    assert (await http.post("/_vk/faults", json={"outage": True, "rate_limit": 5})).status_code == 200
    assert (await http.post("/method/groups.getById")).status_code == 503
    assert (await http.post("/_vk/faults", json={"clear": True})).json()["outage"] is False
    assert vk.state.rate_limit == 5


# --------------------------------------------------------------------------- long poll


async def test_a_user_message_arrives_by_long_poll_in_the_5_199_shape(
    vk: RunningVkEmulator, http: httpx.AsyncClient
) -> None:
    server = await lp_server(http)
    posted = await vk.user(PEER).say("Здравствуйте")
    answer = await check(http, server)
    assert answer["ts"] == str(int(server["ts"]) + 1)
    [update] = answer["updates"]
    assert update == posted.update
    assert update["group_id"] == GROUP_ID and update["type"] == "message_new" and update["v"] == "5.199"
    assert HEX40.fullmatch(update["event_id"])
    message, info = update["object"]["message"], update["object"]["client_info"]
    assert info["keyboard"] is True and info["inline_keyboard"] is True and "callback" in info["button_actions"]
    assert {k: message[k] for k in ("from_id", "peer_id", "out", "text", "random_id", "fwd_messages")} == {
        "from_id": PEER, "peer_id": PEER, "out": 0, "text": "Здравствуйте", "random_id": 0, "fwd_messages": []
    }
    assert message["id"] == posted.message_id and message["conversation_message_id"] == 1
    assert "payload" not in message and message["important"] is False and message["is_hidden"] is False
    MessageNew(**update)  # vkbottle's own model of the event accepts it
    follow = await check(http, server, ts=answer["ts"])
    assert follow == {"ts": answer["ts"], "updates": []}


async def test_long_poll_takes_get_post_form_and_post_query(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    await vk.user(PEER).say("один")
    params = {"act": "a_check", "key": server["key"], "ts": server["ts"], "wait": "0"}
    by_form = (await http.post(server["server"], data=params)).json()
    by_query = (await http.post(server["server"], params=params)).json()  # how vkbottle asks
    by_get = (await http.get(server["server"], params=params)).json()
    assert by_form == by_query == by_get and len(by_get["updates"]) == 1
    assert (await http.get(server["server"], params={**params, "act": "x"})).status_code == 400
    assert (await http.get(f"/lp/{GROUP_ID + 1}", params=params)).status_code == 404


async def test_long_poll_holds_until_an_update_comes(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    held = asyncio.create_task(check(http, server, wait=10))
    await asyncio.sleep(0.2)
    assert not held.done()
    started = time.monotonic()
    await vk.user(PEER).say("вы тут?")
    answer = await asyncio.wait_for(held, 2)
    assert time.monotonic() - started < 1.0
    assert [u["object"]["message"]["text"] for u in answer["updates"]] == ["вы тут?"]


async def test_long_poll_answers_empty_after_wait(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    started = time.monotonic()
    answer = await check(http, server, wait=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert answer == {"ts": server["ts"], "updates": []}


async def test_wait_is_capped(make_vk: Any) -> None:
    vk = await make_vk(max_wait=0.2)
    async with httpx.AsyncClient(base_url=vk.url) as http:
        server = await lp_server(http)
        started = time.monotonic()
        assert (await check(http, server, wait=25))["updates"] == []
        assert time.monotonic() - started < 1.5


async def test_failed_1_when_ts_is_outside_the_history(make_vk: Any) -> None:
    vk = await make_vk(history=5, start_ts=100)
    async with httpx.AsyncClient(base_url=vk.url) as http:
        server = await lp_server(http)
        assert server["ts"] == "100"
        for i in range(8):
            await vk.user(PEER).say(f"m{i}")
        assert await check(http, server) == {"failed": 1, "ts": "108"}  # 100..102 were dropped
        assert await check(http, server, ts="109") == {"failed": 1, "ts": "108"}  # from the future
        assert await check(http, server, ts="garbage") == {"failed": 1, "ts": "108"}
        answer = await check(http, server, ts="103")
        assert [u["object"]["message"]["text"] for u in answer["updates"]] == ["m3", "m4", "m5", "m6", "m7"]
        assert answer["ts"] == "108"


async def test_failed_2_for_a_wrong_or_expired_key(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    assert await check(http, server, key="0" * 40) == {"failed": 2}
    vk.expire_key()
    await vk.user(PEER).say("после смены ключа")
    assert await check(http, server) == {"failed": 2}
    fresh = await lp_server(http)
    assert fresh["key"] != server["key"]
    answer = await check(http, fresh, ts=server["ts"])  # the old ts goes on with the new key
    assert [u["object"]["message"]["text"] for u in answer["updates"]] == ["после смены ключа"]


async def test_failed_3_when_history_is_lost(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    held = asyncio.create_task(check(http, server, wait=10))
    await asyncio.sleep(0.1)
    vk.lose_history()
    assert await asyncio.wait_for(held, 2) == {"failed": 3}  # a held request learns at once
    assert await check(http, server) == {"failed": 3}
    fresh = await lp_server(http)
    assert (await check(http, fresh))["updates"] == []


async def test_at_most_100_updates_per_answer(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    for i in range(250):
        await vk.user(PEER + i % 7).say(str(i))
    ts, sizes, texts = server["ts"], [], []
    for _ in range(3):
        answer = await check(http, server, ts=ts)
        sizes.append(len(answer["updates"]))
        texts += [u["object"]["message"]["text"] for u in answer["updates"]]
        ts = answer["ts"]
    assert sizes == [100, 100, 50]
    assert texts == [str(i) for i in range(250)]
    assert int(ts) == int(server["ts"]) + 250


async def test_poller_waiting_tells_when_a_bot_listens(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    with pytest.raises(TimeoutError):
        await vk.poller_waiting(within=0.05)
    server = await lp_server(http)
    held = asyncio.create_task(check(http, server, wait=5))
    await vk.poller_waiting(within=2)
    assert vk.state.updates.held == 1
    await vk.user(PEER).say("я тут")
    await held
    assert vk.state.updates.held == 0
    with pytest.raises(TimeoutError):
        await vk.poller_waiting(within=0.05)


async def test_two_pollers_both_receive_every_update(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    first = asyncio.create_task(check(http, server, wait=5))
    second = asyncio.create_task(check(http, server, wait=5))
    await asyncio.sleep(0.1)
    posted = await vk.user(PEER).say("всем")
    for answer in await asyncio.gather(first, second):
        assert [u["event_id"] for u in answer["updates"]] == [posted.event_id]


# --------------------------------------------------------------------------- scripted users


async def test_press_sends_the_label_and_payload_of_the_last_keyboard(
    vk: RunningVkEmulator, http: httpx.AsyncClient
) -> None:
    user = vk.user(PEER)
    with pytest.raises(AssertionError, match="no keyboard was sent"):
        await user.press("Меню")
    ok(await send(http, keyboard=kb([[button("Старое", '{"v":1}')]])))
    ok(await send(http, message="без клавиатуры"))
    ok(await send(http, keyboard=kb([[button("Да", '{"a":"yes"}'), button("Нет", {"a": "no"})]])))
    ok(await send(http, message="и ещё текст"))
    assert user.last_keyboard_labels() == ["Да", "Нет"]
    posted = await user.press("Нет")
    message = posted.update["object"]["message"]
    assert message["text"] == "Нет" and message["payload"] == '{"a":"no"}'
    with pytest.raises(AssertionError, match=r"\['Да', 'Нет'\]"):
        await user.press("Старое")
    ok(await send(http, keyboard=kb([])))
    with pytest.raises(AssertionError, match=r"buttons: \[\]"):
        await user.press("Да")


async def test_a_one_time_keyboard_is_gone_after_a_press(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    user = vk.user(PEER)
    ok(await send(http, keyboard=kb([[button("Да")]], one_time=True)))
    await user.press("Да")
    with pytest.raises(AssertionError, match="one_time"):
        await user.press("Да")
    link = {"action": {"type": "open_link", "label": "Link", "link": "https://vk.com"}}
    ok(await send(http, keyboard=kb([[link]])))
    with pytest.raises(AssertionError, match="opens"):
        await user.press("Link")


async def test_wait_reply_hands_out_each_reply_once(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    user = vk.user(PEER)
    ok(await send(http, message="первый"))
    ok(await send(http, peer_id=PEER + 1, message="чужой"))
    ok(await send(http, message="второй"))
    assert (await user.wait_reply()).text == "первый"
    assert (await user.wait_reply()).text == "второй"
    later = asyncio.create_task(user.wait_reply(timeout=2))
    await asyncio.sleep(0.05)
    ok(await send(http, message="третий"))
    assert (await later).text == "третий"
    with pytest.raises(AssertionError, match="no reply to peer"):
        await user.wait_reply(timeout=0.1)
    await user.assert_no_reply(within=0.05)
    assert [m.text for m in user.replies] == ["первый", "второй", "третий"]
    assert vk.user(PEER) is user


async def test_group_chat_members_share_the_chat_peer(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    chat = vk.chat(5)
    await chat.user(11).say("/help")
    await chat.user(12).say("и мне")
    updates = (await check(http, server))["updates"]
    assert [(u["object"]["message"]["peer_id"], u["object"]["message"]["from_id"]) for u in updates] == [
        (2_000_000_005, 11),
        (2_000_000_005, 12),
    ]
    assert [u["object"]["message"]["conversation_message_id"] for u in updates] == [1, 2]
    ok(await send(http, peer_id=2_000_000_005, message="помощь"))
    assert (await chat.user(11).wait_reply()).text == "помощь"
    assert (await chat.user(12).wait_reply()).text == "помощь"
    with pytest.raises(ValueError):
        vk.user(2_000_000_005)


# --------------------------------------------------------------------------- files


async def test_documents_are_hosted_with_size_and_ext(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    data = bytes(range(256)) * 40
    posted = await vk.user(PEER).send_doc("Скан заявления.PDF", data, text="прикладываю")
    message = posted.update["object"]["message"]
    [attachment] = message["attachments"]
    doc = attachment["doc"]
    assert attachment["type"] == "doc" and message["text"] == "прикладываю"
    assert (doc["title"], doc["size"], doc["ext"], doc["owner_id"]) == ("Скан заявления.PDF", len(data), "pdf", PEER)
    assert doc["url"].startswith(vk.url + "/files/")
    reply = await http.get(doc["url"])
    assert reply.status_code == 200 and reply.content == data
    assert reply.headers["content-type"] == "application/pdf"
    MessageNew(**posted.update)


async def test_photos_come_in_several_sizes_the_largest_being_the_real_bytes(
    vk: RunningVkEmulator, http: httpx.AsyncClient
) -> None:
    data = b"\xff\xd8\xff\xe0 a jpeg of a broken printer"
    posted = await vk.user(PEER).send_photo(data, width=1000, height=750)
    photo = posted.update["object"]["message"]["attachments"][0]["photo"]
    sizes = photo["sizes"]
    assert [s["type"] for s in sizes] == ["s", "m", "x", "y", "z"]
    assert [s["width"] for s in sizes] == sorted(s["width"] for s in sizes)
    largest = max(sizes, key=lambda s: s["width"] * s["height"])
    assert (largest["width"], largest["height"]) == (1000, 750)
    assert (await http.get(largest["url"])).content == data
    assert [(s["width"], s["height"]) for s in sizes[:-1]] == [(75, 56), (130, 98), (604, 453), (807, 605)]
    for size in sizes[:-1]:
        body = (await http.get(size["url"])).content
        assert body and body != data
    MessageNew(**posted.update)


async def test_links_expire(make_vk: Any, clock: Any) -> None:
    vk = await make_vk(clock=clock, file_ttl=60)
    async with httpx.AsyncClient(base_url=vk.url) as http:
        posted = await vk.user(PEER).send_doc("a.txt", b"hello")
        url = posted.update["object"]["message"]["attachments"][0]["doc"]["url"]
        clock.advance(59)
        assert (await http.get(url)).content == b"hello"
        clock.advance(1)
        assert (await http.get(url)).status_code == 404
        assert (await http.get("/files/nope")).status_code == 404


async def test_stickers_and_voice_messages(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    sticker = (await vk.user(PEER).send_sticker()).update
    voice = (await vk.user(PEER).send_voice(b"OggS voice", duration=4)).update
    assert sticker["object"]["message"]["attachments"][0]["type"] == "sticker"
    audio = voice["object"]["message"]["attachments"][0]["audio_message"]
    assert audio["duration"] == 4 and (await http.get(audio["link_ogg"])).content == b"OggS voice"
    MessageNew(**sticker)
    MessageNew(**voice)


# --------------------------------------------------------------------------- callback mode


async def test_callback_confirmation_and_delivery_with_the_secret(vk: RunningVkEmulator, endpoint: Any) -> None:
    await vk.use_callback(endpoint.url, "s3cret", endpoint.confirmation)
    assert endpoint.received == [{"type": "confirmation", "group_id": GROUP_ID}]
    posted = await vk.user(PEER).say("через callback")
    [event] = await endpoint.wait_for(1)
    assert event == {**posted.update, "secret": "s3cret"}
    await vk.callback_idle()
    assert [(d.reason, d.event_id, d.status, d.accepted) for d in vk.deliveries] == [
        ("confirmation", "", 200, True),
        ("first", posted.event_id, 200, True),
    ]
    assert len(vk.state.updates) == 0  # nothing went to long poll
    await vk.use_long_poll()
    await vk.user(PEER).say("снова long poll")
    assert len(vk.state.updates) == 1 and len(endpoint.events()) == 1


async def test_a_wrong_confirmation_string_is_refused(vk: RunningVkEmulator, endpoint: Any) -> None:
    with pytest.raises(CallbackConfirmationError, match="expected 'другая'"):
        await vk.use_callback(endpoint.url, "s", "другая")
    assert vk.callback is None
    await vk.user(PEER).say("в long poll")
    assert len(vk.state.updates) == 1 and endpoint.events() == []
    with pytest.raises(CallbackConfirmationError):
        await vk.use_callback("http://127.0.0.1:9/nothing-listens", "s", "c")


async def test_events_not_answered_ok_are_retried_with_growing_pauses(vk: RunningVkEmulator, endpoint: Any) -> None:
    endpoint.then(500, "boom").then(200, "OK").then(200, "ok, thanks").then(200, "ok")
    await vk.use_callback(endpoint.url, "s", endpoint.confirmation, retry_delay=0.05)
    posted = await vk.user(PEER).say("повтори")
    events = await endpoint.wait_for(4)
    assert {e["event_id"] for e in events} == {posted.event_id}
    await vk.callback_idle()
    tries = [d for d in vk.deliveries if d.reason != "confirmation"]
    assert [(d.reason, d.attempt, d.status, d.body, d.accepted) for d in tries] == [
        ("first", 1, 500, "boom", False),
        ("retry", 2, 200, "OK", False),
        ("retry", 3, 200, "ok, thanks", False),
        ("retry", 4, 200, "ok", True),
    ]
    gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2


async def test_delivery_gives_up_after_the_attempts(vk: RunningVkEmulator, endpoint: Any) -> None:
    endpoint.default.status = 503
    await vk.use_callback(endpoint.url, "s", endpoint.confirmation, attempts=3, retry_delay=0.01)
    await vk.user(PEER).say("никто не слушает")
    await vk.callback_idle()
    assert [(d.attempt, d.status) for d in vk.deliveries[1:]] == [(1, 503), (2, 503), (3, 503)]


async def test_a_slow_answer_counts_as_no_answer(vk: RunningVkEmulator, endpoint: Any) -> None:
    endpoint.then(200, "ok", delay=0.5)
    await vk.use_callback(endpoint.url, "s", endpoint.confirmation, answer_timeout=0.2, retry_delay=0.01)
    posted = await vk.user(PEER).say("медленно")
    await vk.callback_idle()
    first, second = vk.deliveries[1:]
    assert first.status is None and first.error and "0.2" in first.error and not first.accepted
    assert (second.event_id, second.attempt, second.accepted) == (posted.event_id, 2, True)


async def test_duplicates_and_late_resends(vk: RunningVkEmulator, endpoint: Any) -> None:
    await vk.use_callback(endpoint.url, "s", endpoint.confirmation)
    vk.duplicate_deliveries(1)
    twice = await vk.user(PEER).say("дважды")
    once = await vk.user(PEER).say("однажды")
    vk.delay_resend(1, delay=0.2)
    late = await vk.user(PEER).say("и ещё раз позже")
    await vk.callback_idle()
    ids = [e["event_id"] for e in endpoint.events()]
    assert sorted(ids) == sorted([twice.event_id, twice.event_id, once.event_id, late.event_id, late.event_id])
    reasons = {(d.event_id, d.reason) for d in vk.deliveries}
    assert (twice.event_id, "duplicate") in reasons and (late.event_id, "resend") in reasons
    resent = [d for d in vk.deliveries if d.event_id == late.event_id]
    assert resent[1].at - resent[0].at >= 0.2


async def test_round_robin_over_several_urls_a_refused_attempt_is_retried_on_the_next(
        vk: RunningVkEmulator, endpoint: Any) -> None:
    # Two workers behind a load balancer (the same endpoint under two URLs) and one that is down.
    a, dead, b = endpoint.url, "http://127.0.0.1:9/nothing-listens", endpoint.url + "?worker=b"
    with pytest.raises(ValueError, match="not both"):
        await vk.use_callback(a, "s", endpoint.confirmation, urls=[a, b])
    await vk.use_callback(urls=[a, dead, b], secret="s", confirmation_code=endpoint.confirmation, retry_delay=0.05)
    first = await vk.user(PEER).say("первое")
    await vk.callback_idle()
    second = await vk.user(PEER).say("второе")
    await vk.callback_idle()
    assert [(d.reason, d.event_id, d.url, d.accepted) for d in vk.deliveries] == [
        ("confirmation", "", a, True),
        ("first", first.event_id, dead, False),
        ("retry", first.event_id, b, True),
        ("first", second.event_id, a, True),
    ]
    assert vk.deliveries[1].status is None and vk.deliveries[1].error
    assert vk.deliveries[2].at - vk.deliveries[1].at >= 0.05
    assert [e["event_id"] for e in endpoint.events()] == [first.event_id, second.event_id]


async def test_switches_need_callback_mode(vk: RunningVkEmulator) -> None:
    with pytest.raises(RuntimeError, match="use_callback"):
        vk.duplicate_deliveries(1)


# --------------------------------------------------------------------------- control API


async def test_control_say_press_and_sent(vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    server = await lp_server(http)
    reply = await http.post("/_vk/say", json={"peer_id": PEER, "text": "привет"})
    assert reply.status_code == 200
    [update] = (await check(http, server))["updates"]
    assert update["event_id"] == reply.json()["event_id"]
    ok(await send(http, message="меню", keyboard=kb([[button("Заявки", '{"cmd":"list"}')]])))
    sent = (await http.get("/_vk/sent", params={"peer_id": PEER})).json()
    assert [m["text"] for m in sent] == ["меню"]
    assert (await http.post("/_vk/press", json={"peer_id": PEER, "label": "Заявки"})).status_code == 200
    missing = await http.post("/_vk/press", json={"peer_id": PEER, "label": "Нет такой"})
    assert missing.status_code == 409 and "Заявки" in missing.text
    assert (await http.post("/_vk/say", json={"peer_id": "x"})).status_code == 400
    state = (await http.get("/_vk/state")).json()
    assert state["long_poll"]["mode"] == "long_poll" and state["sent"][0]["text"] == "меню"


# --------------------------------------------------------------------------- vkbottle as the client


async def test_vkbottle_api_calls_and_errors(vk: RunningVkEmulator) -> None:
    api = API(TOKEN, http_client=AiohttpClient())
    api.API_URL = vk.api_url
    try:
        answer = await api.request("groups.getById", {})
        assert answer["response"]["groups"][0]["id"] == GROUP_ID
        message_id = await api.messages.send(peer_id=PEER, message="из vkbottle", random_id=0)
        assert vk.sent[-1].message_id == message_id and vk.sent[-1].text == "из vkbottle"
        with pytest.raises(VKAPIError[911]):
            await api.messages.send(peer_id=PEER, message="x", random_id=0, keyboard='{"buttons": [[]]}')
        with pytest.raises(VKAPIError[914]):
            await api.messages.send(peer_id=PEER, message="x" * 5000, random_id=0)
    finally:
        await api.http_client.close()


async def test_vkbottle_bot_polling_gets_server_and_events(vk: RunningVkEmulator) -> None:
    api = API(TOKEN, http_client=AiohttpClient())
    api.API_URL = vk.api_url
    polling = BotPolling(api, wait=1)
    try:
        server = await polling.get_server()
        assert polling.group_id == GROUP_ID
        posted = await vk.user(PEER).say("событие")
        event = await polling.get_event(server)
        assert [u["event_id"] for u in event["updates"]] == [posted.event_id]
    finally:
        await api.http_client.close()


async def test_a_vkbottle_bot_talks_to_a_scripted_user(
    vk: RunningVkEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # BotPolling saves its ts under ./.vkbottle
    api = API(TOKEN, http_client=AiohttpClient())
    api.API_URL = vk.api_url
    bot = Bot(api=api)
    menu = Keyboard().add(Text("Мои заявки", {"cmd": "list"})).get_json()

    @bot.on.message(payload={"cmd": "list"})
    async def tickets(message: Message) -> None:
        await message.answer("Заявок нет")

    @bot.on.message(text="привет")
    async def hello(message: Message) -> None:
        await message.answer("Здравствуйте!", keyboard=menu)

    task = asyncio.create_task(bot.run_polling())
    try:
        await vk.poller_waiting()  # skip_old_events: say only once the poller has its ts
        user = vk.user(PEER)
        await user.say("привет")
        greeting = await user.wait_reply()
        assert greeting.text == "Здравствуйте!" and greeting.labels() == ["Мои заявки"]
        await user.press("Мои заявки")
        assert (await user.wait_reply()).text == "Заявок нет"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await api.http_client.close()


async def test_aiohttp_form_post_like_the_adapter(vk: RunningVkEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        form = {"access_token": TOKEN, "v": "5.199", "peer_id": str(PEER), "message": "a", "random_id": "5"}
        async with session.post(vk.api_url + "messages.send", data=form) as reply:
            assert reply.status == 200
            assert (await reply.json())["response"] == vk.sent[-1].message_id
