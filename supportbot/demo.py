"""The one door from the bot's wiring to the emulators, for the demo modes: `supportbot chat`
and `flowlint test` run SimpleOne in process and show mail in the terminal or keep it in a
list; `supportbot simpleone-emulator` serves the emulator. Production paths never come here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, TextIO

from emulators.mail_sink import ConsoleMailSink, MemoryMailSink
from emulators.simpleone.console import CONSOLE_HELP, run_command
from emulators.simpleone.faults import FaultRule
from emulators.simpleone.state import AGENT, DEMO_PASSWORD, DEMO_USER
from engine.ports import Mailer

if TYPE_CHECKING:  # aiohttp's client and server are imported by what starts them, not by `supportbot --help`
    from adapters.simpleone.client import SimpleOneClient
    from emulators.simpleone.server import RunningEmulator

__all__ = [
    "AGENT",
    "CONSOLE_HELP",
    "FaultRule",
    "MemoryMailSink",
    "RunningEmulator",
    "serve_simpleone",
    "start_simpleone",
    "terminal_mailer",
]

async def start_simpleone(
    domains: Sequence[str], *, read_timeout: float | None = None
) -> tuple[RunningEmulator, SimpleOneClient]:
    """A SimpleOne emulator on loopback in which any address at `domains` is a known user, and
    the real client signed in to it."""
    from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig
    from emulators.simpleone.server import start_emulator

    emulator = await start_emulator(auto_users_domains=domains)  # with the emulator's own account
    config = SimpleOneConfig(emulator.url, username=DEMO_USER, password=DEMO_PASSWORD)
    if read_timeout is not None:
        config = replace(config, read_timeout=read_timeout)
    return emulator, SimpleOneClient(config)


def agent_console(emulator: RunningEmulator) -> Callable[[str], str]:
    """The emulator's agent console as a function of one command line (the chat's /agent)."""
    return partial(run_command, emulator.state)


def terminal_mailer(stream: TextIO) -> Mailer:
    """Mail printed to the terminal: where a user of `supportbot chat` reads the sign-in code."""
    return ConsoleMailSink(stream)


async def serve_simpleone(host: str, port: int, domains: Sequence[str], *, console: bool = False) -> None:
    """The `supportbot simpleone-emulator` command: serve until cancelled; with `console`, act
    as a support agent by typing commands on stdin."""
    from emulators.simpleone.server import serve_forever

    await serve_forever(host, port, auto_users_domains=domains, console=console)
