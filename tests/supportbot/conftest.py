"""Fixtures of the process tests: the SimpleOne emulator the bot processes talk to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from emulators.simpleone.server import RunningEmulator, start_emulator


@pytest.fixture
async def simpleone() -> AsyncIterator[RunningEmulator]:
    emulator = await start_emulator(auto_users_domains=("ranepa.ru",))
    yield emulator
    await emulator.close()
