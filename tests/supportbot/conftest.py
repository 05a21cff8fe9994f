"""Fixtures of the process tests: the SimpleOne and VK emulators and the SMTP server the bot
processes talk to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from emulators.simpleone.server import RunningEmulator, start_emulator
from emulators.vk.server import RunningVkEmulator, start_vk_emulator
from tests.vk_processes import GROUP, TOKEN, Mailbox, smtp_mailbox


@pytest.fixture
async def simpleone() -> AsyncIterator[RunningEmulator]:
    emulator = await start_emulator(auto_users_domains=("ranepa.ru",))
    yield emulator
    await emulator.close()


@pytest.fixture
async def mailbox() -> AsyncIterator[tuple[Mailbox, int]]:
    async with smtp_mailbox() as box:
        yield box


@pytest.fixture
async def vk() -> AsyncIterator[RunningVkEmulator]:
    emulator = await start_vk_emulator(group_id=GROUP, tokens=(TOKEN,), max_wait=2.0)
    yield emulator
    await emulator.close()
