"""The fake VK server as pytest fixtures, for the server's own tests and the VK channel's.

Conftests import the fixtures (test modules cannot import a conftest); tests read the
community's token and id from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from emulators.vk.server import RunningVkEmulator, start_vk_emulator

TOKEN = "vk-token"
GROUP_ID = 777

EmulatorFactory = Callable[..., Awaitable[RunningVkEmulator]]


@pytest.fixture
async def make_vk() -> AsyncIterator[EmulatorFactory]:
    """Start emulators with options of the test's choosing; all are closed afterwards."""
    started: list[RunningVkEmulator] = []

    async def make(**options: Any) -> RunningVkEmulator:
        options = {"group_id": GROUP_ID, "tokens": (TOKEN, "second-token"), "max_wait": 2.0, **options}
        running = await start_vk_emulator(**options)
        started.append(running)
        return running

    try:
        yield make
    finally:
        for running in started:
            await running.close()


@pytest.fixture
async def vk(make_vk: EmulatorFactory) -> RunningVkEmulator:
    return await make_vk()
