"""Fixtures for the fake VK server's tests: the server on loopback, a plain HTTP client for it,
a clock tests move by hand, and a bot-side Callback API endpoint whose answers a test scripts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from emulators.vk.server import RunningVkEmulator
from tests.vk_fixtures import make_vk, vk

__all__ = ["Endpoint", "clock", "endpoint", "http", "make_vk", "vk"]


class ManualClock:
    """Seconds since the epoch, moved only by `advance` (rate windows, dedupe, link expiry)."""

    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def http(vk: RunningVkEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=vk.url, timeout=10) as client:
        yield client


@dataclass
class Answer:
    status: int = 200
    body: str = "ok"
    delay: float = 0.0


@dataclass
class Endpoint:
    """A bot's Callback API endpoint: records every request and answers from a script.

    Requests beyond the script get `default`; a confirmation request gets `confirmation`.
    """

    url: str = ""
    confirmation: str = "c0nf1rm"
    default: Answer = field(default_factory=Answer)
    script: list[Answer] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        self.received.append(body)
        self.arrived.set()
        if body.get("type") == "confirmation":
            return web.Response(text=self.confirmation)
        answer = self.script.pop(0) if self.script else self.default
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return web.Response(status=answer.status, text=answer.body)

    def then(self, status: int = 200, body: str = "ok", delay: float = 0.0) -> Endpoint:
        """Script the next answer to an event (they are used in order)."""
        self.script.append(Answer(status, body, delay))
        return self

    def events(self) -> list[dict[str, Any]]:
        return [b for b in self.received if b.get("type") != "confirmation"]

    async def wait_for(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least `count` events (not confirmations) have arrived."""
        async with asyncio.timeout(within):
            while len(self.events()) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events()


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()
    app = web.Application()
    app.router.add_post("/callback", ep.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    ep.url = f"http://{host}:{port}/callback"
    try:
        yield ep
    finally:
        await runner.cleanup()
