"""Helpers for tests that run `supportbot run` / `supportbot serve` as real processes against the
fake VK server, the SimpleOne emulator and a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from pathlib import Path
from typing import IO, Any

from aiosmtpd.controller import Controller

from emulators.simpleone.server import RunningEmulator
from emulators.vk.server import RunningVkEmulator
from emulators.vk.users import FakeUser

ROOT = Path(__file__).resolve().parents[1]
GROUP = 515
TOKEN = "community-token"
SECRET = "callback-secret"
CONFIRMATION = "c0nf1rm"
CODE = re.compile(r"\b(\d{6})\b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler that keeps every letter: its plain-text body and its recipients."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.letters: list[tuple[tuple[str, ...], str]] = []  # (recipients, body), as they came

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        self.bodies.append(text)
        self.letters.append((tuple(str(r).lower() for r in envelope.rcpt_tos), text))
        return "250 OK"

    async def code(self, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """The code in the newest letter that has one, whoever it was for."""
        for _ in range(int(timeout / 0.05)):
            for body in reversed(self.bodies):
                found = CODE.search(body)
                if found:
                    return found.group(1)
            await asyncio.sleep(0.05)
        raise AssertionError("no letter with a code arrived")

    def letters_to(self, address: str) -> list[str]:
        return [body for to, body in self.letters if address.lower() in to]

    async def code_for(self, address: str, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """The code in the newest letter to `address` that has one."""
        for _ in range(int(timeout / 0.05)):
            for body in reversed(self.letters_to(address)):
                found = CODE.search(body)
                if found:
                    return found.group(1)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no letter with a code arrived for {address}")


@asynccontextmanager
async def smtp_mailbox() -> AsyncIterator[tuple[Mailbox, int]]:
    """A real SMTP server on loopback keeping what it receives; yields it and its port."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    await asyncio.to_thread(controller.start)
    try:
        yield box, controller.port
    finally:
        await asyncio.to_thread(controller.stop)


def bot_env(tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VK_", "SIMPLEONE_", "SMTP_", "SUPPORTBOT_"))}
    env.update(
        PYTHONPATH=str(ROOT), FLOWS_DIR=str(ROOT / "flows"), SPOOL_DIR=str(tmp_path / "spool"),
        SUPPORTBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
        VK_TOKEN=TOKEN, VK_GROUP_ID=str(GROUP), VK_API_URL=vk.api_url, VK_CALLBACK_SECRET=SECRET,
        VK_CONFIRMATION_CODE=CONFIRMATION,
        SIMPLEONE_URL=simpleone.url, SIMPLEONE_USERNAME="bot", SIMPLEONE_PASSWORD="bot-password",
        SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port), SMTP_FROM="helpdesk@ranepa.ru", SMTP_STARTTLS="false",
        # Short: an outbox item in hand when the bot is killed is leased for a few such timeouts.
        SIMPLEONE_TIMEOUT="2",
    )
    return env


async def start(args: list[str], env: dict[str, str], cwd: Path, stderr: IO[bytes] | None = None, *,
                descriptors: int | None = None) -> asyncio.subprocess.Process:
    """`supportbot ARGS` as a process; its log goes to `stderr` (an open file) if given, else to a
    pipe that stop() reads (fine for a short run: a full pipe would block a talkative process).
    descriptors: the process's limit on open files (RLIMIT_NOFILE, soft and hard), if it is to be lower."""

    def limit_descriptors() -> None:
        if descriptors is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, descriptors))

    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supportbot.cli", *args, cwd=cwd, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE if stderr is None else stderr,
        preexec_fn=limit_descriptors if descriptors is not None else None)


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> str:
    """Signal the process (if it still runs) and wait for it; returns its piped log, if any."""
    if proc.returncode is None:
        proc.send_signal(sig)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return err.decode() if err else ""


async def start_serve(vk: RunningVkEmulator, env: dict[str, str], cwd: Path, *, stderr: IO[bytes] | None = None,
                      descriptors: int | None = None) -> tuple[list[str], asyncio.subprocess.Process]:
    """`supportbot serve` on a free port, confirmed by the fake VK as VK would."""
    port = free_port()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--path", "/vk"]
    proc = await start(args, env, cwd, stderr, descriptors=descriptors)
    for _ in range(200):
        try:
            await vk.use_callback(f"http://127.0.0.1:{port}/vk", SECRET, CONFIRMATION, retry_delay=0.2,
                                  answer_timeout=2.0)
            return args, proc
        except Exception:
            await asyncio.sleep(0.05)
    raise AssertionError("serve did not come up")


async def step(user: FakeUser, action: str, text: str) -> str:
    await (user.say(text) if action == "say" else user.press(text))
    return (await user.wait_reply(timeout=10)).text
