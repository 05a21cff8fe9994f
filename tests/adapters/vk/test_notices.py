"""Notices reach VK users once: sent from storage, marked sent, resent with the same random_id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.storage.sqlite import SqliteStorage, open_sqlite
from adapters.vk.api import VkApi
from adapters.vk.notices import send_notices, vk_peer_id
from adapters.vk.sender import VkSender
from emulators.vk.server import RunningVkEmulator, start_vk_emulator
from engine.ports import Notice

GROUP = 77
TOKEN = "notice-token"


@pytest.fixture
async def vk() -> AsyncIterator[RunningVkEmulator]:
    emulator = await start_vk_emulator(group_id=GROUP, tokens=(TOKEN,))
    yield emulator
    await emulator.close()


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    db = await open_sqlite(tmp_path / "bot.db")
    yield db
    await db.close()


async def test_notices_are_sent_once_and_marked(vk: RunningVkEmulator, storage: SqliteStorage) -> None:
    await storage.notices_add([Notice("outbox:1", "vk:501", "Заявка «Принтер» зарегистрирована под номером INC0000001.",
                                      1.0),
                               Notice("status:x", "vk:502", "Заявка INC0000002: новый статус — В работе.", 2.0),
                               Notice("outbox:2", "console:me", "не для VK", 3.0)])
    async with aiohttp.ClientSession() as session:
        sender = VkSender(VkApi(session, [TOKEN], api_url=vk.api_url, rate=100), backoff=0.01)
        assert await send_notices(storage, sender) == 3
        assert await send_notices(storage, sender) == 0
        assert await storage.notices_unsent() == []
        assert [m.text for m in vk.state.sent_to(501)] == ["Заявка «Принтер» зарегистрирована под номером "
                                                            "INC0000001."]
        assert [m.text for m in vk.state.sent_to(502)] == ["Заявка INC0000002: новый статус — В работе."]
        assert vk.state.sent_to(502)[0].keyboard is None  # the user's buttons stay as they were
        # The process dies after sending, before marking: the notice goes again with the same
        # random_id, and VK keeps one message.
        await storage.notices_add([Notice("outbox:9", "vk:501", "Комментарий к заявке INC0000001 добавлен.", 4.0)])
        marking = storage.notices_sent

        async def crash(ids: object) -> None:
            raise OSError("killed")

        storage.notices_sent = crash  # type: ignore[method-assign]
        with pytest.raises(OSError):
            await send_notices(storage, sender)
        storage.notices_sent = marking  # type: ignore[method-assign]
        assert [n.id for n in await storage.notices_unsent()] == ["outbox:9"]
        assert await send_notices(storage, sender) == 1
        texts = [m.text for m in vk.state.sent_to(501)]
        assert texts.count("Комментарий к заявке INC0000001 добавлен.") == 1 and len(texts) == 2


def test_only_vk_peers_have_a_peer_id() -> None:
    assert vk_peer_id("vk:2000000001") == 2000000001
    assert vk_peer_id("console:me") is None and vk_peer_id("vk:") is None and vk_peer_id("vk:-5") is None


async def test_notices_sent_are_counted_by_kind(vk: RunningVkEmulator, storage: SqliteStorage) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from adapters.web.metrics import PrometheusTelemetry

    await storage.notices_add([Notice("status:a", "vk:601", "Заявка INC0000001: новый статус — В работе.", 1.0),
                               Notice("comment:a", "vk:601", "Сообщение по заявке INC0000001", 2.0),
                               Notice("status:b", "vk:602", "Заявка INC0000002: новый статус — Решена.", 3.0)])
    telemetry = PrometheusTelemetry()
    async with aiohttp.ClientSession() as session:
        sender = VkSender(VkApi(session, [TOKEN], api_url=vk.api_url, rate=100), backoff=0.01, telemetry=telemetry)
        assert await send_notices(storage, sender) == 3
    text = telemetry.exposition().decode()
    seen = {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}
    assert seen[("supportbot_notices_sent_total", (("kind", "status"),))] == 2
    assert seen[("supportbot_notices_sent_total", (("kind", "comment"),))] == 1
    assert seen[("supportbot_replies_sent_total", (("channel", "vk"),))] == 3
