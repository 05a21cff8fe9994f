"""The studio over HTTP: the page, its static files and a small JSON API (aiohttp).

Bound to loopback by default. Elsewhere a token is required: the page asks for it and sends it
in X-Studio-Token (the event stream, which cannot set headers, in ?token=). On loopback without
a token, requests must name a loopback host (no DNS rebinding) and writes must be JSON from the
page's own origin (no other site's form can post here).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from adapters.web.studio import Studio
from adapters.web.studio_map import map_of

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
STUDIO_KEY = web.AppKey("studio", Studio)
TOKEN_KEY = web.AppKey("token", str)
MAX_BODY = 60 * 1024 * 1024  # files of up to 10 MB each, five at a time, as base64
LOOPBACK_NAMES = ("localhost",)
CLOSE = "close"  # ends the event streams
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[TOKEN_KEY]
    if not request.path.startswith("/api/"):
        return await handler(request)
    if token:
        given = request.headers.get("X-Studio-Token") or request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _json({"error": "token", "message": "Нужен токен доступа к studio."}, 401)
    elif not is_loopback(urlsplit(f"http://{request.host}").hostname or ""):
        return _json({"error": "host", "message": "studio отвечает только на адрес 127.0.0.1"}, 403)
    if request.method == "POST":
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            return _json({"error": "origin", "message": "запрос не со страницы studio"}, 403)
        if request.content_type != "application/json":
            return _json({"error": "type", "message": "ожидался JSON"}, 415)
    return await handler(request)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text="not JSON") from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def info(request: web.Request) -> web.Response:
    studio = request.app[STUDIO_KEY]
    return _json({"safety": [{"text": text, "real": real} for text, real in studio.safety],
                  "flows_dir": str(studio.flows_dir), "agent": studio.agent is not None})


async def flow_map(request: web.Request) -> web.Response:
    studio = request.app[STUDIO_KEY]
    flow = request.query.get("flow") or None
    return _json({**map_of(studio.flows.current, flow), "version": studio.flows.current.version,
                  "flows": list(studio.flows.current.flows)})


async def findings(request: web.Request) -> web.Response:
    return _json(request.app[STUDIO_KEY].findings())


async def state(request: web.Request) -> web.Response:
    found = request.app[STUDIO_KEY].state_info(request.query.get("name", ""))
    return _json(found) if found else _json({"error": "no such state"}, 404)


async def session(request: web.Request) -> web.Response:
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        since = 0
    return _json(await request.app[STUDIO_KEY].session(since))


async def chat(request: web.Request) -> web.Response:
    data = await _body(request)
    files = data.get("files") or []
    if not isinstance(files, list) or len(files) > 10:
        raise web.HTTPBadRequest(text="files: a list of at most 10")
    try:
        data["files"] = [{"name": str(f["name"])[:200], "mime": str(f.get("mime") or ""),
                          "data": base64.b64decode(str(f["data"]), validate=True)} for f in files]
    except (KeyError, TypeError, binascii.Error) as exc:
        raise web.HTTPBadRequest(text="files: name and base64 data each") from exc
    studio = request.app[STUDIO_KEY]
    await studio.chat(data)
    return _json({"ok": True})


async def restart(request: web.Request) -> web.Response:
    studio = request.app[STUDIO_KEY]
    await studio.restart()
    return _json({"ok": True})


async def agent(request: web.Request) -> web.Response:
    data = await _body(request)
    action, value = str(data.get("action", "")), str(data.get("value", "")).strip()
    if action not in ("comment", "note", "state", "command") or not value:
        raise web.HTTPBadRequest(text="action: comment, note, state or command; value: not empty")
    answer = request.app[STUDIO_KEY].act_as_agent(action, value)
    return _json({"answer": answer})


async def tests_run(request: web.Request) -> web.Response:
    return _json(await request.app[STUDIO_KEY].run_tests())


async def tests_save(request: web.Request) -> web.Response:
    data = await _body(request)
    studio = request.app[STUDIO_KEY]
    name = str(data.get("name") or "").strip()[:200]
    if not data.get("write"):
        return _json({"yaml": studio.test_yaml(name), "saved": False})
    return _json(studio.save_test(name))


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `flows` after a reload (or a refused one), `chat` for new messages."""
    studio = request.app[STUDIO_KEY]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
    studio.listeners.add(queue)
    try:
        await response.write(b"event: hello\ndata: {}\n\n")
        while True:
            try:
                kind = await asyncio.wait_for(queue.get(), 15)
                if kind == CLOSE:
                    break
                await response.write(f"event: {kind}\ndata: {{}}\n\n".encode())
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
    except ConnectionResetError:
        pass
    finally:
        studio.listeners.discard(queue)
    return response


async def _close_streams(app: web.Application) -> None:
    """At shutdown the event streams end at once (the server would wait a minute for them)."""
    app[STUDIO_KEY].publish(CLOSE)


def studio_app(studio: Studio, token: str = "") -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[STUDIO_KEY] = studio
    app[TOKEN_KEY] = token
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/map", flow_map)
    app.router.add_get("/api/findings", findings)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/session", session)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/restart", restart)
    app.router.add_post("/api/agent", agent)
    app.router.add_post("/api/tests/run", tests_run)
    app.router.add_post("/api/tests/save", tests_save)
    app.router.add_get("/api/events", events)
    return app
