"""A fake VK API server on loopback: the method API, Bots Long Poll, Callback API delivery and
file hosting of one community, with scripted users and fault switches for tests and benchmarks.

Serves (see shared/reference/vk-api.md):
    GET|POST /method/{name}       access_token and v in the query or the form body; answers
                                  {"response": ...} or {"error": {...}} with HTTP 200, like VK
    GET|POST /lp/{group_id}       act=a_check&key=&ts=&wait= (query or form)
    GET /files/{id}               what users attached; 404 once the URL has expired
Control (no auth, never faulted):
    GET /_vk/state, GET|POST /_vk/faults, POST /_vk/say, POST /_vk/press, GET /_vk/sent

Methods: groups.getById, groups.getLongPollServer, messages.send, messages.getById,
messages.sendMessageEventAnswer, and execute of a script that returns an array of their calls
(emulators/vk/execute.py). This is a test double: bind it to loopback only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from emulators import runner
from emulators.vk.callback import (
    DEFAULT_ATTEMPTS,
    DEFAULT_RETRY_DELAY,
    DEFAULT_TIMEOUT,
    CallbackDelivery,
    DeliveryAttempt,
)
from emulators.vk.execute import ScriptError, parse_script
from emulators.vk.faults import LONG_POLL, VkFaultRule, VkFaults
from emulators.vk.longpoll import DEFAULT_HISTORY
from emulators.vk.state import (
    CHAT_PEER_BASE,
    DEDUPE_WINDOW,
    FILE_TTL,
    MAX_MESSAGE_LENGTH,
    Clock,
    SentMessage,
    VkApiError,
    VkState,
    invalid,
)
from emulators.vk.users import FakeChat, FakeUser

__all__ = ["RunningVkEmulator", "build_app", "main", "serve_forever", "start_vk_emulator"]

log = logging.getLogger(__name__)

STATE_KEY = web.AppKey("state", VkState)
MAX_WAIT_KEY = web.AppKey("max_wait", float)

CONTROL_PREFIX = "/_vk/"
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
DEFAULT_WAIT = 25  # what VK assumes when a_check comes without `wait`
MAX_WAIT = 90.0  # VK's own cap

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Method = Callable[[VkState, Mapping[str, str], str, web.Request], Any]

EXECUTED = re.compile(r"API\.([A-Za-z]+(?:\.[A-Za-z]+)+)\(")  # the methods a script calls
_dumps = partial(json.dumps, ensure_ascii=False)
ROUTES = web.RouteTableDef()  # each handler below says where it is served


# --------------------------------------------------------------------------- the gate


async def _network_fault(request: web.Request, rule: VkFaultRule) -> web.StreamResponse:
    if rule.kind == "http":
        return web.Response(status=rule.status, text=f"{rule.status} emulated front-end failure")
    # "drop", and "hang" once its time is over: close the socket with no answer at all.
    return await runner.drop_connection(request, hold=rule.seconds if rule.kind == "hang" else 0.0)


def _target(path: str) -> str | None:
    if path.startswith("/method/"):
        return path.removeprefix("/method/")
    if path.startswith("/lp/"):
        return LONG_POLL
    return None


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outage, latency and network faults, in front of everything but the control API."""
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    faults = request.app[STATE_KEY].faults
    if faults.outage:
        return web.Response(status=503, text="503 Service Temporarily Unavailable (emulated outage)")
    target = _target(request.path)
    if target is not None and faults.latency > 0:
        await asyncio.sleep(faults.latency)
    rule = faults.take(target, network=True) if target is not None else None
    if rule is None and target == "execute":
        # A fault armed for a method acts on a batch that calls it: the batch is its request.
        code = (await _params(request)).get("code", "")
        for method in dict.fromkeys(EXECUTED.findall(code)):
            rule = faults.take(method, network=True)
            if rule is not None:
                break
    if rule is not None:
        return await _network_fault(request, rule)
    return await handler(request)


async def _params(request: web.Request) -> dict[str, str]:
    """Query and form parameters together (the body wins), as VK reads them."""
    params = dict(request.query)
    if request.method == "POST" and request.content_type in FORM_TYPES:
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


# --------------------------------------------------------------------------- API methods


def groups_get_by_id(state: VkState, params: Mapping[str, str], token: str, request: web.Request) -> Any:
    asked = params.get("group_id") or params.get("group_ids") or ""
    for part in filter(None, (p.strip() for p in asked.split(","))):
        if part not in (str(state.group_id), state.screen_name):
            raise invalid(f"group_ids {part} is not a community this token has access to")
    group = {
        "id": state.group_id,
        "name": state.group_name,
        "screen_name": state.screen_name,
        "is_closed": 0,
        "type": "group",
    }
    return {"groups": [group], "profiles": []}


def groups_get_long_poll_server(state: VkState, params: Mapping[str, str], token: str, request: web.Request) -> Any:
    group_id = params.get("group_id", "")
    if not group_id:
        raise invalid("group_id is a required parameter")
    if group_id != str(state.group_id):
        raise invalid(f"group_id {group_id} is not the community of this token")
    server = f"{request.url.origin()}/lp/{state.group_id}"
    return {"key": state.updates.key, "server": server, "ts": str(state.updates.ts)}


def messages_send(state: VkState, params: Mapping[str, str], token: str, request: web.Request) -> Any:
    return state.send(params, token)


def messages_get_by_id(state: VkState, params: Mapping[str, str], token: str, request: web.Request) -> Any:
    return state.get_messages(params)


def messages_send_event_answer(state: VkState, params: Mapping[str, str], token: str, request: web.Request) -> Any:
    return state.answer_event(params, token)


METHODS: Mapping[str, Method] = {
    "groups.getById": groups_get_by_id,
    "groups.getLongPollServer": groups_get_long_poll_server,
    "messages.send": messages_send,
    "messages.getById": messages_get_by_id,
    "messages.sendMessageEventAnswer": messages_send_event_answer,
}


def _vk_error(exc: VkApiError, method: str, params: Mapping[str, str]) -> web.Response:
    # VK echoes the request, without the token, in every error.
    echoed = [{"key": "method", "value": method}, {"key": "oauth", "value": "1"}]
    echoed += [{"key": k, "value": v} for k, v in params.items()]
    return _json({"error": {"error_code": exc.code, "error_msg": exc.message, "request_params": echoed}})


@ROUTES.get("/method/{name}", allow_head=False)
@ROUTES.post("/method/{name}")
async def method_call(request: web.Request) -> web.StreamResponse:
    state, name = request.app[STATE_KEY], request.match_info["name"]
    params = await _params(request)
    token = params.pop("access_token", "")  # kept apart: never echoed, recorded or logged with the rest
    try:
        if name == "execute":
            return _execute(state, params, token, request)
        result = _call(state, name, params, token, request)
    except VkApiError as exc:
        state.calls.append((name, exc.code))
        return _vk_error(exc, name, params)
    state.calls.append((name, 0))
    return _json({"response": result})


def _execute(state: VkState, params: Mapping[str, str], token: str, request: web.Request) -> web.Response:
    """execute (emulators/vk/execute.py): one request and one call of the rate limit; each call
    inside is checked and faulted as a call of its own, its failure `false` plus an entry of
    execute_errors. Recorded in `calls` as the execute, then each call inside."""
    _check_call(state, "execute", params, token)
    # An error armed for execute itself (not for any method) fails the whole request.
    rule = state.faults.take_first(lambda r: r.kind == "error" and r.method == "execute")
    if rule is not None:
        raise VkApiError(rule.code, rule.message)
    try:
        script = parse_script(params.get("code", ""))
    except ScriptError as exc:
        raise VkApiError(exc.code, exc.message) from None
    state.calls.append(("execute", 0))
    results: list[Any] = []
    errors: list[dict[str, Any]] = []
    for method, call_params in script:
        try:
            if method == "execute" or method not in METHODS:
                raise VkApiError(3, "Unknown method passed")
            rule = state.faults.take(method, network=False)
            if rule is not None:
                raise VkApiError(rule.code, rule.message)
            results.append(METHODS[method](state, {**call_params, "v": params.get("v", "")}, token, request))
        except VkApiError as exc:
            state.calls.append((method, exc.code))
            results.append(False)
            errors.append({"method": method, "error_code": exc.code, "error_msg": exc.message})
            continue
        state.calls.append((method, 0))
    answer: dict[str, Any] = {"response": results}
    if errors:
        answer["execute_errors"] = errors
    return _json(answer)


def _call(state: VkState, name: str, params: Mapping[str, str], token: str, request: web.Request) -> Any:
    _check_call(state, name, params, token)
    method = METHODS.get(name)
    if method is None:
        raise VkApiError(3, "Unknown method passed")
    rule = state.faults.take(name, network=False)
    if rule is not None:
        raise VkApiError(rule.code, rule.message)
    return method(state, params, token, request)


def _check_call(state: VkState, name: str, params: Mapping[str, str], token: str) -> None:
    """What VK checks of any request before the method: the token, v, the method, the rate."""
    if not token:
        raise VkApiError(5, "User authorization failed: no access_token passed.")
    if token not in state.tokens:
        raise VkApiError(5, "User authorization failed: invalid access_token")
    if not params.get("v"):
        raise VkApiError(8, "Invalid request: v is required")
    if name != "execute" and name not in METHODS:
        raise VkApiError(3, "Unknown method passed")
    if not state.limiter.allow(token, state.clock()):
        raise VkApiError(6, "Too many requests per second")


# --------------------------------------------------------------------------- long poll and files


@ROUTES.get("/lp/{group_id}", allow_head=False)
@ROUTES.post("/lp/{group_id}")
async def long_poll(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if request.match_info["group_id"] != str(state.group_id):
        raise web.HTTPNotFound(text="no long-poll server for this group")
    params = await _params(request)
    if params.get("act") != "a_check":
        raise web.HTTPBadRequest(text="act=a_check is required")
    try:
        wait = float(params.get("wait") or DEFAULT_WAIT)
    except ValueError:
        wait = DEFAULT_WAIT
    wait = max(0.0, min(wait, request.app[MAX_WAIT_KEY]))
    answer = await state.updates.poll(params.get("key", ""), params.get("ts", ""), wait)
    return _json(answer)


@ROUTES.get("/files/{file_id}")
async def hosted_file(request: web.Request) -> web.StreamResponse:
    found = request.app[STATE_KEY].hosted(request.match_info["file_id"])
    if found is None:
        raise web.HTTPNotFound(text="file not found or its link has expired")
    return web.Response(body=found.data, content_type=found.content_type)


# --------------------------------------------------------------------------- control


async def _json_object(request: web.Request) -> dict[str, Any]:
    return await runner.json_object(request, lambda reason: web.HTTPBadRequest(text=reason))


@ROUTES.get("/_vk/state")
async def control_state(request: web.Request) -> web.StreamResponse:
    return _json(request.app[STATE_KEY].snapshot())


@ROUTES.route("*", "/_vk/faults")
async def control_faults(request: web.Request) -> web.StreamResponse:
    """Fault switches, plus the long-poll switches and the rate limit:
    {"rate_limit": 20 | null, "expire_key": true, "lose_history": true, ...VkFaults.configure}."""
    state = request.app[STATE_KEY]
    if request.method == "POST":
        spec = await _json_object(request)
        extra = {k: spec.pop(k) for k in ("rate_limit", "expire_key", "lose_history") if k in spec}
        limit = extra.get("rate_limit", state.rate_limit)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise web.HTTPBadRequest(text="rate_limit must be a positive integer or null")
        try:
            state.faults.configure(spec)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        state.rate_limit = limit
        if extra.get("expire_key"):
            state.updates.expire_key()
        if extra.get("lose_history"):
            state.updates.lose_history()
    return _json({**state.faults.snapshot(), "rate_limit": state.rate_limit})


def _user_from(request: web.Request, body: Mapping[str, Any]) -> FakeUser:
    peer_id, from_id = body.get("peer_id"), body.get("from_id", body.get("peer_id"))
    if not isinstance(peer_id, int) or not isinstance(from_id, int) or peer_id < 1 or from_id < 1:
        raise web.HTTPBadRequest(text="peer_id (and from_id in a chat) must be positive integers")
    return FakeUser(request.app[STATE_KEY], peer_id, from_id)


@ROUTES.post("/_vk/say")
async def control_say(request: web.Request) -> web.StreamResponse:
    """{"peer_id": 5, "text": "...", "payload": "{...}"?, "from_id": 5?} -> the event posted."""
    body = await _json_object(request)
    text, payload = body.get("text", ""), body.get("payload")
    if not isinstance(text, str) or (payload is not None and not isinstance(payload, str)):
        raise web.HTTPBadRequest(text="text must be a string, payload a string of JSON")
    posted = await _user_from(request, body).say(text, payload=payload)
    return _json({"event_id": posted.event_id, "message_id": posted.message_id})


@ROUTES.post("/_vk/press")
async def control_press(request: web.Request) -> web.StreamResponse:
    """{"peer_id": 5, "label": "..."} -> the event posted, or 409 naming the labels there are."""
    body = await _json_object(request)
    label = body.get("label")
    if not isinstance(label, str):
        raise web.HTTPBadRequest(text="label must be a string")
    try:
        posted = await _user_from(request, body).press(label)
    except AssertionError as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    return _json({"event_id": posted.event_id, "message_id": posted.message_id})


@ROUTES.get("/_vk/sent")
async def control_sent(request: web.Request) -> web.StreamResponse:
    """?peer_id=5&after=0 -> the messages sent to the peer, from index `after` on."""
    try:
        peer_id, after = int(request.query["peer_id"]), int(request.query.get("after", "0"))
    except (KeyError, ValueError):
        raise web.HTTPBadRequest(text="peer_id (and after) must be integers") from None
    sent = request.app[STATE_KEY].sent_to(peer_id)[after:]
    return _json(
        [{"text": m.text, "keyboard": m.keyboard, "message_id": m.message_id, "random_id": m.random_id} for m in sent]
    )


def build_app(state: VkState, *, max_wait: float = MAX_WAIT) -> web.Application:
    app = runner.new_app([gate], client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = state
    app[MAX_WAIT_KEY] = max_wait
    app.add_routes(ROUTES)
    return app


# --------------------------------------------------------------------------- running it


class _AccessLogger(AbstractAccessLogger):
    """Method, path, status and time; never the query string, where clients put access_token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %d %.1f ms", request.method, request.path, response.status, time * 1000)


@dataclass(slots=True)
class RunningVkEmulator:
    url: str  # e.g. "http://127.0.0.1:41234"
    state: VkState
    _server: runner.LoopbackServer
    _session: aiohttp.ClientSession | None = None
    _callback: CallbackDelivery | None = None
    _users: dict[int, FakeUser] = field(default_factory=dict)
    _chats: dict[int, FakeChat] = field(default_factory=dict)
    deliveries: list[DeliveryAttempt] = field(default_factory=list)  # every callback request made

    @property
    def api_url(self) -> str:
        """What VK_API_URL / vkbottle's API.API_URL is set to."""
        return self.url + "/method/"

    @property
    def faults(self) -> VkFaults:
        return self.state.faults

    @property
    def sent(self) -> list[SentMessage]:
        return self.state.sent

    # -- scripted users ----------------------------------------------------------------------

    def user(self, peer_id: int) -> FakeUser:
        """A user in a private dialogue (the same object for the same id: it keeps its read position)."""
        if not 0 < peer_id < CHAT_PEER_BASE:
            raise ValueError(f"a user's peer_id is in 1..{CHAT_PEER_BASE - 1}; use chat() for group chats")
        if peer_id not in self._users:
            self._users[peer_id] = FakeUser(self.state, peer_id, peer_id)
        return self._users[peer_id]

    def chat(self, chat_id: int) -> FakeChat:
        if chat_id not in self._chats:
            self._chats[chat_id] = FakeChat(self.state, chat_id)
        return self._chats[chat_id]

    # -- long poll switches ------------------------------------------------------------------

    def expire_key(self) -> None:
        """The current long-poll key answers {"failed": 2} from now on."""
        self.state.updates.expire_key()

    def lose_history(self) -> None:
        """The current long-poll key answers {"failed": 3} from now on."""
        self.state.updates.lose_history()

    async def poller_waiting(self, within: float = 5.0) -> None:
        """Return once a long-poll request is held waiting for updates (the bot is listening)."""
        await self.state.updates.poller_waiting(within)

    # -- delivery modes ----------------------------------------------------------------------

    @property
    def callback(self) -> CallbackDelivery | None:
        return self._callback

    async def use_callback(
        self,
        url: str = "",
        secret: str = "",
        confirmation_code: str = "",
        *,
        urls: Sequence[str] = (),
        answer_timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        workers: int = 1,
    ) -> CallbackDelivery:
        """Confirm the endpoint at `url` as VK does, then deliver every new event there. With
        `urls` instead, requests go round robin over them (workers behind a load balancer): the
        confirmation to the first, then each delivery attempt to the next.

        Raises CallbackConfirmationError (and stays in the mode it was in) if the endpoint does not
        answer the confirmation request with `confirmation_code`.
        """
        if self._session is None:
            self._session = aiohttp.ClientSession()
        delivery = CallbackDelivery(
            self._session,
            group_id=self.state.group_id,
            url=url,
            urls=urls,
            secret=secret,
            confirmation_code=confirmation_code,
            timeout=answer_timeout,
            attempts=attempts,
            retry_delay=retry_delay,
            workers=workers,
            record=self.deliveries,
        )
        await delivery.confirm()
        await self._stop_callback()
        delivery.start()
        self._callback = delivery
        self.state.sink = delivery.enqueue
        return delivery

    async def use_long_poll(self) -> None:
        """Stop callback delivery (pending retries are dropped); new events go to long poll."""
        await self._stop_callback()

    def duplicate_deliveries(self, count: int = 1) -> None:
        """Callback mode: deliver each of the next `count` events twice."""
        self._require_callback().duplicate_deliveries(count)

    def delay_resend(self, count: int = 1, delay: float = 0.5) -> None:
        """Callback mode: deliver each of the next `count` events again `delay` s after its "ok"."""
        self._require_callback().delay_resend(count, delay)

    async def callback_idle(self, within: float = 10.0) -> None:
        """Wait until callback delivery has nothing queued, retrying or scheduled (TimeoutError if not)."""
        await self._require_callback().idle(within)

    def _require_callback(self) -> CallbackDelivery:
        if self._callback is None:
            raise RuntimeError("not in callback mode: call use_callback() first")
        return self._callback

    async def _stop_callback(self) -> None:
        self.state.sink = None
        if self._callback is not None:
            await self._callback.close()
            self._callback = None

    async def close(self) -> None:
        self.state.updates.close()
        await self._stop_callback()
        if self._session is not None:
            await self._session.close()
        await self._server.close()


async def start_vk_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    group_id: int = 1,
    tokens: Sequence[str] = ("vk-token",),
    rate_limit: int | None = 20,
    history: int = DEFAULT_HISTORY,
    start_ts: int = 1,
    max_wait: float = MAX_WAIT,
    max_message_length: int = MAX_MESSAGE_LENGTH,
    dedupe_window: float = DEDUPE_WINDOW,
    file_ttl: float = FILE_TTL,
    group_name: str = "Support bot",
    clock: Clock | None = None,
    access_log: bool = False,
) -> RunningVkEmulator:
    """Start serving on host:port (0 = any free port) and return once it accepts connections."""
    options: dict[str, Any] = {} if clock is None else {"clock": clock}
    state = VkState(
        group_id=group_id,
        tokens=tuple(tokens),
        group_name=group_name,
        rate_limit=rate_limit,
        history=history,
        start_ts=start_ts,
        max_message_length=max_message_length,
        dedupe_window=dedupe_window,
        file_ttl=file_ttl,
        **options,
    )
    app = build_app(state, max_wait=max_wait)
    server = await runner.start_server(
        app, host, port, access_log=log if access_log else None, access_log_class=_AccessLogger
    )
    state.base_url = server.url
    return RunningVkEmulator(server.url, state, server)


async def serve_forever(host: str, port: int, *, group_id: int, token: str, rate_limit: int | None) -> None:
    """Run the emulator until cancelled; drive it with POST /_vk/say and read GET /_vk/sent."""
    emulator = await start_vk_emulator(
        host, port, group_id=group_id, tokens=(token,), rate_limit=rate_limit, access_log=True
    )
    # The emulator's own demo token, printed so a human can point the bot at it.
    log.warning("fake VK server listening: VK_API_URL=%s group_id=%d token=%s", emulator.api_url, group_id, token)
    await runner.serve_until_cancelled(emulator.close)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m emulators.vk --port 8091`."""
    parser = runner.loopback_parser("emulators.vk", "Fake VK API server (for tests and demos)", 8091)
    parser.add_argument("--group-id", type=int, default=1)
    parser.add_argument("--token", default="vk-token")
    parser.add_argument("--rate-limit", type=int, default=20, help="calls per token per second; 0 = no limit")
    args = parser.parse_args(argv)
    limit = args.rate_limit or None
    runner.run_from_command_line(serve_forever(args.host, args.port, group_id=args.group_id, token=args.token,
                                        rate_limit=limit))


if __name__ == "__main__":
    main()
