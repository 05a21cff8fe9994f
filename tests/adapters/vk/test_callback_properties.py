"""Any update VK could send, or anyone could post, through the whole callback path: the endpoint
over HTTP, the inbox, the bot and the engine on SQLite, the fake VK server for the answers.

Whatever comes (wrong types, deep nesting, huge strings, forged payloads, garbage bodies): the
endpoint answers it without a 500, nothing is logged as an error, every event it recorded is
handled (answered, or closed with its reason), and the user's next message is answered as if
the odd one had not been there.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.vk.callback import make_callback_app
from emulators.vk.server import start_vk_emulator
from engine.load import load_flow_set
from supportbot.conversation_world import EmulatorWorld
from tests.adapters.vk.test_vk_channel import CONFIRMATION, GROUP, SECRET, TOKEN, make_channel
from tests.log_records import ErrorRecords

FLOWS = Path(__file__).resolve().parents[3] / "flows"
USER = object()  # stands for the example's own user id

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_keys = st.sampled_from(["type", "url", "sizes", "width", "height", "title", "ext", "size", "e", "i", "x"])
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    _keys | st.text(max_size=6), inner, max_size=4), max_leaves=25)
_huge = st.integers(2_000, 120_000).map(lambda n: "я" * n)
_deep = st.integers(40, 3_000).map(lambda n: "[" * n + "]" * n)
_ids = st.one_of(st.just(USER), _json, st.integers(-2**63, 2**63))
_attachment = st.fixed_dictionaries(
    {"type": st.sampled_from(["photo", "doc", "sticker", "audio_message", "link", "wall", "x"])},
    optional={"photo": _json, "doc": _json, "sticker": _json, "audio_message": _json})
_message = st.fixed_dictionaries({}, optional={
    "peer_id": _ids, "from_id": _ids, "id": _json, "date": _json, "conversation_message_id": _json,
    "text": st.one_of(st.text(max_size=80), _huge, _json),
    "payload": st.one_of(st.text(max_size=40), _deep, _json, _json.map(json.dumps), _huge),
    "attachments": st.one_of(st.lists(_attachment, max_size=3), _json),
    "is_cropped": _json, "out": _json, "fwd_messages": _json, "reply_message": _json,
})
_button = st.fixed_dictionaries({}, optional={
    "user_id": _ids, "peer_id": _ids, "event_id": _json, "conversation_message_id": _json,
    "payload": st.one_of(_json, _deep, st.text(max_size=40)),
})
_object = st.one_of(
    st.fixed_dictionaries({"message": _message}, optional={"client_info": _json}),
    _button, _json,
)
_update = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["message_new", "message_event", "message_reply", "wall_post_new"]),
                       st.text(max_size=12)),
     "object": _object},
    optional={"v": _json, "event_id": _json, "group_id": _json},
)
# Bodies that are not an update at all: not JSON, nested past any event, empty.
_garbage = st.one_of(st.text(max_size=200), _deep, st.just(""),
                    st.binary(max_size=200).map(lambda b: b.decode("latin-1")))


def _put_user(value: Any, peer: int) -> Any:
    if value is USER:
        return peer
    if isinstance(value, dict):
        return {k: _put_user(v, peer) for k, v in value.items()}
    if isinstance(value, list):
        return [_put_user(v, peer) for v in value]
    return value


def test_any_update_posted_is_answered_or_recorded_and_the_user_goes_on(tmp_path: Path) -> None:
    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    loop = asyncio.new_event_loop()
    errors = ErrorRecords()
    logging.getLogger().addHandler(errors)
    peers = itertools.count(7001)
    events = itertools.count(1)

    async def set_up() -> tuple[Any, ...]:
        vk = await start_vk_emulator(group_id=GROUP, tokens=(TOKEN,), rate_limit=1000, max_wait=1.0)
        world = await EmulatorWorld.start(flow_set.tickets.tables)
        channel = await make_channel(vk, world, flow_set, tmp_path / "bot.db")
        runner = web.AppRunner(make_callback_app(
            channel.bot, channel.storage, group_id=GROUP, secret=SECRET, confirmation=CONFIRMATION))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        return vk, world, channel, runner, aiohttp.ClientSession(), url

    vk, world, channel, runner, http, url = loop.run_until_complete(set_up())

    async def post(body: str) -> int:
        async with http.post(url, data=body.encode("utf-8", "surrogatepass"),
                             headers={"Content-Type": "application/json"}) as resp:
            return resp.status

    def envelope(update: dict[str, Any], peer: int) -> str:
        return json.dumps({**_put_user(update, peer), "group_id": GROUP, "secret": SECRET,
                           "event_id": f"prop-{next(events)}"}, ensure_ascii=False)

    def menu_request(peer: int) -> str:
        message = {"id": next(events), "date": 1, "peer_id": peer, "from_id": peer, "text": "Главное меню",
                   "attachments": [], "conversation_message_id": 1, "out": 0}
        return envelope({"type": "message_new", "object": {"message": message, "client_info": {}}}, peer)

    try:
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.one_of(_update, _garbage))
        # Found by this test: an infinite or fractional peer_id (a traceback; a message for the
        # wrong user), a text that is not a string (taken as its repr).
        @example({"type": "message_new", "object": {"message": {"peer_id": float("inf"), "text": "hi"}}})
        @example({"type": "message_new", "object": {"message": {"peer_id": USER, "from_id": 1.5, "text": "hi"}}})
        @example({"type": "message_new", "object": {"message": {"peer_id": USER, "text": {"x": [1]}}}})
        @example({"type": "message_new", "object": {"message": {"peer_id": USER, "payload": "[" * 2000}}})
        @example({"type": "message_new", "object": {"message": {"peer_id": USER, "text": "я" * 120_000}}})
        @example({"type": "message_new", "object": {"message": {"peer_id": USER, "attachments": [
            {"type": "photo", "photo": {"sizes": [{"url": "http://127.0.0.1:1/x.jpg", "width": "abc"}]}}]}}})
        def check(sent: dict[str, Any] | str) -> None:
            peer = next(peers)
            errors.records.clear()

            async def run() -> None:
                body = envelope(sent, peer) if isinstance(sent, dict) else sent
                status = await post(body)
                assert status in (200, 400, 403), status  # never a 500
                await channel.bot.dispatcher.drain()
                assert await channel.storage.inbox_pending() == []  # everything recorded was handled
                # The user goes on as if the odd event had not been there.
                assert await post(menu_request(peer)) == 200
                await channel.bot.dispatcher.drain()
                last = vk.state.sent_to(peer)[-1].text
                assert "Главное меню" in last, last

            loop.run_until_complete(run())
            assert not errors.records, [r.getMessage() for r in errors.records]

        check()
    finally:
        logging.getLogger().removeHandler(errors)

        async def tear_down() -> None:
            await http.close()
            await runner.cleanup()
            if channel.bot.delivery is not None:
                await channel.bot.delivery.close()
            await channel.close()
            await world.close()
            await vk.close()

        loop.run_until_complete(tear_down())
        loop.close()
