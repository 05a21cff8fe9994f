"""The callback endpoint's connection guard, in front of a real aiohttp server on loopback: slow
headers and bodies are cut off, the connection limit holds, a request in work is never the one
closed, and what was closed is logged in one line a second, not one per connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from adapters.vk.connection_guard import ConnectionGuard, connection_limit

REQUEST = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
LAST_REQUEST = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"


@dataclass
class Served:
    guard: ConnectionGuard
    port: int
    release: asyncio.Event  # requests to /hold wait for it
    held: asyncio.Event  # set when a request to /hold is in work


@pytest.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    limit, timeout = getattr(request, "param", (3, 0.4))
    guard = ConnectionGuard(limit=limit, request_timeout=timeout)
    release, held = asyncio.Event(), asyncio.Event()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=f"got {await request.text()}")

    async def hold(request: web.Request) -> web.Response:
        held.set()
        await release.wait()
        return web.Response(text="released")

    app = web.Application(middlewares=[guard.middleware])
    app.router.add_post("/", answer)
    app.router.add_post("/hold", hold)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None
    await guard.listen(runner.server, "127.0.0.1", 0)
    try:
        yield Served(guard, guard.port, release, held)
    finally:
        release.set()
        await guard.close()
        await runner.cleanup()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def ask(port: int) -> bytes:
    """A request on a connection of its own, and the whole answer."""
    reader, writer = await connect(port)
    try:
        writer.write(LAST_REQUEST)
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closes the connection within that time (after whatever it still sends)."""
    try:
        await asyncio.wait_for(reader.read(), within)
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def answer_line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), 5)


async def test_a_request_is_answered_and_the_connection_kept_alive(served: Served) -> None:
    reader, writer = await connect(served.port)
    for _ in range(2):
        writer.write(REQUEST)
        assert (await answer_line(reader)).startswith(b"HTTP/1.1 200")
        await reader.readuntil(b"got hi")
    writer.close()


async def test_headers_trickled_in_slowly_are_cut_off(served: Served) -> None:
    reader, writer = await connect(served.port)
    writer.write(b"POST / HTTP/1.1\r\nHo")  # and no more
    assert await closed_by_server(reader, within=3)
    assert served.guard.timed_out == 1


async def test_a_body_trickled_in_slowly_is_cut_off(served: Served) -> None:
    reader, writer = await connect(served.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert await closed_by_server(reader, within=3)


async def test_an_idle_kept_alive_connection_is_closed_after_its_answer(served: Served) -> None:
    reader, writer = await connect(served.port)
    writer.write(REQUEST)
    assert (await answer_line(reader)).startswith(b"HTTP/1.1 200")
    assert await closed_by_server(reader, within=3)


@pytest.mark.parametrize("served", [(3, 30.0)], indirect=True)
async def test_past_the_limit_the_longest_idle_connection_makes_room(served: Served) -> None:
    slow = [await connect(served.port) for _ in range(3)]
    for _, writer in slow:
        writer.write(b"POST / HTTP/1.1\r\n")
    await asyncio.sleep(0.1)
    assert served.guard.open == 3
    assert b"got hi" in await ask(served.port)  # not kept waiting for 30 s
    assert await closed_by_server(slow[0][0], within=3)  # the first to open, idle since
    assert served.guard.made_room >= 1
    assert served.guard.open <= 3


@pytest.mark.parametrize("served", [(1, 30.0)], indirect=True)
async def test_a_request_in_work_is_never_closed_to_make_room(served: Served) -> None:
    reader, writer = await connect(served.port)
    writer.write(b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    await asyncio.wait_for(served.held.wait(), 5)
    newcomer = asyncio.create_task(ask(served.port))
    await asyncio.sleep(0.3)
    assert not newcomer.done()  # waits to be accepted: the limit holds
    served.release.set()
    assert (await answer_line(reader)).startswith(b"HTTP/1.1 200")  # the one in work was answered
    writer.close()
    assert b"got hi" in await newcomer


async def test_a_flood_of_slow_connections_is_logged_in_a_line_a_second(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.vk.connection_guard")
    flood = [await connect(served.port) for _ in range(30)]
    for _, writer in flood:
        writer.write(b"P")
    assert b"got hi" in await ask(served.port)
    await asyncio.sleep(1.6)
    lines = [r for r in caplog.records if r.name == "adapters.vk.connection_guard"]
    assert 1 <= len(lines) <= 3, [r.getMessage() for r in lines]
    assert served.guard.made_room + served.guard.timed_out >= 27
    for _, writer in flood:
        writer.close()


def test_the_limit_leaves_descriptors_for_the_rest_of_the_process() -> None:
    assert connection_limit(256) == 192
    assert connection_limit(1024) == 768
    assert connection_limit(65536) == 4096
    assert connection_limit(20) == 8
