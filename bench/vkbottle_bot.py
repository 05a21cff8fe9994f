"""The reference for bench/vk_path.py and bench/in_process.py: the create-ticket dialogue as a plain
vkbottle bot, written the usual way (handlers, the built-in in-memory state dispenser, vkbottle's
Keyboard builder), the way the original prototype was built. It persists nothing; users are
signed in up front. Its texts and keyboards are supportbot's for the same steps (flows/*.yaml
as of this bench), so both bots send the same amount to VK.

Run by bench/vk_path.py as its own process:
  python bench/vkbottle_bot.py  (VK_API_URL, VK_TOKEN, VK_GROUP_ID, SIMPLEONE_URL, BENCH_CALLERS)

BENCH_CALLERS: a JSON object {peer_id: [SimpleOne caller sys_id, email]}.
bench/in_process.py builds the same bot with make_bot() around an API answering in process.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from vkbottle import API, BaseStateGroup, Bot, Keyboard, KeyboardButtonColor, Text
from vkbottle.bot import Message
from vkbottle.http import AiohttpClient

CATALOG = yaml.safe_load((Path(__file__).resolve().parent.parent / "flows" / "catalog.yaml").read_text("utf-8"))
GROUPS: list[dict[str, Any]] = CATALOG["catalog"]["groups"]
BESIDE = 22  # labels up to this long go two to a row, as supportbot lays out its pick lists
PICK = "Выберите категорию, затем услугу: кнопкой, номером или словами (например, «не работает Wi-Fi»)."
CreateTicket = Callable[[dict[str, str]], Awaitable[str]]


class Ticket(BaseStateGroup):
    GROUP = "group"
    ENTRY = "entry"
    DESCRIBE = "describe"
    FILES = "files"
    CONFIRM = "confirm"


def menu_keyboard() -> str:
    kb = Keyboard(one_time=False)
    kb.add(Text("Создать заявку", payload={"e": "create"}), color=KeyboardButtonColor.PRIMARY).row()
    kb.add(Text("Мои заявки", payload={"e": "mine"})).add(Text("Дополнить заявку", payload={"e": "add"})).row()
    kb.add(Text("Помощь", payload={"e": "help"})).add(Text("Выйти", payload={"e": "sign_out"}))
    return kb.get_json()


def list_keyboard(items: list[dict[str, Any]]) -> str:
    kb = Keyboard(one_time=False)
    in_row = 0
    for n, item in enumerate(items):
        label = str(item.get("label") or item["name"])[:40]
        alone = len(label) > BESIDE
        if in_row and (in_row == 2 or alone):
            kb.row()
            in_row = 0
        kb.add(Text(label, payload={"e": "pick", "i": n}))
        in_row = 2 if alone else in_row + 1
    kb.row().add(Text("Назад", payload={"e": "back"})).row().add(Text("Главное меню", payload={"e": "menu"}))
    return kb.get_json()


def numbered(items: list[dict[str, Any]]) -> str:
    return "\n".join(f"{n}. {item['name']}" for n, item in enumerate(items, 1))


def make_bot(api: API, callers: Mapping[int, tuple[str, str]], create_ticket: CreateTicket) -> Bot:
    """The bot with its handlers; callers: peer_id → (SimpleOne caller sys_id, email)."""
    bot = Bot(api=api)

    @bot.on.private_message(text=["Начать", "Главное меню"])
    async def start(message: Message) -> None:
        await bot.state_dispenser.delete(message.peer_id)
        email = callers[message.peer_id][1] if message.peer_id in callers else "?"
        await message.answer(f"Главное меню IT-поддержки РАНХиГС.\nВы вошли как {email}.\nОпишите проблему своими "
                             "словами — я подберу услугу. Или выберите, что нужно сделать:", keyboard=menu_keyboard())

    @bot.on.private_message(text="Создать заявку")
    async def create(message: Message) -> None:
        if message.peer_id not in callers:
            await message.answer("Сначала войдите по корпоративной почте.")
            return
        await bot.state_dispenser.set(message.peer_id, Ticket.GROUP)
        await message.answer(f"{PICK}\n\n{numbered(GROUPS)}", keyboard=list_keyboard(GROUPS))

    @bot.on.private_message(state=Ticket.GROUP)
    async def group(message: Message) -> None:
        payload = message.get_payload_json()
        index = payload.get("i") if isinstance(payload, dict) else None
        if index is None:
            await message.answer("Выберите категорию кнопкой.")
            return
        chosen = GROUPS[index]
        await bot.state_dispenser.set(message.peer_id, Ticket.ENTRY, group=index)
        entries = chosen["entries"]
        await message.answer(f"{PICK}\n\n{chosen['name']}:\n{numbered(entries)}", keyboard=list_keyboard(entries))

    @bot.on.private_message(state=Ticket.ENTRY)
    async def entry(message: Message) -> None:
        payload = message.get_payload_json()
        index = payload.get("i") if isinstance(payload, dict) else None
        state = message.state_peer
        if index is None or state is None:
            await message.answer("Выберите услугу кнопкой.")
            return
        chosen_group = GROUPS[state.payload["group"]]
        chosen = chosen_group["entries"][index]
        await bot.state_dispenser.set(message.peer_id, Ticket.DESCRIBE, group=state.payload["group"], entry=chosen)
        kb = Keyboard(one_time=False).add(Text("Назад", payload={"e": "back"})).row()
        kb.add(Text("Главное меню", payload={"e": "menu"}))
        await message.answer(f"{chosen_group['name']} → {chosen['name']}\n\nОпишите проблему: что случилось, где и "
                             "когда, что уже пробовали. Скриншоты можно прислать вместе с текстом или на следующем "
                             "шаге.", keyboard=kb.get_json())

    @bot.on.private_message(state=Ticket.DESCRIBE)
    async def describe(message: Message) -> None:
        state = message.state_peer
        assert state is not None
        if len(message.text) < 10:
            await message.answer("Опишите проблему подробнее — хотя бы 10 символов.")
            return
        await bot.state_dispenser.set(message.peer_id, Ticket.FILES, **state.payload, description=message.text)
        kb = Keyboard(one_time=False).add(Text("Без файлов", payload={"e": "done"})).row()
        kb.add(Text("Назад", payload={"e": "back"})).row().add(Text("Главное меню", payload={"e": "menu"}))
        await message.answer("Прикрепите скриншоты или файлы: до 5 шт., до 10 МБ каждый. Или нажмите «Без файлов».",
                             keyboard=kb.get_json())

    @bot.on.private_message(state=Ticket.FILES, text=["Без файлов", "Готово"])
    async def files(message: Message) -> None:
        state = message.state_peer
        assert state is not None
        await bot.state_dispenser.set(message.peer_id, Ticket.CONFIRM, **state.payload)
        kb = Keyboard(one_time=False)
        kb.add(Text("Отправить", payload={"e": "submit"}), color=KeyboardButtonColor.POSITIVE).row()
        kb.add(Text("Изменить услугу", payload={"e": "edit_service"}))
        kb.add(Text("Изменить описание", payload={"e": "edit_description"})).row()
        kb.add(Text("Изменить файлы", payload={"e": "edit_files"})).row()
        kb.add(Text("Главное меню", payload={"e": "menu"}))
        await message.answer(f"Проверьте заявку:\n\nКатегория: {GROUPS[state.payload['group']]['name']}\n"
                             f"Услуга: {state.payload['entry']['name']}\nОписание: {state.payload['description']}\n"
                             "Файлы: нет", keyboard=kb.get_json())

    @bot.on.private_message(state=Ticket.CONFIRM, text="Отправить")
    async def submit(message: Message) -> None:
        state = message.state_peer
        assert state is not None
        entry = state.payload["entry"]
        number = await create_ticket({
            "caller": callers[message.peer_id][0],
            "subject": f"{entry['name']}: {state.payload['description']}"[:160],
            "description": state.payload["description"], "subcategory": entry["id"]})
        await bot.state_dispenser.delete(message.peer_id)
        kb = Keyboard(one_time=False).add(Text("Мои заявки", payload={"e": "mine"}))
        kb.add(Text("Создать ещё", payload={"e": "again"})).row().add(Text("Главное меню", payload={"e": "menu"}))
        await message.answer(f"Заявка {number} создана. Её статус можно посмотреть в разделе «Мои заявки».",
                             keyboard=kb.get_json())

    return bot


def main() -> None:
    # Quiet, like the supportbot side: per-event debug logging is not what is measured.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("vkbottle").setLevel(logging.WARNING)
    api = API(os.environ["VK_TOKEN"], http_client=AiohttpClient())
    api.API_URL = os.environ["VK_API_URL"]
    callers = {int(k): (str(v[0]), str(v[1])) for k, v in json.loads(os.environ["BENCH_CALLERS"]).items()}
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

    make_bot(api, callers, create_ticket).run()


if __name__ == "__main__":
    main()
