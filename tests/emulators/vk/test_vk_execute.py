"""The fake VK server's `execute`: a script returning an array of method calls (the subset the
bot sends), each call's failure `false` plus an entry of execute_errors, as VK answers
(dev.vk.com/ru/method/execute; github.com/voronind/vk/issues/42)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from emulators.vk.execute import MAX_CALLS, ScriptError, parse_script
from emulators.vk.server import RunningVkEmulator
from tests.vk_fixtures import TOKEN


async def execute(http: httpx.AsyncClient, code: str, token: str = TOKEN) -> dict[str, Any]:
    reply = await http.post("/method/execute", data={"access_token": token, "v": "5.199", "code": code})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def send_call(peer: int, text: str, random_id: int | str = 0, **more: Any) -> str:
    params = {"peer_id": peer, "message": text, "random_id": random_id, **more}
    return f"API.messages.send({json.dumps(params, ensure_ascii=False)})"


async def test_calls_run_in_order_and_each_failure_is_false_with_its_error(
        vk: RunningVkEmulator, http: httpx.AsyncClient) -> None:
    vk.state.denied_peers.add(2)
    code = f"return [{send_call(1, 'первое', 11)}, {send_call(2, 'запрещено', 12)}, {send_call(3, 'третье', '13')}];"
    body = await execute(http, code)
    first, refused, third = body["response"]
    assert isinstance(first, int) and refused is False and isinstance(third, int)
    assert body["execute_errors"] == [{"method": "messages.send", "error_code": 901,
                                       "error_msg": "Can't send messages for users without permission"}]
    assert [m.text for m in vk.state.sent] == ["первое", "третье"]
    assert vk.state.sent_to(3)[0].random_id == 13  # a string parameter, read as VK reads the form
    assert vk.state.calls == [("execute", 0), ("messages.send", 0), ("messages.send", 901), ("messages.send", 0)]


async def test_no_errors_means_no_execute_errors(http: httpx.AsyncClient) -> None:
    body = await execute(http, f"return[{send_call(1, 'а')}];")
    assert "execute_errors" not in body and len(body["response"]) == 1


async def test_faults_act_on_the_calls_inside_and_on_execute_itself(vk: RunningVkEmulator,
                                                                    http: httpx.AsyncClient) -> None:
    vk.faults.fail_next("messages.send", code=10)
    body = await execute(http, f"return [{send_call(1, 'а')}, {send_call(2, 'б')}];")
    assert body["response"][0] is False and isinstance(body["response"][1], int)
    assert body["execute_errors"][0]["error_code"] == 10
    vk.faults.fail_next("execute", code=6)
    body = await execute(http, f"return [{send_call(1, 'а')}];")
    assert body["error"]["error_code"] == 6
    vk.faults.http_next("messages.send", status=502)  # a network fault of a method hits the batch
    reply = await http.post("/method/execute", data={"access_token": TOKEN, "v": "5.199",
                                                      "code": f"return [{send_call(1, 'а')}];"})
    assert reply.status_code == 502


async def test_a_script_outside_the_subset_is_refused_whole(http: httpx.AsyncClient) -> None:
    body = await execute(http, "var a = API.users.get({}); return a;")
    assert body["error"]["error_code"] == 12
    too_many = ",".join(send_call(i, "x") for i in range(1, MAX_CALLS + 2))
    assert (await execute(http, f"return [{too_many}];"))["error"]["error_code"] == 13
    unknown = await execute(http, "return [API.users.get({\"user_ids\": 1}), API.wall.post({})];")
    assert unknown["response"] == [False, False]
    assert [e["error_code"] for e in unknown["execute_errors"]] == [3, 3]
    assert (await execute(http, f"return [{send_call(1, 'x')}];", token="wrong"))["error"]["error_code"] == 5


@pytest.mark.parametrize("code", ["return [API.messages.send(1)];", "return [API.messages.send({\"a\": 1}]",
                                  "return [API.messages.send({\"a\": {\"b\": 1}})];", "return [];;",
                                  "return [API.messages.send({\"a\": 1}) API.messages.send({})];"])
def test_parse_refuses_what_it_does_not_know(code: str) -> None:
    with pytest.raises(ScriptError) as raised:
        parse_script(code)
    assert raised.value.code == 12


def test_parse_reads_json_objects_as_form_text() -> None:
    code = ' return [ API.messages.send({"peer_id": 5, "dont_parse_links": true, "message": "a\\"b"}) ] '
    assert parse_script(code) == [("messages.send", {"peer_id": "5", "dont_parse_links": "1", "message": 'a"b'})]
    assert parse_script("return [];") == []
