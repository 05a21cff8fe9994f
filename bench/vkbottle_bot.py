"""The reference for bench/vk_path.py: the create-ticket dialogue as a plain vkbottle bot, written
the usual way (handlers, the built-in in-memory state dispenser, vkbottle's Keyboard builder),
the way the original prototype was built. It persists nothing; users are signed in up front.

Run by the benchmark as its own process:
  python bench/vkbottle_bot.py  (VK_API_URL, VK_TOKEN, VK_GROUP_ID, SIMPLEONE_URL, BENCH_CALLERS)

BENCH_CALLERS: a JSON object {peer_id: SimpleOne caller sys_id}.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import aiohttp
import httpx
import yaml
from vkbottle import API, BaseStateGroup, Bot, Keyboard, KeyboardButtonColor, Text
from vkbottle.bot import Message
from vkbottle.http import AiohttpClient

CATALOG = yaml.safe_load((Path(__file__).resolve().parent.parent / "flows" / "catalog.yaml").read_text("utf-8"))
GROUPS = CATALOG["catalog"]["groups"]
PAGE = 6


class Ticket(BaseStateGroup):
    GROUP = "group"
    ENTRY = "entry"
    DESCRIBE = "describe"
    FILES = "files"
    CONFIRM = "confirm"


def menu_keyboard() -> str:
    kb = Keyboard(one_time=False)
    kb.add(Text("Создать заявку"), color=KeyboardButtonColor.PRIMARY).row()
    kb.add(Text("Мои заявки")).add(Text("Дополнить заявку")).row()
    kb.add(Text("Помощь"))
    return kb.get_json()


def list_keyboard(names: list[str]) -> str:
    kb = Keyboard(one_time=False)
    for n, name in enumerate(names[:PAGE], 1):
        label = f"{n}. {name}"
        kb.add(Text(label[:39] + "…" if len(label) > 40 else label, payload={"i": n - 1})).row()
    if len(names) > PAGE:
        kb.add(Text("Далее ▶"))
        kb.row()
    kb.add(Text("Назад")).row()
    kb.add(Text("Главное меню"))
    return kb.get_json()


def main() -> None:
    # Quiet, like the supportbot side: per-event debug logging is not what is measured.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("vkbottle").setLevel(logging.WARNING)
    api = API(os.environ["VK_TOKEN"], http_client=AiohttpClient())
    api.API_URL = os.environ["VK_API_URL"]
    bot = Bot(api=api)
    callers: dict[int, str] = {int(k): v for k, v in json.loads(os.environ["BENCH_CALLERS"]).items()}
    simpleone_url = os.environ["SIMPLEONE_URL"]
    # BENCH_REFERENCE_HTTP: httpx (the project's SimpleOne library, plain) or aiohttp (vkbottle's own).
    use_aiohttp = os.environ.get("BENCH_REFERENCE_HTTP", "aiohttp") == "aiohttp"
    simpleone = httpx.AsyncClient(base_url=simpleone_url, auth=("bot", "bot-password"), timeout=30)
    session: list[aiohttp.ClientSession] = []

    async def create_ticket(fields: dict[str, str]) -> str:
        if not use_aiohttp:
            answer = await simpleone.post("/rest/v1/table/itsm_incident", json=fields)
            return str(answer.json()["data"][0]["number"])
        if not session:
            basic = aiohttp.BasicAuth("bot", "bot-password").encode()
            session.append(aiohttp.ClientSession(headers={"Authorization": basic}))
        async with session[0].post(simpleone_url + "/rest/v1/table/itsm_incident", json=fields) as resp:
            return str((await resp.json())["data"][0]["number"])

    @bot.on.private_message(text=["Начать", "Главное меню"])
    async def start(message: Message) -> None:
        await bot.state_dispenser.delete(message.peer_id)
        await message.answer("Главное меню IT-поддержки РАНХиГС.\nВыберите, что нужно сделать:",
                             keyboard=menu_keyboard())

    @bot.on.private_message(text="Создать заявку")
    async def create(message: Message) -> None:
        if message.peer_id not in callers:
            await message.answer("Сначала войдите по корпоративной почте.")
            return
        await bot.state_dispenser.set(message.peer_id, Ticket.GROUP)
        names = [g["name"] for g in GROUPS]
        text = "Выберите категорию:\n" + "\n".join(f"{n}. {name}" for n, name in enumerate(names[:PAGE], 1))
        await message.answer(text, keyboard=list_keyboard(names))

    @bot.on.private_message(state=Ticket.GROUP)
    async def group(message: Message) -> None:
        payload = message.get_payload_json() or {}
        index = payload.get("i")
        if index is None:
            await message.answer("Выберите категорию кнопкой.")
            return
        chosen = GROUPS[index]
        await bot.state_dispenser.set(message.peer_id, Ticket.ENTRY, group=index)
        names = [e["name"] for e in chosen["entries"]]
        text = f"{chosen['name']}\n" + "\n".join(f"{n}. {name}" for n, name in enumerate(names[:PAGE], 1))
        await message.answer(text, keyboard=list_keyboard(names))

    @bot.on.private_message(state=Ticket.ENTRY)
    async def entry(message: Message) -> None:
        payload = message.get_payload_json() or {}
        index = payload.get("i")
        state = message.state_peer
        if index is None or state is None:
            await message.answer("Выберите услугу кнопкой.")
            return
        chosen = GROUPS[state.payload["group"]]["entries"][index]
        await bot.state_dispenser.set(message.peer_id, Ticket.DESCRIBE, group=state.payload["group"], entry=chosen)
        kb = Keyboard(one_time=False).add(Text("Назад")).row().add(Text("Главное меню")).get_json()
        await message.answer(f"{chosen['name']}\n\nОпишите проблему:", keyboard=kb)

    @bot.on.private_message(state=Ticket.DESCRIBE)
    async def describe(message: Message) -> None:
        state = message.state_peer
        assert state is not None
        if len(message.text) < 10:
            await message.answer("Опишите проблему подробнее — хотя бы 10 символов.")
            return
        await bot.state_dispenser.set(message.peer_id, Ticket.FILES, **state.payload, description=message.text)
        kb = Keyboard(one_time=False).add(Text("Без файлов")).add(Text("Назад")).row()
        kb.add(Text("Главное меню"))
        await message.answer("Прикрепите скриншоты или нажмите «Без файлов».", keyboard=kb.get_json())

    @bot.on.private_message(state=Ticket.FILES, text=["Без файлов", "Готово"])
    async def files(message: Message) -> None:
        state = message.state_peer
        assert state is not None
        await bot.state_dispenser.set(message.peer_id, Ticket.CONFIRM, **state.payload)
        kb = Keyboard(one_time=False).add(Text("Отправить"), color=KeyboardButtonColor.POSITIVE).row()
        kb.add(Text("Главное меню"))
        await message.answer(f"Проверьте заявку:\nУслуга: {state.payload['entry']['name']}\n"
                             f"Описание: {state.payload['description']}", keyboard=kb.get_json())

    @bot.on.private_message(state=Ticket.CONFIRM, text="Отправить")
    async def submit(message: Message) -> None:
        state = message.state_peer
        assert state is not None
        entry = state.payload["entry"]
        number = await create_ticket({
            "caller": callers[message.peer_id], "subject": f"{entry['name']}: {state.payload['description']}"[:160],
            "description": state.payload["description"], "subcategory": entry["id"]})
        await bot.state_dispenser.delete(message.peer_id)
        await message.answer(f"Заявка {number} создана.", keyboard=menu_keyboard())

    bot.run()


if __name__ == "__main__":
    sys.exit(main())
