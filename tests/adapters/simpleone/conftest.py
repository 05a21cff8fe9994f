"""Fixtures for the SimpleOne adapter tests: a real emulator on loopback and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig
from adapters.simpleone.transport import Transport
from emulators.simpleone.server import RunningEmulator
from tests.simpleone_fixtures import PASSWORD, USERNAME, clock, creds, emulator, raw

__all__ = ["client", "clock", "creds", "emulator", "make_client", "raw"]

ClientFactory = Callable[..., SimpleOneClient]


@pytest.fixture
async def make_client(emulator: RunningEmulator) -> AsyncIterator[ClientFactory]:
    """Build clients for the emulator; by default they log in with username and password."""
    made: list[SimpleOneClient] = []

    def make(transport: Transport | None = None, **overrides: Any) -> SimpleOneClient:
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
