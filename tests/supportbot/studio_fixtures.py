"""The studio as its tests run it: the shipped flows copied to a temporary folder (the tests edit
them), the in-process SimpleOne, served on a free loopback port; and a client of its JSON API."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from supportbot.config import load_config
from supportbot.studio_cli import RunningStudio, running_studio

ROOT = Path(__file__).resolve().parents[2]
TICKET = re.compile(r"INC\d{7}")


def copy_flows(tmp_path: Path, *, tests: bool = True) -> Path:
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows, ignore=None if tests else shutil.ignore_patterns("tests"))
    return flows


async def start_studio(tmp_path: Path, *, host: str = "127.0.0.1", token: str = "",
                       tests: bool = True) -> AsyncIterator[RunningStudio]:
    flows = copy_flows(tmp_path, tests=tests)
    config = load_config(env={"FLOWS_DIR": str(flows)}, env_file=None)
    async with running_studio(config, host=host, port=0, token=token) as running:
        yield running


class Api:
    def __init__(self, http: aiohttp.ClientSession, url: str, token: str = "") -> None:
        self.http = http
        self.url = url.rstrip("/")
        self.headers = {"X-Studio-Token": token} if token else {}

    async def get(self, path: str) -> Any:
        async with self.http.get(self.url + path, headers=self.headers) as response:
            assert response.status == 200, (path, response.status, await response.text())
            return await response.json()

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.post(self.url + path, json=body or {}, headers=self.headers) as response:
            assert response.status == 200, (path, response.status, await response.text())
            return await response.json()

    async def items(self) -> list[dict[str, Any]]:
        return list((await self.get("/api/session"))["items"])

    async def last_bot(self) -> dict[str, Any]:
        return [i for i in await self.items() if i["kind"] == "bot"][-1]

    async def press(self, label: str) -> None:
        reply = await self.last_bot()
        buttons = [b for row in reply["buttons"] for b in row if b["label"] == label]
        assert buttons, (label, reply)
        await self.post("/api/chat", {"payload": buttons[0]["payload"], "label": label})

    async def send(self, text: str) -> None:
        await self.post("/api/chat", {"text": text})


async def until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def sign_in_and_create_ticket(api: Api) -> str:
    """The shortest way to a ticket from a fresh conversation; its number."""
    await api.post("/api/restart")
    await api.press("Создать заявку")
    await api.send("ivanov-ii@ranepa.ru")
    letter = [i for i in await api.items() if i["kind"] == "letter"][-1]
    code = re.search(r"\b\d{6}\b", letter["text"])
    assert code, letter
    await api.send(code.group())
    await api.send("2")
    await api.send("6")
    await api.send("Не запускается программа учёта на рабочем месте")
    await api.press("Без файлов")
    await api.press("Отправить")
    found = TICKET.search((await api.last_bot())["text"])
    assert found, await api.last_bot()
    return found.group()
