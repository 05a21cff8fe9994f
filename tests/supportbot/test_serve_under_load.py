"""`supportbot serve` against connections that hold descriptors: slow headers, slow bodies,
more connections than the process may open. A real user is still answered, and the log does
not drown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from emulators.simpleone.server import RunningEmulator
from emulators.vk.server import RunningVkEmulator
from tests.vk_processes import Mailbox, bot_env, start_serve, step, stop

DESCRIPTORS = 256


async def _slow_client(port: int, stop_at: float) -> None:
    """A connection that sends a request's headers a byte at a time, as slowly as it may."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        for byte in b"POST /vk HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n":
            if time.monotonic() > stop_at:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.5)
    except OSError:
        pass
    finally:
        writer.close()


async def test_more_slow_connections_than_descriptors_leave_a_user_answered(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    env = bot_env(tmp_path, vk, simpleone, mailbox[1])
    log = (tmp_path / "serve.log").open("wb")
    args, proc = await start_serve(vk, env, tmp_path, stderr=log, descriptors=DESCRIPTORS)
    port = int(args[args.index("--port") + 1])
    try:
        stop_at = time.monotonic() + 12
        slow = [asyncio.create_task(_slow_client(port, stop_at)) for _ in range(DESCRIPTORS + 150)]
        await asyncio.sleep(2)
        user = vk.user(41)
        assert "Главное меню" in await step(user, "say", "Начать")
        await asyncio.gather(*slow)
    finally:
        await stop(proc)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    # Before the guard: 22 777 "socket.accept() out of system resource" tracebacks in 15 s.
    assert "Too many open files" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    guard_lines = [line for line in text.splitlines() if "callback connections:" in line]
    assert 1 <= len(guard_lines) <= 16, guard_lines  # a line a second at most
