"""The VK channel end to end in one process: the fake VK server over HTTP, the real engine on
SQLite, the SimpleOne emulator over HTTP — in long-poll and in callback mode."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from adapters.storage.sqlite import open_sqlite
from adapters.vk.api import VkApi
from adapters.vk.attachments import AttachmentFetcher
from adapters.vk.bot import VkBot
from adapters.vk.callback import make_callback_app, resume_pending
from adapters.vk.delivery import DeliveryLog, resend_unsent
from adapters.vk.longpoll import LongPoller
from adapters.vk.sender import VkSender
from emulators.mail_sink import MemoryMailSink
from emulators.vk.server import RunningVkEmulator, start_vk_emulator
from emulators.vk.users import FakeUser
from engine.actions.context import AuthPolicy, Services
from engine.dialogue.runtime import Engine
from engine.flows.model import FlowSet
from engine.flows.source import StaticFlows
from engine.ports import Storage
from engine.work.ticket_outbox import ticket_outbox
from supportbot.conversation_world import EmulatorWorld
from tests.http_served import served

GROUP = 4242
TOKEN = "community-token"
SECRET = "s3cr3t-callback"
CONFIRMATION = "a1b2c3d4"



@dataclass
class Channel:
    vk: RunningVkEmulator
    world: EmulatorWorld
    storage: Storage
    mailer: MemoryMailSink
    engine: Engine
    bot: VkBot
    session: aiohttp.ClientSession
    api: VkApi
    outbox: asyncio.Task[None] | None = None
    poller_task: asyncio.Task[None] | None = None
    poller: LongPoller | None = None

    async def start_polling(self) -> None:
        self.poller = LongPoller(self.api, self.storage, self.bot, group_id=GROUP, wait=1, backoff=0.05)
        self.poller_task = asyncio.create_task(self.poller.run())
        await asyncio.wait_for(self.poller.ready.wait(), 5)

    async def stop_polling(self) -> None:
        if self.poller_task is not None:
            self.poller_task.cancel()
            await asyncio.gather(self.poller_task, return_exceptions=True)
            self.poller_task = None
        await self.bot.dispatcher.drain()

    async def close(self) -> None:
        await self.stop_polling()
        if self.outbox is not None:
            self.outbox.cancel()
            await asyncio.gather(self.outbox, return_exceptions=True)
        await self.session.close()
        await self.storage.close()

    def code_for(self, email: str) -> str:
        message = self.mailer.last_to(email)
        assert message is not None, f"no letter to {email}"
        found = re.search(r"\b(\d{6})\b", message.body)
        assert found
        return found.group(1)


async def make_channel(vk: RunningVkEmulator, world: EmulatorWorld, flow_set: FlowSet, db: Path | Storage) -> Channel:
    storage = await open_sqlite(db) if isinstance(db, Path) else db
    mailer = MemoryMailSink()
    services = Services(storage, world.tickets, mailer, world.spool, AuthPolicy())
    flows = StaticFlows(flow_set)
    worker = ticket_outbox(services, flows)
    engine = Engine(flows, services)
    session = aiohttp.ClientSession()
    api = VkApi(session, [TOKEN], api_url=vk.api_url, rate=50)
    bot = VkBot(engine.handle, engine.message, api, VkSender(api, backoff=0.02, attempts=5),
                AttachmentFetcher(session, max_bytes=2 * 1024 * 1024, extra_origins=(vk.api_url,)),
                group_id=GROUP,
                delivery=DeliveryLog(storage, every=0.05))
    return Channel(vk, world, storage, mailer, engine, bot, session, api,
                   outbox=asyncio.create_task(worker.run()))


@pytest.fixture
async def vk() -> AsyncIterator[RunningVkEmulator]:
    emulator = await start_vk_emulator(group_id=GROUP, tokens=(TOKEN,), rate_limit=20, max_wait=1.0)
    yield emulator
    await emulator.close()


@pytest.fixture
async def channel(vk: RunningVkEmulator, world: EmulatorWorld, flow_set: FlowSet,
                  tmp_path: Path) -> AsyncIterator[Channel]:
    ch = await make_channel(vk, world, flow_set, tmp_path / "bot.db")
    yield ch
    await ch.close()


async def say(user: FakeUser, text: str) -> str:
    await user.say(text)
    return (await user.wait_reply()).text


async def press(user: FakeUser, label: str) -> str:
    await user.press(label)
    return (await user.wait_reply()).text


async def sign_in(ch: Channel, user: FakeUser, email: str) -> None:
    assert "корпоративной почте" in await press(user, "Создать заявку")
    assert f"отправил код на {email}" in await say(user, email)
    assert f"вы вошли как {email}" in await say(user, ch.code_for(email))


async def create_ticket_dialogue(ch: Channel, user: FakeUser, email: str) -> str:
    """The whole dialogue through VK: sign in, pick, describe, attach a photo, confirm, submit."""
    assert "Главное меню" in await say(user, "Начать")
    await sign_in(ch, user, email)
    assert "Сопровождение сервисов сотрудника" in await press(user, "Сервисы сотрудника")
    assert "Опишите проблему" in await press(user, "Программы (ПО)")
    assert "Прикрепите" in await say(user, "Не открывается Excel: пишет, что файл повреждён")
    await user.send_photo(b"\xff\xd8\xff" + b"jpeg" * 5000)
    reply = await user.wait_reply()
    assert re.search(r"Файл «photo_\d+\.jpg» получен \(1 из 5\)", reply.text), reply.text
    assert "Проверьте заявку" in await press(user, "Готово")
    done = await press(user, "Отправить")
    found = re.search(r"Заявка (INC\d+) создана", done)
    assert found, done
    return found.group(1)


async def attachments(channel: Channel, ticket: dict[str, str], count: int) -> list[dict[str, str]]:
    """The ticket's files once `count` are there: files go up after the number is told (follow-up
    outbox items), so they may still be on their way when the answer comes."""
    state = channel.world.emulator.state
    for _ in range(500):
        found = state.attachments("itsm_incident", ticket["sys_id"])
        if len(found) >= count:
            return list(found)
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} file(s) expected on the ticket, {len(found)} uploaded within 10 s")


def no_keyboard_refused(vk: RunningVkEmulator) -> None:
    """Every message the bot sent went through with its keyboard: VK never said 911."""
    assert all(m.keyboard is not None for m in vk.sent), [m.text[:40] for m in vk.sent if m.keyboard is None]


async def test_the_whole_ticket_dialogue_over_long_poll(channel: Channel, vk: RunningVkEmulator) -> None:
    await channel.start_polling()
    user = vk.user(1001)
    number = await create_ticket_dialogue(channel, user, "vk-user@ranepa.ru")
    state = channel.world.emulator.state
    [ticket] = state.records("itsm_incident")
    assert ticket["number"] == number and "Не открывается Excel" in ticket["description"]
    [attachment] = await attachments(channel, ticket, 1)
    assert attachment["file_name"].startswith("photo_")
    assert state.attachment_bytes(attachment["sys_id"]).startswith(b"\xff\xd8\xff")  # the largest size
    no_keyboard_refused(vk)


async def test_the_whole_ticket_dialogue_over_callbacks_with_duplicates_and_resends(
        channel: Channel, vk: RunningVkEmulator) -> None:
    app = make_callback_app(channel.bot, channel.storage, group_id=GROUP, secret=SECRET, confirmation=CONFIRMATION,
                            path="/vk")
    async with served(app) as port:
        await vk.use_callback(f"http://127.0.0.1:{port}/vk", SECRET, CONFIRMATION, retry_delay=0.05)
        vk.duplicate_deliveries(50)
        vk.delay_resend(50, delay=0.05)
        user = vk.user(1002)
        number = await create_ticket_dialogue(channel, user, "callback@ranepa.ru")
        await vk.callback_idle()
        await user.assert_no_reply(within=0.3)
        assert len(channel.world.emulator.state.records("itsm_incident")) == 1
        assert number == "INC0000001"
        # Each user message got exactly one reply although VK delivered most of them 2–3 times.
        events = {a.event_id for a in vk.deliveries if a.event_id}
        assert len(user.replies) == len(events)
        assert len(vk.deliveries) > 2 * len(events)
        no_keyboard_refused(vk)


async def test_the_callback_endpoint_checks_confirmation_secret_and_group(channel: Channel) -> None:
    app = make_callback_app(channel.bot, channel.storage, group_id=GROUP, secret=SECRET, confirmation=CONFIRMATION)
    event = {"type": "message_new", "group_id": GROUP, "event_id": "f" * 40, "v": "5.199",
             "object": {"message": {"id": 1, "peer_id": 5, "from_id": 5, "text": "Начать", "date": 1}}}
    async with served(app) as port:
        url = f"http://127.0.0.1:{port}/"
        async with aiohttp.ClientSession() as http:
            async def post(body: object) -> tuple[int, str]:
                async with http.post(url, json=body) as resp:
                    return resp.status, await resp.text()

            assert await post({"type": "confirmation", "group_id": GROUP}) == (200, CONFIRMATION)
            assert (await post({"type": "confirmation", "group_id": 1}))[0] == 403
            assert (await post({**event, "secret": "wrong"}))[0] == 403
            assert (await post({**event}))[0] == 403
            assert await post({**event, "secret": SECRET}) == (200, "ok")
            assert await post({**event, "secret": SECRET}) == (200, "ok")  # a resend: dropped
            assert await post({"type": "message_typing_state", "group_id": GROUP, "secret": SECRET}) == (200, "ok")
            async with http.post(url, data=b"{not json") as resp:
                assert resp.status == 400
            # Deep nesting before any secret is checked: refused as bad input, not a 500.
            for deep in (b"[" * 5000, b'{"a":' * 5000, b"[" * 33 + b"]" * 33):
                async with http.post(url, data=deep) as resp:
                    assert resp.status == 400, deep[:10]
        await channel.bot.dispatcher.drain()
        assert await channel.storage.seen_event("f" * 40)
        stored = await channel.storage.load_session("vk:5")
        assert stored is not None and stored.version == 1  # handled once


async def test_events_answered_but_not_handled_are_handled_after_a_restart(
        channel: Channel, vk: RunningVkEmulator, world: EmulatorWorld, flow_set: FlowSet, tmp_path: Path) -> None:
    # Receive two events as the endpoint does (recorded, answered), then "crash" before handling.
    event = {"type": "message_new", "group_id": GROUP, "v": "5.199",
             "object": {"message": {"id": 1, "peer_id": 1003, "from_id": 1003, "text": "Начать", "date": 1}}}
    await channel.storage.inbox_add("a" * 40, "vk:1003", json.dumps({**event, "event_id": "a" * 40}))
    second = {**event, "event_id": "b" * 40,
              "object": {"message": {"id": 2, "peer_id": 1003, "from_id": 1003, "text": "Помощь", "date": 2}}}
    await channel.storage.inbox_add("b" * 40, "vk:1003", json.dumps(second))
    assert await resume_pending(channel.bot, channel.storage) == 2
    await channel.bot.dispatcher.drain()
    texts = [m.text for m in vk.user(1003).replies]
    assert len(texts) == 2 and "Главное меню" in texts[0] and "Я принимаю заявки" in texts[1]
    assert await channel.storage.inbox_pending() == []
    assert await resume_pending(channel.bot, channel.storage) == 0


async def test_long_poll_resumes_where_it_stopped_without_replays(
        channel: Channel, vk: RunningVkEmulator) -> None:
    await channel.start_polling()
    user = vk.user(1004)
    assert "Главное меню" in await say(user, "Начать")
    assert "Я принимаю заявки" in await press(user, "Помощь")
    await channel.stop_polling()
    saved = await channel.storage.get_cursor(f"vk:{GROUP}:longpoll_ts")
    assert saved is not None
    # While the bot is down the user writes; after the restart that message is handled, once.
    await user.say("Главное меню")
    await channel.start_polling()
    assert "Главное меню" in (await user.wait_reply()).text
    await user.assert_no_reply(within=0.5)
    assert len(user.replies) == 3


async def test_long_poll_survives_expired_keys_lost_history_and_vk_errors(
        channel: Channel, vk: RunningVkEmulator) -> None:
    await channel.start_polling()
    user = vk.user(1005)
    assert "Главное меню" in await say(user, "Начать")
    vk.expire_key()
    assert "Я принимаю заявки" in await say(user, "Помощь")
    vk.lose_history()
    await asyncio.sleep(0.3)  # the poller gets a new key and ts
    assert "Главное меню" in await say(user, "Главное меню")
    # A burst of "too many requests" and an internal error: the replies still arrive.
    vk.faults.fail_next("messages.send", 3, code=6)
    vk.faults.fail_next("messages.send", 1, code=10)
    assert "Я принимаю заявки" in await say(user, "Помощь")
    assert channel.bot.sender.retried >= 4


async def test_group_chats_get_a_pointer_stickers_and_voice_a_clear_answer(
        channel: Channel, vk: RunningVkEmulator) -> None:
    await channel.start_polling()
    chat = vk.chat(3).user(1006)
    await chat.say(f"[club{GROUP}|@support] как создать заявку?")
    pointer = await chat.wait_reply()
    assert "только в личных сообщениях" in pointer.text and pointer.peer_id == 2_000_000_003
    await chat.say(f"[club{GROUP}|@support] а ещё?")
    await chat.assert_no_reply(within=0.3)  # once an hour is enough
    user = vk.user(1007)
    await user.send_sticker()
    assert "стикеры" in (await user.wait_reply()).text
    await user.send_voice()
    assert "Голосовые сообщения" in (await user.wait_reply()).text


async def test_a_long_reply_is_split_and_the_keyboard_rides_on_the_last_part(
        channel: Channel, vk: RunningVkEmulator) -> None:
    await channel.start_polling()
    user = vk.user(1008)
    await say(user, "Начать")
    await sign_in(channel, user, "long@ranepa.ru")
    await press(user, "Главное меню")
    # An agent wrote a long description in SimpleOne: the ticket's page is over VK's 4096 characters.
    caller = channel.world.emulator.state.records("user", "email=long@ranepa.ru")[0]["sys_id"]
    channel.world.emulator.state.add_record("itsm_incident", {"caller": caller, "subject": "Длинная",
                                                              "description": "Очень подробно. " * 300})
    assert "1. INC0000001" in await press(user, "Мои заявки")
    await user.say("1")
    first, second = await user.wait_reply(), await user.wait_reply()
    assert first.text.startswith("Заявка INC0000001") and len(first.text) <= 4096
    assert first.keyboard is None and second.keyboard is not None
    assert "Дополнить заявку" in second.labels() and second.text.endswith("Очень подробно.")


async def test_long_poll_rides_out_network_failures(
        channel: Channel, vk: RunningVkEmulator, caplog: pytest.LogCaptureFixture) -> None:
    await channel.start_polling()
    user = vk.user(1009)
    assert "Главное меню" in await say(user, "Начать")
    vk.faults.drop_next("longpoll", 2)
    vk.faults.http_next("longpoll", 1, status=502)
    await vk.poller_waiting(within=5)  # the poll in flight ends; the next three fail
    assert "Я принимаю заявки" in await say(user, "Помощь")
    failures = [r for r in caplog.records if "long poll request failed" in r.getMessage()]
    assert failures  # it failed, backed off, and went on


async def test_documents_are_taken_within_limits_and_a_dead_link_is_said(
        channel: Channel, vk: RunningVkEmulator) -> None:
    await channel.start_polling()
    user = vk.user(1010)
    await say(user, "Начать")
    await sign_in(channel, user, "docs@ranepa.ru")
    await press(user, "Сервисы сотрудника")
    await press(user, "Программы (ПО)")
    await say(user, "Не устанавливается обновление программы учёта")
    await user.send_doc("журнал.log", b"ERROR 42\n" * 100)
    assert "Файл «журнал.log» получен" in (await user.wait_reply()).text
    # Over VK_MAX_FILE_MB (2 MB here): refused by its announced size, never downloaded.
    await user.send_doc("дамп.zip", b"0" * (3 * 1024 * 1024))
    assert "Файл «дамп.zip» больше" in (await user.wait_reply()).text
    # A link that expired before the bot fetched it.
    vk.state.file_ttl = -1
    await user.send_doc("поздно.pdf", b"%PDF-1.4")
    assert "Не удалось получить файл «поздно.pdf»" in (await user.wait_reply()).text
    await press(user, "Готово")
    assert "Заявка INC0000001 создана" in await press(user, "Отправить")
    [ticket] = channel.world.emulator.state.records("itsm_incident")
    assert [a["file_name"] for a in await attachments(channel, ticket, 1)] == ["журнал.log"]


async def test_an_answer_vk_did_not_take_is_sent_again_at_the_next_start(
        channel: Channel, vk: RunningVkEmulator) -> None:
    await channel.start_polling()
    user = vk.user(1011)
    assert "Главное меню" in await say(user, "Начать")
    # VK keeps failing while the step is committed: the answer is kept, not lost.
    vk.faults.fail_next("messages.send", 10, code=10)
    await user.say("Помощь")
    await asyncio.sleep(0.5)
    await user.assert_no_reply(within=0.1)
    assert [u.event_id for u in await channel.storage.replies_unsent()]
    vk.faults.clear()
    await channel.stop_polling()
    assert await resend_unsent(channel.storage, channel.bot.sender, channel.bot.delivery) == 1  # type: ignore[arg-type]
    assert "Я принимаю заявки" in (await user.wait_reply()).text
    assert await channel.storage.replies_unsent() == []
    # Sent answers are marked and never sent twice.
    assert await resend_unsent(channel.storage, channel.bot.sender, channel.bot.delivery) == 0  # type: ignore[arg-type]


async def test_old_unhandled_callback_events_are_dropped_not_replayed(channel: Channel, vk: RunningVkEmulator) -> None:
    event = {"type": "message_new", "group_id": GROUP, "v": "5.199", "event_id": "c" * 40,
             "object": {"message": {"id": 1, "peer_id": 1012, "from_id": 1012, "text": "Отправить", "date": 1}}}
    await channel.storage.inbox_add("c" * 40, "vk:1012", json.dumps(event))
    assert await resume_pending(channel.bot, channel.storage, max_age=-1) == 0
    assert await channel.storage.inbox_pending() == []
    await vk.user(1012).assert_no_reply(within=0.2)


async def test_a_kept_event_that_cannot_be_read_is_closed_not_retried_at_every_sweep(
        channel: Channel, caplog: pytest.LogCaptureFixture) -> None:
    """Before: left pending, it was logged as an error at every start and every sweep."""
    await channel.storage.inbox_add("d" * 40, "vk:1013", json.dumps({"type": "message_new", "object": {}}))
    assert await resume_pending(channel.bot, channel.storage) == 0
    assert await channel.storage.inbox_pending() == []
    assert await resume_pending(channel.bot, channel.storage) == 0
    assert caplog.text.count("cannot be parsed") == 1


async def test_the_saved_ts_moves_only_past_handled_events(channel: Channel, vk: RunningVkEmulator) -> None:
    served: list[int] = []
    original = vk.state.updates.poll

    async def counting(*args: object, **kwargs: object) -> object:
        answer = await original(*args, **kwargs)  # type: ignore[arg-type]
        served.append(len(answer.get("updates", [])) if isinstance(answer, dict) else 0)
        return answer

    vk.state.updates.poll = counting  # type: ignore[method-assign]
    await channel.start_polling()
    user = vk.user(1013)
    for text in ("Начать", "Помощь", "Главное меню"):
        await say(user, text)
    await channel.stop_polling()
    saved = await channel.storage.get_cursor(f"vk:{GROUP}:longpoll_ts")
    assert saved is not None and int(saved) >= 3
    before = sum(served)
    await channel.start_polling()
    await asyncio.sleep(1.2)  # a long poll or two after the restart
    assert sum(served) == before  # nothing handled is fetched again
    await user.assert_no_reply(within=0.1)


async def test_a_job_cut_short_does_not_move_the_ts(channel: Channel, vk: RunningVkEmulator) -> None:
    from adapters.vk.longpoll import TsTracker
    from adapters.vk.updates import InMessage

    tracker = TsTracker()
    batch = tracker.add("7", 1)
    started = asyncio.Event()

    async def stuck(msg: InMessage, *, prefetch: object = None) -> None:
        started.set()
        await asyncio.sleep(3600)

    channel.bot.process = stuck  # type: ignore[method-assign]
    channel.bot.submit(InMessage("e" * 40, 5, 5, 1, "hi", None), done=lambda: tracker.done(batch))
    await started.wait()
    await channel.bot.dispatcher.cancel()
    assert tracker.safe is None  # the event was not handled: the ts stays before it
    await asyncio.wait_for(channel.bot.dispatcher.drain(), 1)  # and nothing waits for it


async def test_a_cropped_message_is_read_whole(channel: Channel, vk: RunningVkEmulator) -> None:
    await channel.start_polling()
    user = vk.user(1014)
    await say(user, "Начать")
    await sign_in(channel, user, "cropped@ranepa.ru")
    await press(user, "Сервисы сотрудника")
    await press(user, "Программы (ПО)")
    await say(user, "Программа выдаёт ошибку при запуске")
    # VK left the attachments out of the update (is_cropped): the bot reads the message whole.
    await user.send_doc("скрин.png", b"\x89PNG" + b"0" * 100, cropped=True)
    assert "Файл «скрин.png» получен" in (await user.wait_reply()).text


async def test_a_body_trickled_in_slowly_is_cut_off(channel: Channel) -> None:
    """Slow bodies held connections (and file descriptors) open for as long as the sender liked."""
    app = make_callback_app(channel.bot, channel.storage, group_id=GROUP, secret=SECRET, confirmation=CONFIRMATION,
                            body_timeout=0.3)
    async with served(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 408"), status
        writer.close()
