"""Fixtures for the SimpleOne adapter tests: a real emulator on loopback and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig
from emulators.simpleone.server import RunningEmulator, start_emulator
from emulators.simpleone.state import ManualClock

USERNAME = "bot"
PASSWORD = "s3cret-Passw0rd-for-tests"
STATIC_TOKEN = "static0token0for0tests0abcdef012"

ClientFactory = Callable[..., SimpleOneClient]


@dataclass(frozen=True)
class Credentials:
    username: str = USERNAME
    password: str = PASSWORD
    static_token: str = STATIC_TOKEN


@pytest.fixture
def creds() -> Credentials:
    """The emulator fixture's credentials (test modules cannot import this conftest)."""
    return Credentials()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def emulator(clock: ManualClock) -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(
        username=USERNAME, password=PASSWORD, token=STATIC_TOKEN, clock=clock, token_ttl=3600
    )
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def make_client(emulator: RunningEmulator) -> AsyncIterator[ClientFactory]:
    """Build clients for the emulator; by default they log in with username and password."""
    made: list[SimpleOneClient] = []

    def make(transport: httpx.AsyncBaseTransport | None = None, **overrides: Any) -> SimpleOneClient:
        options: dict[str, Any] = {"base_url": emulator.url, "username": USERNAME, "password": PASSWORD}
        if "token" in overrides:
            options.pop("username")
            options.pop("password")
        options.update(overrides)
        client = SimpleOneClient(SimpleOneConfig(**options), transport=transport)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.close()


@pytest.fixture
def client(make_client: ClientFactory) -> SimpleOneClient:
    return make_client()


@pytest.fixture
async def raw(emulator: RunningEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx against the emulator, authenticated with HTTP Basic."""
    async with httpx.AsyncClient(base_url=emulator.url, auth=(USERNAME, PASSWORD), timeout=5) as http:
        yield http
