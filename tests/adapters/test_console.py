"""The terminal chat's rendering and parsing, without a process."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

from adapters.console import ConsoleChat
from adapters.storage.sqlite import open_sqlite
from engine.ports import Incoming, Notice
from engine.replies import Button, Reply

MENU = Reply("Меню", [[Button("Создать заявку", "create")], [Button("Мои заявки", "mine"), Button("Помощь", "help")]])
PAGE_2 = Reply("7. Демография …", [[Button("7. Демография", "pick", index=6)], [Button("8. Приём", "pick", index=7)],
                                    [Button("◀ Ранее", "pick_prev"), Button("Далее ▶", "pick_next")],
                                    [Button("Назад", "back")]])


async def _noop(peer: str, incoming: Incoming) -> list[Reply]:
    return []


def test_buttons_are_numbered_and_pressed_by_number_or_label() -> None:
    out = io.StringIO()
    chat = ConsoleChat(_noop, "console:t", out)
    chat.show(MENU)
    assert "[1] Создать заявку" in out.getvalue() and "[3] Помощь" in out.getvalue()
    pressed = chat.parse("3")
    assert pressed is not None and pressed.payload == '{"e":"help"}'
    typed = chat.parse("мои заявки")
    assert typed is not None and typed.payload is None and typed.text == "мои заявки"


def test_in_a_list_numbers_mean_items_and_letters_the_other_buttons() -> None:
    out = io.StringIO()
    chat = ConsoleChat(_noop, "console:t", out)
    chat.show(PAGE_2)
    text = out.getvalue()
    assert "[7] 7. Демография" in text and "[a] ◀ Ранее" in text and "[c] Назад" in text
    item = chat.parse("7")
    assert item is not None and item.payload == '{"e":"pick","i":6}'
    # A number not on this page goes to the bot, which knows every item's number.
    other = chat.parse("13")
    assert other is not None and other.payload is None and other.text == "13"
    back = chat.parse("c")
    assert back is not None and back.payload == '{"e":"back"}'


def test_attach_reads_files_and_reports_problems(tmp_path: Path) -> None:
    out = io.StringIO()
    chat = ConsoleChat(_noop, "console:t", out)
    shot = tmp_path / "shot.png"
    shot.write_bytes(b"png")
    incoming = chat.parse(f"/attach {shot} {tmp_path / 'missing.pdf'} -- вот скриншот")
    assert incoming is not None and [f.name for f in incoming.files] == ["shot.png"]
    assert incoming.files[0].mime == "image/png" and incoming.text == "вот скриншот"
    assert "cannot attach" in out.getvalue()
    assert chat.parse("/attach") is None


async def test_a_failing_bot_does_not_end_the_chat() -> None:
    async def failing(peer: str, incoming: Incoming) -> list[Reply]:
        raise RuntimeError("boom")

    out = io.StringIO()
    chat = ConsoleChat(failing, "console:t", out)
    await chat.send(Incoming(text="привет"))
    assert "(the bot failed: RuntimeError" in out.getvalue()


async def test_notices_for_this_peer_are_printed_once(tmp_path: Path) -> None:
    storage = await open_sqlite(tmp_path / "bot.db")
    out = io.StringIO()

    async def never(peer: str, incoming: Incoming) -> list[Reply]:
        raise AssertionError("no message is sent")

    chat = ConsoleChat(never, "console:me", out)
    await storage.notices_add([Notice("a", "console:me", "Заявка INC0000001: новый статус — В работе.", 1.0),
                               Notice("b", "vk:1", "чужое", 2.0)])
    showing = asyncio.create_task(chat.show_notices(storage, every=0.01))
    for _ in range(100):
        if "В работе" in out.getvalue():
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    showing.cancel()
    await asyncio.gather(showing, return_exceptions=True)
    assert out.getvalue().count("bot (notice): Заявка INC0000001: новый статус — В работе.") == 1
    assert "чужое" not in out.getvalue()
    assert [n.id for n in await storage.notices_unsent()] == ["b"]
    await storage.close()


async def test_reload_asks_the_app_to_read_the_flows_again_and_prints_what_it_says() -> None:
    out = io.StringIO()
    calls: list[int] = []

    async def reload() -> str:
        calls.append(1)
        return "flows reloaded: version abc"

    async def lines() -> AsyncIterator[str]:
        for line in ("/reload", "/help"):
            yield line

    chat = ConsoleChat(_noop, "console:t", out, reload=reload)
    await chat.run(lines(), greet=False)
    assert calls == [1] and "(flows reloaded: version abc)" in out.getvalue()
    assert "/reload" in out.getvalue()  # in the help too
    bare = io.StringIO()
    await ConsoleChat(_noop, "console:t", bare).run(lines(), greet=False)
    assert "(/reload is not available here)" in bare.getvalue()
