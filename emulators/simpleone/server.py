"""A SimpleOne emulator on loopback: the documented REST API, plus fault switches for tests.

Serves (see shared/reference/simpleone-api.md):
    POST /v1/auth/login                              JSON username/password -> auth_key (documented)
    POST /rest/v1/auth/login                         form username/password/language -> auth_key (seen)
    POST|GET /rest/v1/table/{table}                  create / list (sysparm_* parameters)
    GET|PATCH|PUT|DELETE /rest/v1/table/{table}/{sys_id}
    POST /v1/attachments/upload/{table}/{sys_id}     multipart, field `files` or `files[N]`
    GET  /v1/attachments/download/{attachment_sys_id}
Control (no auth, never faulted):
    GET /_emulator/state, POST /_emulator/reset, GET|POST /_emulator/faults,
    GET /_emulator/journal/{table}/{sys_id}, POST /_emulator/users, POST /_emulator/set_field,
    POST /_emulator/agent  {"action": "comment"|"note"|"state", "ticket": number or sys_id,
                            "value": text or state code}: act as a support agent (the entry
                            lands in sys_activity_feed_item, as a real instance's does)

Every API endpoint takes `Authorization: Bearer <token>` or HTTP Basic. Booleans are stored and
returned as "1"/"0". This is a test double: bind it to loopback only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from emulators import runner
from emulators.simpleone.console import agent_console
from emulators.simpleone.faults import FaultRule, Faults
from emulators.simpleone.query import QueryError, parse_query
from emulators.simpleone.state import DEMO_PASSWORD, DEMO_USER, ApiError, Clock, EmulatorState, RequestLogEntry, utc_now

__all__ = ["RunningEmulator", "build_app", "main", "serve_forever", "start_emulator"]

log = logging.getLogger(__name__)

STATE_KEY = web.AppKey("state", EmulatorState)
AUTHOR_KEY = web.RequestKey("author", str)

CONTROL_PREFIX = "/_emulator/"
LOGIN_PATH = "/rest/v1/auth/login"
DOCUMENTED_LOGIN_PATH = "/v1/auth/login"
TABLE_PREFIX = "/rest/v1/table/"
UPLOAD_PREFIX = "/v1/attachments/upload/"
DEFAULT_LIMIT = 20
DEMO_DOMAINS = ("ranepa.ru",)  # served on its own, any address here is a known user
_FILES_FIELD = re.compile(r"files(?:\[\d+\])?")
_TRUE, _FALSE = frozenset({"1", "true"}), frozenset({"", "0", "false"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------- envelopes


def ok(data: Any, messages: Sequence[Any] = ()) -> web.Response:
    # [doc] the documented replies carry `messages` beside `status` and `data` (empty in examples).
    return web.json_response({"messages": list(messages), "status": "OK", "data": data})


def error(status: int, message: str) -> web.Response:
    # [guess] the error body is not documented; `messages` is kept as in every other reply.
    return web.json_response({"messages": [], "status": "ERROR", "error": {"message": message}}, status=status)


HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign in</title></head>"
    "<body><h1>Corporate proxy</h1><form method='post'><input name='login'></form></body></html>"
)


# --------------------------------------------------------------------------- the gate


def _is_write(method: str, path: str) -> bool:
    if path.startswith(TABLE_PREFIX):
        return method in {"POST", "PATCH", "PUT", "DELETE"}
    return method == "POST" and path.startswith(UPLOAD_PREFIX)


async def _fault_response(request: web.Request, rule: FaultRule) -> web.StreamResponse:
    if rule.kind == "error":
        return error(rule.status, "Internal error (emulated fault)")
    if rule.kind == "html":
        return web.Response(status=rule.status, text=HTML_PAGE, content_type="text/html")
    # "drop", and "hang" once its time is over: close the socket with no answer at all.
    return await runner.drop_connection(request, hold=rule.seconds if rule.kind == "hang" else 0.0)


def _authenticate(request: web.Request, state: EmulatorState) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        user = state.user_for_token(credentials)
        if user is None:
            raise ApiError(401, "Token is invalid or expired")
        return user
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "Malformed Basic credentials") from None
        username, _, password = decoded.partition(":")
        if state.check_password(username, password):
            return username
        raise ApiError(401, "Invalid username or password")
    raise ApiError(401, "Authentication required")


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error(exc.status, exc.message)
    except QueryError as exc:
        return error(400, f"Invalid sysparm_query: {exc}")
    except web.HTTPException as exc:  # routing misses (404/405) and body limits (413)
        return error(exc.status, exc.reason)
    except Exception:  # a bug in the emulator must still look like a server error to the client
        log.exception("emulator handler failed on %s %s", request.method, request.path)
        return error(500, "Internal emulator error")


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Faults, auth and the request log, in the order a real front end would apply them."""
    if request.path.startswith(CONTROL_PREFIX):
        return await _guarded(request, handler)
    state = request.app[STATE_KEY]
    entry = RequestLogEntry(request.method, request.path)
    state.request_log.append(entry)
    response = await _gated(request, handler, state)
    entry.status = response.status
    return response


async def _gated(request: web.Request, handler: Handler, state: EmulatorState) -> web.StreamResponse:
    faults = state.faults
    if faults.outage:
        return error(503, "Service unavailable (emulated outage)")
    if faults.latency > 0:
        await asyncio.sleep(faults.latency)
    rule = faults.take(request.method, request.path, after_write=False)
    if rule is not None:
        return await _fault_response(request, rule)
    if request.path not in (LOGIN_PATH, DOCUMENTED_LOGIN_PATH):
        try:
            request[AUTHOR_KEY] = _authenticate(request, state)
        except ApiError as exc:
            return error(exc.status, exc.message)
    response = await _guarded(request, handler)
    if 200 <= response.status < 300 and _is_write(request.method, request.path):
        rule = faults.take(request.method, request.path, after_write=True)
        if rule is not None:
            return await _fault_response(request, rule)
    return response


# --------------------------------------------------------------------------- API handlers


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ApiError(400, f"{name} must be 1/0 or true/false, got {value!r}")


def _positive_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def _render_many(request: web.Request, table: str, records: Sequence[dict[str, str]]) -> web.Response:
    state = _state(request)
    raw_fields = request.query.get("sysparm_fields", "")
    fields = [f.strip() for f in raw_fields.split(",") if f.strip()] or None
    display = _flag(request, "sysparm_display_value")
    links = not _flag(request, "sysparm_exclude_reference_link")
    base = str(request.url.origin())
    return ok(
        [
            state.render(table, record, base_url=base, fields=fields, display=display, links=links)
            for record in records
        ],
        state.messages,
    )


async def _json_object(request: web.Request) -> dict[str, Any]:
    return await runner.json_object(request, lambda reason: ApiError(400, reason[0].upper() + reason[1:]))


async def login(request: web.Request) -> web.StreamResponse:
    """The login public integrations use: a form-encoded body under /rest."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(400, "Login expects a form-encoded body")
    form = await request.post()
    return _issue_token(request, form.get("username"), form.get("password"))


async def documented_login(request: web.Request) -> web.StreamResponse:
    """The documented login (SimpleRestRequest, 1.27): a JSON body, no /rest prefix."""
    if request.content_type != "application/json":
        raise ApiError(400, "Login expects a JSON body")
    body = await _json_object(request)
    return _issue_token(request, body.get("username"), body.get("password"))


def _issue_token(request: web.Request, username: object, password: object) -> web.StreamResponse:
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "username and password are required")
    state = _state(request)
    if not state.check_password(username, password):
        raise ApiError(401, "Invalid username or password")
    return ok({"auth_key": state.issue_token(username)}, state.messages)


async def list_records(request: web.Request) -> web.StreamResponse:
    state, table = _state(request), request.match_info["table"]
    query = parse_query(request.query.get("sysparm_query", ""))
    limit = _positive_int(request, "sysparm_limit", DEFAULT_LIMIT)
    page = _positive_int(request, "sysparm_page", 1)
    state.table(table)
    if state.auto_users_domains:
        state.auto_create_user(table, query)
    selected = state.select(table, query)
    return _render_many(request, table, selected[(page - 1) * limit : page * limit])


async def create_record(request: web.Request) -> web.StreamResponse:
    state, table = _state(request), request.match_info["table"]
    state.table(table)
    body = await _json_object(request)
    sys_id = state.create(table, body, author=request[AUTHOR_KEY])
    return _render_many(request, table, [state.get(table, sys_id)])


async def read_record(request: web.Request) -> web.StreamResponse:
    table, sys_id = request.match_info["table"], request.match_info["sys_id"]
    return _render_many(request, table, [_state(request).get(table, sys_id)])


async def update_record(request: web.Request) -> web.StreamResponse:
    state, table, sys_id = _state(request), request.match_info["table"], request.match_info["sys_id"]
    state.get(table, sys_id)
    body = await _json_object(request)
    return _render_many(request, table, [state.update(table, sys_id, body, author=request[AUTHOR_KEY])])


async def delete_record(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    state.delete(request.match_info["table"], request.match_info["sys_id"])
    return ok([], state.messages)


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"File exceeds max_file_size_upload ({limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def upload(request: web.Request) -> web.StreamResponse:
    state, table, sys_id = _state(request), request.match_info["table"], request.match_info["sys_id"]
    state.get(table, sys_id)
    if request.content_type != "multipart/form-data":
        raise ApiError(400, "Upload expects multipart/form-data")
    received: list[tuple[str, str, bytes]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "Nested multipart bodies are not supported")
        if part.name is None or not _FILES_FIELD.fullmatch(part.name):
            await part.release()
            continue
        if not part.filename:
            raise ApiError(400, f"Part {part.name!r} has no filename")
        mime = part.headers.get("Content-Type", "application/octet-stream")
        received.append((part.filename, mime, await _read_part(part, state.max_upload_bytes)))
    if not received:
        raise ApiError(400, "No files in field 'files' or 'files[N]'")
    created = [state.add_attachment(table, sys_id, name, mime, data) for name, mime, data in received]
    # [doc] the reply's body is not documented. [guess] "records": the envelope with the new
    # sys_attachment records (as a create answers); "empty": 200 and no body (state.upload_reply).
    if state.upload_reply == "empty":
        return web.Response(status=200)
    return _render_many(request, "sys_attachment", [state.get("sys_attachment", a) for a in created])


async def download(request: web.Request) -> web.StreamResponse:
    """[doc] `GET /v1/attachments/download/{attachment_sys_id}`: the file's bytes. [guess] the
    stored MIME type as Content-Type, the name in Content-Disposition; a JSON 404 if unknown."""
    state, att_id = _state(request), request.match_info["sys_id"]
    meta = state.get("sys_attachment", att_id)
    name = meta.get("file_name", "file")
    return web.Response(
        body=state.blobs.get(att_id, b""),
        content_type=meta.get("mime_content_type") or "application/octet-stream",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
    )


# --------------------------------------------------------------------------- control handlers


async def control_state(request: web.Request) -> web.StreamResponse:
    return web.json_response(_state(request).snapshot())


async def control_reset(request: web.Request) -> web.StreamResponse:
    _state(request).reset()
    return web.json_response({"status": "OK"})


async def control_faults(request: web.Request) -> web.StreamResponse:
    faults = _state(request).faults
    if request.method == "POST":
        try:
            faults.configure(await _json_object(request))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    return web.json_response(faults.snapshot())


async def control_journal(request: web.Request) -> web.StreamResponse:
    state, table, sys_id = _state(request), request.match_info["table"], request.match_info["sys_id"]
    state.get(table, sys_id)
    entries = state.journal(table, sys_id)
    return web.json_response(
        [{"field": e.field, "text": e.text, "author": e.author, "created_at": e.created_at} for e in entries]
    )


async def control_add_user(request: web.Request) -> web.StreamResponse:
    body = await _json_object(request)
    values = [body.get(k) for k in ("email", "first_name", "last_name")]
    if not all(isinstance(v, str) for v in values):
        raise ApiError(400, "email, first_name and last_name are required strings")
    table, active = body.get("table", "user"), body.get("active", True)
    if table not in ("user", "employee") or not isinstance(active, bool):
        raise ApiError(400, "table must be 'user' (a student) or 'employee'; active a boolean")
    sys_id = _state(request).add_user(*(str(v) for v in values), active=active, table=str(table))
    return web.json_response({"sys_id": sys_id})


async def control_set_field(request: web.Request) -> web.StreamResponse:
    body = await _json_object(request)
    table, sys_id, name = body.get("table"), body.get("sys_id"), body.get("field")
    if not all(isinstance(v, str) for v in (table, sys_id, name)):
        raise ApiError(400, "table, sys_id and field are required strings")
    _state(request).set_field(str(table), str(sys_id), str(name), body.get("value"))
    return web.json_response({"status": "OK"})


async def control_agent(request: web.Request) -> web.StreamResponse:
    body = await _json_object(request)
    action, ticket, value = body.get("action"), body.get("ticket"), body.get("value")
    if not all(isinstance(v, str) for v in (action, ticket, value)):
        raise ApiError(400, "action, ticket and value are required strings")
    table, sys_id = _state(request).act_as_agent(str(action), str(ticket), str(value))
    return web.json_response({"status": "OK", "table": table, "sys_id": sys_id})


def build_app(state: EmulatorState) -> web.Application:
    # Uploads stream through the multipart reader; this caps JSON bodies only.
    app = runner.new_app([gate], client_max_size=2 * 1024 * 1024)
    app[STATE_KEY] = state
    r = app.router
    r.add_post(LOGIN_PATH, login)
    r.add_post(DOCUMENTED_LOGIN_PATH, documented_login)
    r.add_get("/rest/v1/table/{table}", list_records)
    r.add_post("/rest/v1/table/{table}", create_record)
    r.add_get("/rest/v1/table/{table}/{sys_id}", read_record)
    r.add_patch("/rest/v1/table/{table}/{sys_id}", update_record)
    r.add_put("/rest/v1/table/{table}/{sys_id}", update_record)
    r.add_delete("/rest/v1/table/{table}/{sys_id}", delete_record)
    r.add_post("/v1/attachments/upload/{table}/{sys_id}", upload)
    r.add_get("/v1/attachments/download/{sys_id}", download)
    r.add_get("/_emulator/state", control_state)
    r.add_post("/_emulator/reset", control_reset)
    r.add_route("*", "/_emulator/faults", control_faults)
    r.add_get("/_emulator/journal/{table}/{sys_id}", control_journal)
    r.add_post("/_emulator/users", control_add_user)
    r.add_post("/_emulator/set_field", control_set_field)
    r.add_post("/_emulator/agent", control_agent)
    return app


# --------------------------------------------------------------------------- running it


@dataclass(slots=True)
class RunningEmulator:
    url: str  # e.g. "http://127.0.0.1:41234", the client's base_url
    state: EmulatorState
    _server: runner.LoopbackServer

    @property
    def faults(self) -> Faults:
        return self.state.faults

    async def close(self) -> None:
        await self._server.close()


async def start_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    username: str = DEMO_USER,
    password: str = DEMO_PASSWORD,
    token: str | None = None,
    token_ttl: float | None = None,
    auto_users_domains: Sequence[str] = (),
    auto_users_table: str = "employee",
    clock: Clock = utc_now,
    max_upload_bytes: int = 10 * 1024 * 1024,
    access_log: bool = False,
) -> RunningEmulator:
    """Start serving on host:port (0 = any free port) and return once it accepts connections."""
    state = EmulatorState(username=username, password=password, static_token=token, token_ttl=token_ttl,
                          auto_users_domains=auto_users_domains, auto_users_table=auto_users_table, clock=clock,
                          max_upload_bytes=max_upload_bytes)
    server = await runner.start_server(build_app(state), host, port, access_log=log if access_log else None)
    return RunningEmulator(server.url, state, server)


async def serve_forever(
    host: str,
    port: int,
    *,
    auto_users_domains: Sequence[str] = DEMO_DOMAINS,
    username: str = DEMO_USER,
    password: str = DEMO_PASSWORD,
    token: str | None = None,
    console: bool = False,
) -> None:
    """Run the emulator until cancelled (the `supportbot simpleone-emulator` command); with
    `console`, stdin takes agent commands (emulators/simpleone/console.py) meanwhile."""
    emulator = await start_emulator(
        host,
        port,
        username=username,
        password=password,
        token=token,
        auto_users_domains=auto_users_domains,
        access_log=True,
    )
    # These are the emulator's own demo credentials, printed so a human can point the bot at it.
    log.warning("SimpleOne emulator listening on %s", emulator.url)
    log.warning(
        "  credentials: username=%s password=%s%s",
        username,
        password,
        f" static token={token}" if token else "",
    )
    if auto_users_domains:
        log.warning("  any address at %s is a known user on first look-up", ", ".join(auto_users_domains))
    task = asyncio.create_task(agent_console(emulator.state)) if console else None
    try:
        await runner.serve_until_cancelled(emulator.close)
    finally:
        if task is not None:
            task.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m emulators.simpleone --port 8090`."""
    parser = runner.loopback_parser("emulators.simpleone", "SimpleOne REST API emulator (for tests and demos)", 8090)
    parser.add_argument("--username", default=DEMO_USER)
    parser.add_argument("--password", default=DEMO_PASSWORD)
    parser.add_argument("--token", default=None)
    parser.add_argument("--auto-users-domain", action="append", dest="domains", default=None)
    args = parser.parse_args(argv)
    domains = tuple(args.domains) if args.domains is not None else DEMO_DOMAINS
    runner.run_from_command_line(
        serve_forever(
            args.host,
            args.port,
            auto_users_domains=domains,
            username=args.username,
            password=args.password,
            token=args.token,
        )
    )


if __name__ == "__main__":
    main()
