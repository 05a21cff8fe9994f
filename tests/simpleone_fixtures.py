"""The SimpleOne emulator as pytest fixtures, for the emulator's own tests and the client's.

Conftests import the fixtures (test modules cannot import a conftest); tests read the
emulator's credentials from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from emulators.simpleone.server import RunningEmulator, start_emulator
from emulators.simpleone.state import ManualClock

USERNAME = "bot"
PASSWORD = "s3cret-Passw0rd-for-tests"
STATIC_TOKEN = "static0token0for0tests0abcdef012"


@dataclass(frozen=True)
class Credentials:
    username: str = USERNAME
    password: str = PASSWORD
    static_token: str = STATIC_TOKEN


@pytest.fixture
def creds() -> Credentials:
    """The emulator fixture's credentials."""
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
async def raw(emulator: RunningEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx against the emulator, authenticated with HTTP Basic."""
    async with httpx.AsyncClient(base_url=emulator.url, auth=(USERNAME, PASSWORD), timeout=5) as http:
        yield http
