"""`supportbot studio`: the flows' map, findings, a simulator and the conversation tests in a page.

The bot is built as for `supportbot chat` (build_app, the in-process SimpleOne unless
SIMPLEONE_URL is set), on a throwaway SQLite database and spool of its own, so that nothing the
studio does lands in the bot's storage. Letters are shown in the page unless SMTP is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from adapters.web.server import is_loopback, studio_app
from adapters.web.studio import Studio, StudioMailer, TestRunner
from engine.actions.context import AuthPolicy
from engine.convtest import Outcome, load_conversations, run_all
from engine.flows.findings import Finding
from engine.reload import FlowHolder
from supportbot.app import App, build_app
from supportbot.config import Config

log = logging.getLogger(__name__)
TOKEN_ENV = "SUPPORTBOT_STUDIO_TOKEN"


def studio_config(config: Config, flows_dir: Path | None, workdir: Path) -> Config:
    """The bot's configuration for the studio: its own storage, quick status checks, no watch
    of the holder's own (the studio watches, and tells the page)."""
    return replace(config, flows_dir=flows_dir or config.flows_dir, flows_watch=False,
                   database_url=f"sqlite:///{workdir / 'studio.db'}", spool_dir=workdir / "spool",
                   status_poll=2.0, comment_poll=2.0)


def safety_notes(config: Config) -> list[tuple[str, bool]]:
    """Where tickets and letters go, for the page: a real system is named, in red."""
    so, smtp = config.simpleone, config.smtp
    return [
        (f"ВНИМАНИЕ: заявки создаются в настоящей системе SimpleOne ({so.url})!", True) if so
        else ("Заявки создаются во встроенном эмуляторе SimpleOne: в настоящую систему ничего не уходит.", False),
        (f"ВНИМАНИЕ: письма отправляются по-настоящему через {smtp.host}:{smtp.port}!", True) if smtp
        else ("Письма никуда не отправляются: они показываются здесь, в разговоре.", False),
    ]


def test_runner(config: Config) -> TestRunner:
    from supportbot.conversation_world import EmulatorWorld

    async def run(holder: FlowHolder) -> tuple[list[Outcome], list[Finding]]:
        flow_set = holder.current
        folder = config.flows_dir / "tests"
        tests, problems = load_conversations([folder]) if folder.is_dir() else ([], [])
        world = await EmulatorWorld.start(flow_set.tickets.tables, config.auth_domains)
        try:
            outcomes = await run_all(flow_set, tests, world, auth=AuthPolicy(domains=config.auth_domains))
        finally:
            await world.close()
        return outcomes, problems

    return run


@dataclass(slots=True)
class RunningStudio:
    app: App
    studio: Studio
    runner: web.AppRunner
    url: str


@contextlib.asynccontextmanager
async def running_studio(config: Config, *, flows_dir: Path | None = None, host: str = "127.0.0.1",
                         port: int = 8088, token: str = "") -> AsyncIterator[RunningStudio]:
    """The studio served until the block ends (the command, and the tests)."""
    if not is_loopback(host) and not token:
        raise ValueError(f"--host {host} is not loopback: a --token is required")
    workdir = Path(tempfile.mkdtemp(prefix="supportbot-studio-"))
    config = studio_config(config, flows_dir, workdir)
    runner: web.AppRunner | None = None
    app = await build_app(config, allow_emulator=True)
    try:
        agent = None
        if app.emulator is not None:
            from supportbot.demo import agent_console

            agent = agent_console(app.emulator)
        studio = Studio(app.flows, app.engine.handle, app.storage, config.flows_dir,
                        test_runner(config), agent, safety_notes(config))
        if config.smtp is None:
            studio.mailer = StudioMailer(studio)
            app.engine.services.mailer = studio.mailer
        await studio.reload()  # the findings of the set in force (warnings too)
        app.tasks.append(asyncio.create_task(studio.watch()))
        app.tasks.append(asyncio.create_task(studio.show_notices()))
        runner = web.AppRunner(studio_app(studio, token), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        yield RunningStudio(app, studio, runner, f"http://{shown}:{bound[1]}/")
    finally:
        if runner is not None:
            await runner.cleanup()
        await app.close()
        shutil.rmtree(workdir, ignore_errors=True)


async def studio_command(config: Config, flows_dir: Path | None, host: str, port: int, token: str | None) -> int:
    token = token or os.environ.get(TOKEN_ENV, "")
    async with running_studio(config, flows_dir=flows_dir, host=host, port=port, token=token) as running:
        print(f"supportbot studio: {running.url}" + (" (the page asks for the token)" if token else ""))
        for text, real in running.studio.safety:
            print(("WARNING: " if real else "") + text)
        await asyncio.Event().wait()
    return 0
