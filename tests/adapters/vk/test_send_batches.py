"""Messages sent in one loop turn go out as one `execute`, each keeping its own outcome: sent,
given up for good, retried, or sent without the keyboard VK refused; against the fake VK over HTTP."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.vk.api import VkApi
from adapters.vk.sender import MAX_BATCH, VkSender
from emulators.vk.server import RunningVkEmulator
from engine.replies import Button, Reply
from tests.vk_fixtures import TOKEN

MENU = [[Button("Создать заявку", "create", color="primary")], [Button("Мои заявки", "mine")]]


@pytest.fixture
async def sender(vk: RunningVkEmulator) -> AsyncIterator[VkSender]:
    async with aiohttp.ClientSession() as session:
        yield VkSender(VkApi(session, [TOKEN], api_url=vk.api_url, rate=1000), backoff=0.01, max_backoff=0.02)


def _requests(vk: RunningVkEmulator) -> collections.Counter[str]:
    return collections.Counter(method for method, _ in vk.state.calls)


async def _send_all(sender: VkSender, peers: range) -> list[bool]:
    return list(await asyncio.gather(*(sender.send(p, Reply(f"Ответ {p}", MENU), key=f"event-{p}") for p in peers)))


async def test_replies_of_one_turn_go_out_as_one_execute(vk: RunningVkEmulator, sender: VkSender) -> None:
    assert await _send_all(sender, range(1, 31)) == [True] * 30
    assert _requests(vk)["execute"] == 2  # 25 + 5: VK's limit of calls per script
    for peer in range(1, 31):
        (message,) = vk.state.sent_to(peer)
        assert message.text == f"Ответ {peer}"
        assert message.labels() == ["Создать заявку", "Мои заявки"]
    assert sender.batcher.batched == 30 and MAX_BATCH == 25


async def test_a_message_alone_is_a_plain_messages_send(vk: RunningVkEmulator, sender: VkSender) -> None:
    assert await sender.send(5, Reply("Один", MENU), key="alone")
    assert vk.state.calls == [("messages.send", 0)]


async def test_texts_reach_vk_exactly_through_the_script(vk: RunningVkEmulator, sender: VkSender) -> None:
    texts = ['кавычки " и \\ обратная черта', "строки\nи\tтабуляция", "разделитель\u2028строк\u2029абзацев",
             "эмодзи 🙂 и ^&=+%#", "</script> return [API.groups.getById({})];"]
    results = await asyncio.gather(*(sender.send(i + 1, Reply(t), key=f"t{i}") for i, t in enumerate(texts)))
    assert all(results) and _requests(vk)["execute"] == 1
    assert [vk.state.sent_to(i + 1)[0].text for i in range(len(texts))] == texts
    assert _requests(vk)["groups.getById"] == 0


async def test_a_refused_peer_is_given_up_alone(vk: RunningVkEmulator, sender: VkSender) -> None:
    vk.state.denied_peers.add(3)
    assert await _send_all(sender, range(1, 6)) == [True] * 5  # 901: nothing a retry would change
    assert [bool(vk.state.sent_to(p)) for p in range(1, 6)] == [True, True, False, True, True]
    assert ("messages.send", 901) in vk.state.calls


async def test_a_refused_keyboard_costs_only_its_own_keyboard(vk: RunningVkEmulator, sender: VkSender) -> None:
    vk.faults.fail_next("messages.send", code=911)  # the first call in the script
    assert await _send_all(sender, range(1, 4)) == [True] * 3
    assert vk.state.sent_to(1)[0].keyboard is None  # sent again without it
    assert [vk.state.sent_to(p)[0].labels() for p in (2, 3)] == [["Создать заявку", "Мои заявки"]] * 2


async def test_vks_own_limits_inside_a_script_are_retried(vk: RunningVkEmulator, sender: VkSender) -> None:
    vk.faults.fail_next("messages.send", count=2, code=10)
    assert await _send_all(sender, range(1, 5)) == [True] * 4
    assert [len(vk.state.sent_to(p)) for p in range(1, 5)] == [1] * 4
    assert sender.retried == 2


async def test_a_refused_execute_is_retried_for_every_message(vk: RunningVkEmulator, sender: VkSender) -> None:
    vk.faults.fail_next("execute", code=6)
    assert await _send_all(sender, range(1, 5)) == [True] * 4
    assert [len(vk.state.sent_to(p)) for p in range(1, 5)] == [1] * 4
    assert ("execute", 6) in vk.state.calls


async def test_an_execute_refused_for_its_own_sake_sends_the_messages_one_by_one(
        vk: RunningVkEmulator, sender: VkSender) -> None:
    # An error about the execute call (here 15, access denied) is no message's own refusal: none
    # may count as given up for good, each goes as a plain messages.send.
    vk.faults.fail_next("execute", code=15)
    assert await _send_all(sender, range(1, 4)) == [True] * 3
    assert _requests(vk)["messages.send"] == 3
    assert [len(vk.state.sent_to(p)) for p in range(1, 4)] == [1, 1, 1]


async def test_a_dropped_batch_is_sent_again_once(vk: RunningVkEmulator, sender: VkSender) -> None:
    # The answer is lost after VK took the messages? Dropped before here; either way the resend
    # carries the same random_ids, so each user gets one message.
    vk.faults.drop_next("messages.send")
    assert await _send_all(sender, range(1, 6)) == [True] * 5
    assert [len(vk.state.sent_to(p)) for p in range(1, 6)] == [1] * 5
    assert sender.retried == 5


async def test_a_batch_sent_twice_is_dropped_by_random_id(vk: RunningVkEmulator, sender: VkSender) -> None:
    await _send_all(sender, range(1, 6))
    await _send_all(sender, range(1, 6))  # a resend after a crash: the same keys
    assert [len(vk.state.sent_to(p)) for p in range(1, 6)] == [1] * 5


async def test_one_users_parts_and_replies_keep_their_order(vk: RunningVkEmulator, sender: VkSender) -> None:
    long_text = "\n\n".join(f"Абзац {i} " + "слово " * 600 for i in range(3))  # several messages

    async def user(peer: int) -> None:
        for i in range(3):
            await sender.send(peer, Reply(f"{long_text}\n\nответ {i}", MENU), key=f"{peer}-{i}")

    await asyncio.gather(*(user(p) for p in range(1, 6)))
    for peer in range(1, 6):
        texts = [m.text for m in vk.state.sent_to(peer)]
        assert [t for t in texts if t.startswith("Абзац 0")] and texts[-1].endswith("ответ 2")
        ends = [i for i, t in enumerate(texts) if "ответ" in t]
        assert [texts[i][-7:] for i in ends] == ["ответ 0", "ответ 1", "ответ 2"]
        assert vk.state.sent_to(peer)[-1].keyboard is not None
    assert _requests(vk)["execute"] >= 1


async def test_batching_off_sends_one_by_one(vk: RunningVkEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        plain = VkSender(VkApi(session, [TOKEN], api_url=vk.api_url, rate=1000), batch=False)
        assert await _send_all(plain, range(1, 4)) == [True] * 3
    assert vk.state.calls == [("messages.send", 0)] * 3
