"""What every emulator's server does the same way: serve an aiohttp app on loopback, end held
requests at close, answer a network fault, read a JSON control body, run from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware

__all__ = [
    "CLOSING_KEY",
    "LoopbackServer",
    "drop_connection",
    "json_object",
    "loopback_parser",
    "new_app",
    "run_from_command_line",
    "serve_until_cancelled",
    "start_server",
]

# Set when the server closes: a request held by a "hang" fault ends then, not at its timeout.
CLOSING_KEY = web.AppKey("closing", asyncio.Event)
DROPPED = 499  # the status a dropped request is logged with; the client never sees it


def new_app(middlewares: Sequence[Middleware], *, client_max_size: int) -> web.Application:
    app = web.Application(middlewares=list(middlewares), client_max_size=client_max_size)
    app[CLOSING_KEY] = asyncio.Event()
    return app


async def drop_connection(request: web.Request, *, hold: float = 0.0) -> web.StreamResponse:
    """Hold the request `hold` seconds (or until the server closes), then close the socket with
    no answer at all."""
    if hold > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(request.app[CLOSING_KEY].wait(), hold)
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=DROPPED)


async def json_object(request: web.Request, refuse: Callable[[str], Exception]) -> dict[str, Any]:
    """The request's body as a JSON object; otherwise raises what `refuse` makes of the reason."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise refuse("request body must be JSON") from None
    if not isinstance(body, dict):
        raise refuse("request body must be a JSON object")
    return body


@dataclass(slots=True)
class LoopbackServer:
    url: str  # e.g. "http://127.0.0.1:41234"
    _runner: web.AppRunner
    _closing: asyncio.Event

    async def close(self) -> None:
        self._closing.set()  # ends hanging requests now rather than at their timeout
        await self._runner.cleanup()


async def start_server(
    app: web.Application,
    host: str,
    port: int,
    *,
    access_log: logging.Logger | None = None,
    access_log_class: type[AbstractAccessLogger] | None = None,
) -> LoopbackServer:
    """Serve `app` on host:port (0 = any free port) and return once it accepts connections."""
    options: dict[str, Any] = {} if access_log_class is None else {"access_log_class": access_log_class}
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=access_log, **options)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return LoopbackServer(f"http://{shown}:{bound_port}", runner, app[CLOSING_KEY])


async def serve_until_cancelled(close: Callable[[], Awaitable[None]]) -> None:
    """Wait until the task is cancelled (Ctrl-C), then close the server."""
    try:
        await asyncio.Event().wait()
    finally:
        await close()


def loopback_parser(package: str, description: str, port: int) -> argparse.ArgumentParser:
    """The command line of `python -m <package>`: --host (loopback by default) and --port."""
    parser = argparse.ArgumentParser(prog=f"python -m {package}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    return parser


def run_from_command_line(serve: Coroutine[Any, Any, None]) -> None:
    """Log to stderr and serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve)
