"""SimpleOne REST client: the engine's TicketSystem port over aiohttp (adapters/simpleone/transport.py).

Follows shared/reference/simpleone-api.md: Table API under /rest/v1/table, attachments under
/v1/attachments (no /rest prefix). Three ways to authenticate (SimpleOneConfig.auth):
- "token": a static Bearer token;
- "login": a Bearer token from the documented JSON login, POST /v1/auth/login, or, where that
  answers 404/405, from the form-encoded POST /rest/v1/auth/login public integrations use;
  renewed once on 401;
- "basic": HTTP Basic, the username and password on every request (a 401 rejects them).
Non-empty envelope `messages` are logged as warnings.

Failure mapping, which the outbox's retry logic relies on:
- TicketSystemUnavailable (retry may help): timeouts, connection errors, 5xx, 429, redirects,
  any HTML page (a proxy or its login page, whatever the status), a body that is not JSON,
  an envelope whose `status` is not "OK" or whose shape is wrong.
- TicketSystemRejected (permanent): any other 4xx, including a 401 that a fresh login does not
  fix; RecordNotFound (a subclass) for 404. No write is retried here except after that one 401,
  which never follows a performed write, so a create is sent at most once per call: whether a
  failed write is sent again is the outbox's decision.

Reads (GET) are retried (`_read`): a 5xx, a timeout or a dropped connection is tried again up
to `read_retries` times, after a jittered, doubling delay, and only while the retry can end
within `read_budget` seconds of the read's start; so a SimpleOne that fails one request in
three does not turn "Мои заявки" into "unavailable", and a user is not kept waiting for long.
Tokens and passwords are never logged or put into exception messages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from adapters.simpleone.journal import FEED_FIELDS, comment_from, history_columns
from adapters.simpleone.records import PERSON_FIELDS, TICKET_FIELDS, flag, person_from, ticket_from
from adapters.simpleone.records import text as as_str
from adapters.simpleone.transport import AiohttpTransport, HttpAnswer, HttpFailure, HttpRequest, Transport
from engine.ports import (
    DEFAULT_PEOPLE_TABLES,
    Attachment,
    Comment,
    Journal,
    Person,
    Ticket,
    TicketRef,
    TicketSystemError,
    TicketSystemRejected,
    TicketSystemUnavailable,
    Upload,
    journal_order,
)
from engine.text_safety import clean_file_name, clean_json_strings

__all__ = ["RecordNotFound", "ServerError", "SimpleOneClient", "SimpleOneConfig", "default_transport"]

log = logging.getLogger(__name__)

LOGIN_PATH = "/rest/v1/auth/login"  # [seen] form-encoded; the fallback
DOCUMENTED_LOGIN_PATH = "/v1/auth/login"  # [doc] JSON body, no /rest prefix; tried first
# [doc] `employee` (a child table of `user`) first, then `user`: students may not be employees.
PEOPLE_TABLES: tuple[str, ...] = DEFAULT_PEOPLE_TABLES
ATTACHMENT_TABLE = "sys_attachment"
USER_AGENT = "supportbot/0.1 (RANEPA IT support bot; SimpleOne adapter)"
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")  # table and field names
_SYS_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EXCERPT = 200
_JOURNAL_PAGES = 10  # pages of entries read for one list_comments call, at most
_DOC_IDS_KEPT = 10_000  # Document IDs of records remembered (list_attachment_names)
_IDS_PER_QUERY = 100  # sys_ids in one `fieldIN a@b@…` condition (get_tickets, journal_since)
_MIME_RE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")

# A local file to send: (file name, MIME type, content).
FilePart = tuple[str, str, bytes]


_FORM = ("Content-Type", "application/x-www-form-urlencoded")
_JSON = ("Content-Type", "application/json")

AuthMode = Literal["token", "login", "basic"]
AUTH_MODES: tuple[AuthMode, ...] = ("token", "login", "basic")


class AccessDenied(TicketSystemRejected):
    """403: the account may not do this (read rights on a table, say)."""


class RecordNotFound(TicketSystemRejected):
    """404: the table or record does not exist (or the sys_id cannot name one)."""


class ServerError(TicketSystemUnavailable):
    """A 5xx answer (JSON or a proxy's HTML page): another try of a read may get through."""


@dataclass(frozen=True, slots=True)
class SimpleOneConfig:
    """How to reach SimpleOne. Give either `token`, or `username` and `password`.

    auth: "token" (a static token), "login" (trade username and password for a token) or
    "basic" (username and password on every request); None infers token or login from what
    is given.
    """

    base_url: str  # e.g. "https://sd.ranepa.ru"; API paths are appended to it
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auth: AuthMode | None = None
    language: str = "ru"
    connect_timeout: float = 5.0  # TCP connect and TLS handshake
    read_timeout: float = 30.0  # the longest silence while the answer is awaited or read
    pool_timeout: float = 10.0  # the longest wait for a free connection (nothing is sent then)
    verify_tls: bool = True
    ca_bundle: str | Path | None = None  # a PEM file to trust instead of the system store
    user_agent: str = USER_AGENT
    max_connections: int = 20
    # Reads only (writes are the outbox's to repeat): how often a transiently failed read is
    # sent again, the delay before the first retry (doubled for each next, with jitter), and
    # the time from a read's start within which every retry must end.
    read_retries: int = 2
    read_retry_delay: float = 0.2
    read_budget: float = 10.0
    # Where the instance keeps its own labels of a ticket's state codes [doc: sys_choice]; the
    # query's placeholders are {table}, {column} and {language} [guess: a real instance may
    # need `table_id.name={table}^column_id.column_name={column}` if they are references].
    choice_table: str = "sys_choice"
    state_column: str = "state"
    choice_query: str = "table_id={table}^column_id={column}^language={language}"
    labels_ttl: float = 600.0  # how long the labels read are used before they are read again
    labels_retry_after: float = 60.0  # after a failed read of them, how long until the next try

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"SimpleOne base_url must be an http(s) URL, got {self.base_url!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("SimpleOne base_url must not carry credentials, a query or a fragment")
        if self.auth is not None and self.auth not in AUTH_MODES:
            raise ValueError(f"SimpleOne auth must be one of {', '.join(AUTH_MODES)}, got {self.auth!r}")
        if self.token and (self.username or self.password):
            raise ValueError("give SimpleOne either a token or a username and password, not both")
        mode = self.auth_mode
        if mode == "token" and not self.token:
            raise ValueError("SimpleOne needs a token, or a username and a password")
        if mode != "token" and not (self.username and self.password):
            raise ValueError(f"SimpleOne auth {mode!r} needs a username and a password"
                             + (", not a token" if self.token else ""))
        for name in ("connect_timeout", "read_timeout", "pool_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SimpleOne {name} must be positive")
        if self.max_connections < 1:
            raise ValueError("SimpleOne max_connections must be at least 1")
        if self.read_retries < 0 or self.read_retry_delay < 0 or not self.read_budget > 0:
            raise ValueError("SimpleOne read_retries and read_retry_delay must not be negative, "
                             "read_budget must be positive")
        if self.ca_bundle is not None and not self.verify_tls:
            raise ValueError("a SimpleOne ca_bundle means nothing with verify_tls off")

    @property
    def auth_mode(self) -> AuthMode:
        """`auth`, or when it is not given: token if there is one, else login."""
        if self.auth is not None:
            return self.auth
        return "token" if self.token else "login"

    def tls_context(self) -> ssl.SSLContext | Literal[False]:
        """What servers are checked against: the CA bundle, else the system's store; False: nothing."""
        if not self.verify_tls:
            return False
        return ssl.create_default_context(cafile=None if self.ca_bundle is None else str(self.ca_bundle))


def _excerpt(body: str) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= _EXCERPT else flat[:_EXCERPT] + "…"


def _name(value: str, what: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise TicketSystemRejected(f"invalid SimpleOne {what} name {value!r}")
    return value


def _retryable(status: int) -> bool:
    """An answer to a read that another try may change: a server error (not 429: being told to
    slow down is not a reason to ask again at once)."""
    return status >= 500


def _form_param(value: str) -> str:
    """A name or file name inside a multipart header, escaped as browsers do (HTML's form rules)."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _multipart(parts: Sequence[tuple[str, FilePart]]) -> tuple[bytes, str]:
    """A multipart/form-data body of files and its Content-Type."""
    boundary = secrets.token_hex(16)
    body = bytearray()
    for key, (name, mime, data) in parts:
        mime = mime if _MIME_RE.fullmatch(mime) else "application/octet-stream"
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{_form_param(key)}"; '
                 f'filename="{_form_param(name)}"\r\nContent-Type: {mime}\r\n\r\n').encode()
        body += data
        body += b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


def _sys_id(value: str) -> str:
    if not _SYS_ID_RE.fullmatch(value):
        raise RecordNotFound(f"{value!r} is not a valid sys_id")
    return value


def _query_value(value: str, what: str) -> str:
    # `^` would start a new condition: a value carrying one could widen the query.
    if "^" in value or "\n" in value or "\r" in value:
        raise TicketSystemRejected(f"{what} contains characters that cannot go into a query")
    return value


def default_transport(config: SimpleOneConfig) -> AiohttpTransport:
    """The HTTP layer the client uses unless given another: aiohttp, set up from the config."""
    return AiohttpTransport(
        # Plain http (the chat's emulator on loopback) never speaks TLS (redirects are not
        # followed): no CA store to load for it (~20 ms at start).
        tls=config.tls_context() if urlsplit(config.base_url).scheme == "https" else False,
        max_connections=config.max_connections,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        pool_timeout=config.pool_timeout,
    )


class SimpleOneClient:
    """TicketSystem for SimpleOne, plus the generic Table API calls it is built on.

    One instance is shared by all tasks; `close()` it (or use `async with`) at shutdown.
    `transport` lets tests observe or replace the HTTP layer (by default aiohttp, set up from
    the config: TLS, connection cap, timeouts).
    """

    def __init__(self, config: SimpleOneConfig, *, transport: Transport | None = None) -> None:
        self._config = config
        self._base = config.base_url.rstrip("/")
        self._headers = (("User-Agent", config.user_agent), ("Accept", "application/json"))
        self._http: Transport = transport or default_transport(config)
        self._mode: AuthMode = config.auth_mode
        self._token: str | None = config.token or None
        self._can_login = self._mode == "login"
        self._login_lock = asyncio.Lock()
        # Where tokens come from: the documented login until it answers 404/405, then the fallback.
        self._login_path = DOCUMENTED_LOGIN_PATH
        self._basic = ""
        if self._mode == "basic":
            pair = f"{config.username}:{config.password}".encode()
            self._basic = "Basic " + base64.b64encode(pair).decode("ascii")
        # table → (when to read again, code → label); one read at a time per table.
        self._labels: dict[str, tuple[float, dict[str, str]]] = {}
        self._labels_locks: dict[str, asyncio.Lock] = {}
        self._monotonic: Callable[[], float] = time.monotonic
        # (table, sys_id) → the record's Document ID, as uploads and settled uploads showed it.
        self._doc_ids: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def __aenter__(self) -> SimpleOneClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.close()

    # ----------------------------------------------------------------------- auth

    async def _login(self) -> str:
        config = self._config
        path = self._login_path
        if path == DOCUMENTED_LOGIN_PATH:
            # [doc] SimpleRestRequest (1.27): JSON {"username", "password"}, token at data.auth_key.
            credentials = {"username": config.username or "", "password": config.password or ""}
            body = json.dumps(credentials, ensure_ascii=False).encode()
            response = await self._transmit("POST", path, (), (*self._headers, _JSON), body)
            if response.status not in (404, 405):
                return self._token_from("POST", path, response)
            log.info("SimpleOne answered %s to %s; logging in with %s from now on",
                     response.status, path, LOGIN_PATH)
            self._login_path = path = LOGIN_PATH
        # [seen] public integrations: a form-encoded body with the language.
        form = {
            "username": config.username or "",
            "password": config.password or "",
            "language": config.language,
        }
        body = urlencode(form).encode("ascii")
        response = await self._transmit("POST", path, (), (*self._headers, _FORM), body)
        return self._token_from("POST", path, response)

    def _token_from(self, method: str, path: str, response: HttpAnswer) -> str:
        data = self._unwrap(method, path, response, secret=True)
        token = data.get("auth_key") if isinstance(data, Mapping) else None
        if not isinstance(token, str) or not token:
            raise TicketSystemUnavailable(f"{method} {path}: the answer has no data.auth_key")
        log.info("logged in to SimpleOne as %s (%s)", self._config.username, path)
        return token

    async def _authorization(self) -> str:
        """The Authorization header's value for the next request."""
        if self._mode == "basic":
            return self._basic
        return f"Bearer {await self._valid_token()}"

    async def _valid_token(self) -> str:
        token = self._token
        if token is not None:
            return token
        async with self._login_lock:
            if self._token is None:
                self._token = await self._login()
            return self._token

    @property
    def account(self) -> str:
        """Who the client is on the instance, for an administrator's eyes (no secret)."""
        who = self._config.username or "a static token"
        return f"{who} ({self._mode})"

    @property
    def choice_table(self) -> str:
        return self._config.choice_table

    async def authenticate(self) -> None:
        """Log in now, as the first call would (login mode); with a static token or Basic, there
        is nothing to trade, and the first read proves the credentials."""
        if self._can_login:
            await self._valid_token()

    async def _renew_token(self, stale: str) -> None:
        """Log in again unless another task already replaced `stale` while we waited."""
        async with self._login_lock:
            if self._token == stale:
                self._token = None
                self._token = await self._login()

    # ----------------------------------------------------------------------- transport

    async def _transmit(self, method: str, path: str, params: Sequence[tuple[str, str]],
                        headers: Sequence[tuple[str, str]], body: bytes | None) -> HttpAnswer:
        try:
            return await self._http.send(HttpRequest(method, self._base + path, params, headers, body))
        except HttpFailure as exc:
            raise TicketSystemUnavailable(f"{method} {path}: {exc}", maybe_done=exc.maybe_sent) from exc

    async def _call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                    json_body: object = None, files: Sequence[tuple[str, FilePart]] = ()) -> HttpAnswer:
        """Send with the bearer token; on 401 with a login-based token, log in and resend once."""
        headers = list(self._headers)
        body: bytes | None = None
        # Every text that leaves for SimpleOne goes through one sanitiser: no control characters
        # (a NUL in a comment), file names one safe path part.
        if files:
            body, content_type = _multipart([(key, (clean_file_name(name), mime, data))
                                             for key, (name, mime, data) in files])
            headers.append(("Content-Type", content_type))
        elif json_body is not None:
            body = json.dumps(clean_json_strings(json_body), ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode()
            headers.append(_JSON)
        query = list((params or {}).items())
        for attempt in (1, 2):
            authorization = await self._authorization()
            response = await self._transmit(method, path, query, (*headers, ("Authorization", authorization)),
                                            body)
            if response.status == 401 and attempt == 1 and self._can_login:
                log.info("SimpleOne answered 401 to %s %s; logging in again", method, path)
                await self._renew_token(authorization.removeprefix("Bearer "))
                continue
            if response.status == 401 and self._mode == "basic":
                log.warning("SimpleOne refused the username and password (HTTP Basic) of %s for %s %s",
                            self._config.username, method, path)
            return response
        raise AssertionError("unreachable")  # the second attempt always returns

    async def _read(self, path: str, params: Mapping[str, str] | None = None) -> HttpAnswer:
        """GET, sent again after a transient failure (a 5xx, a timeout, a dropped connection).

        The first try is bounded by the transport's timeouts; a retry is made only if its delay
        leaves time before `read_budget` runs out, and it is cut off when the budget does. After
        the last try its answer (a 5xx) or its failure goes to the caller as it came. Only for
        reads: nothing a GET does can be done twice."""
        config = self._config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.read_budget
        retry = 0
        while True:
            try:
                if retry == 0:
                    response = await self._call("GET", path, params=params)
                else:
                    async with asyncio.timeout_at(deadline):
                        response = await self._call("GET", path, params=params)
            except TicketSystemUnavailable as exc:
                # No connection, no answer, a 5xx (of the login too): another try may help; a
                # proxy's login page or a broken envelope would be the same again.
                if not (isinstance(exc, ServerError) or isinstance(exc.__cause__, HttpFailure)):
                    raise
                failure: TicketSystemUnavailable | HttpAnswer = exc
                reason = str(exc)
            except TimeoutError:
                raise TicketSystemUnavailable(
                    f"GET {path}: no answer within the read budget ({config.read_budget:g} s, "
                    f"{retry + 1} tries)") from None
            else:
                if not _retryable(response.status):
                    return response
                failure, reason = response, f"GET {path} -> HTTP {response.status}"
            delay = config.read_retry_delay * 2.0**retry * (0.5 + random.random() / 2)
            if retry >= config.read_retries or loop.time() + delay >= deadline:
                if isinstance(failure, HttpAnswer):
                    return failure  # the caller reports it as it reports any 5xx
                raise failure
            retry += 1
            log.info("SimpleOne read failed (%s); retry %d of %d in %.2f s", reason, retry, config.read_retries, delay)
            await asyncio.sleep(delay)

    def _check_status(
        self, method: str, path: str, response: HttpAnswer, *, secret: bool, api_answer: bool = True
    ) -> None:
        """Raise for every answer that is not a success; `api_answer` = a JSON body is expected."""
        status = response.status
        success = 200 <= status < 300
        if success and not api_answer:
            return  # a download: the bytes are the answer (an HTML attachment is still a file)
        html = response.content_type == "text/html" or response.content.lstrip()[:1] == b"<"
        if success and not html:
            return
        where = f"{method} {path} -> HTTP {status}"
        body = "(body withheld)" if secret else _excerpt(response.text)
        # An HTML page where the API should answer is a proxy or its login page, whatever the status.
        # A proxy's page with a success or redirect status (a login page) stopped the request
        # before SimpleOne; so do 503 and 429 by their meaning. Other failures may follow a write.
        refused = status in (429, 503) or status < 400
        unavailable = ServerError if status >= 500 else TicketSystemUnavailable
        if html:
            raise unavailable(f"{where}: an HTML page instead of the API (a proxy?): {body}",
                              maybe_done=not refused)
        if status == 429 or status >= 500 or status < 200 or 300 <= status < 400:
            raise unavailable(f"{where}: {body}", maybe_done=not refused)
        if status == 404:
            raise RecordNotFound(f"{where}: {body}")
        if status == 403:
            raise AccessDenied(f"{where}: {body}")
        if status >= 400:
            raise TicketSystemRejected(f"{where}: {body}")

    def _unwrap(self, method: str, path: str, response: HttpAnswer, *, secret: bool = False) -> Any:
        """The envelope's `data`, after every check that the answer is a real API answer."""
        self._check_status(method, path, response, secret=secret)
        try:
            envelope = json.loads(response.content)
        except ValueError:  # not JSON, or not text at all
            envelope = None
            problem = "the body is not JSON"
        else:
            problem = "the envelope status is not OK"
        if not isinstance(envelope, Mapping) or envelope.get("status") != "OK":
            body = "(body withheld)" if secret else _excerpt(response.text)
            raise TicketSystemUnavailable(f"{method} {path} -> HTTP {response.status}: {problem}: {body}")
        messages = envelope.get("messages")
        if messages:  # [doc] the envelope's `messages` (empty in the documented examples)
            shown = json.dumps(messages, ensure_ascii=False) if not isinstance(messages, str) else messages
            log.warning("SimpleOne said on %s %s: %s", method, path, _excerpt(shown))
        return envelope.get("data")

    def _records(self, method: str, path: str, response: HttpAnswer) -> list[dict[str, Any]]:
        data = self._unwrap(method, path, response)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            where = f"{method} {path} -> HTTP {response.status}"
            raise TicketSystemUnavailable(
                f"{where}: data is not a list of records: {_excerpt(response.text)}"
            )
        return data

    def _one(self, method: str, path: str, response: HttpAnswer) -> dict[str, Any]:
        records = self._records(method, path, response)
        if not records:
            raise TicketSystemUnavailable(f"{method} {path}: the answer holds no record")
        return records[0]

    # ----------------------------------------------------------------------- generic Table API

    @staticmethod
    def _table_path(table: str, sys_id: str | None = None) -> str:
        path = f"/rest/v1/table/{_name(table, 'table')}"
        return path if sys_id is None else f"{path}/{_sys_id(sys_id)}"

    @staticmethod
    def _view_params(
        fields: Sequence[str] | None, display_value: bool, exclude_reference_link: bool
    ) -> dict[str, str]:
        params: dict[str, str] = {}
        if fields:
            params["sysparm_fields"] = ",".join(fields)
        if display_value:
            params["sysparm_display_value"] = "1"
        if exclude_reference_link:
            params["sysparm_exclude_reference_link"] = "1"
        return params

    async def create_record(
        self, table: str, values: Mapping[str, object], *, fields: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """POST one record; returns it as created (with sys_id, number, defaults)."""
        path = self._table_path(table)
        params = self._view_params(fields, False, False)
        response = await self._call("POST", path, json_body=dict(values), params=params)
        return self._one("POST", path, response)

    async def list_records(
        self,
        table: str,
        *,
        query: str = "",
        fields: Sequence[str] | None = None,
        limit: int = 20,
        page: int = 1,
        display_value: bool = False,
        exclude_reference_link: bool = False,
    ) -> list[dict[str, Any]]:
        """One page (from 1) of the records matching an encoded query."""
        if limit < 1 or page < 1:
            raise ValueError("limit and page start at 1")
        path = self._table_path(table)
        params = self._view_params(fields, display_value, exclude_reference_link)
        params.update({"sysparm_limit": str(limit), "sysparm_page": str(page)})
        if query:
            params["sysparm_query"] = query
        return self._records("GET", path, await self._read(path, params))

    async def get_record(
        self,
        table: str,
        sys_id: str,
        *,
        fields: Sequence[str] | None = None,
        display_value: bool = False,
        exclude_reference_link: bool = False,
    ) -> dict[str, Any]:
        """One record; RecordNotFound if there is none."""
        path = self._table_path(table, sys_id)
        params = self._view_params(fields, display_value, exclude_reference_link)
        return self._one("GET", path, await self._read(path, params))

    async def update_record(
        self, table: str, sys_id: str, values: Mapping[str, object], *, method: str = "PATCH"
    ) -> dict[str, Any]:
        """Change fields (journal fields append an entry); returns the updated record."""
        if method not in {"PATCH", "PUT"}:
            raise ValueError("update_record method must be PATCH or PUT")
        path = self._table_path(table, sys_id)
        return self._one(method, path, await self._call(method, path, json_body=dict(values)))

    async def delete_record(self, table: str, sys_id: str) -> None:
        path = self._table_path(table, sys_id)
        response = await self._call("DELETE", path)
        if response.status == 204 or (200 <= response.status < 300 and not response.content):
            return  # an empty success is a success for a delete (the reply is undocumented)
        self._unwrap("DELETE", path, response)

    async def upload(self, table: str, sys_id: str, files: Sequence[FilePart]) -> list[dict[str, Any]]:
        """Attach files to a record. The answer's body is undocumented: any 2xx is success, and
        the sys_attachment records are returned when the body is the usual envelope holding
        them, else [] (an empty body, other JSON, plain text). A 2xx HTML page is still an error:
        it is a proxy's page, not SimpleOne's (had the upload landed, settling finds it)."""
        if not files:
            return []
        path = f"/v1/attachments/upload/{_name(table, 'table')}/{_sys_id(sys_id)}"
        names = ["files"] if len(files) == 1 else [f"files[{i}]" for i in range(1, len(files) + 1)]
        parts = list(zip(names, files, strict=True))
        response = await self._call("POST", path, files=parts)
        self._check_status("POST", path, response, secret=False)
        try:
            envelope = json.loads(response.content) if response.content.strip() else None
        except ValueError:
            envelope = None
        data = envelope.get("data") if isinstance(envelope, Mapping) else None
        if isinstance(envelope, Mapping) and envelope.get("status") not in (None, "OK"):
            # A 2xx that says it failed: unclear, not done; the outbox settles it (finds the file
            # if it landed after all) before it sends it again.
            raise TicketSystemUnavailable(f"POST {path} -> HTTP {response.status} with status "
                                          f"{str(envelope.get('status'))[:40]!r}: {_excerpt(response.text)}",
                                          maybe_done=True)
        if not isinstance(data, list):
            return []
        return [r for r in data if isinstance(r, dict)]

    async def download(self, attachment_sys_id: str) -> bytes:
        path = f"/v1/attachments/download/{_sys_id(attachment_sys_id)}"
        response = await self._read(path)
        self._check_status("GET", path, response, secret=False, api_answer=False)
        return response.content

    # ----------------------------------------------------------------------- TicketSystem

    async def find_person(self, email: str, tables: Sequence[str] = PEOPLE_TABLES) -> Person | None:
        """The active person with exactly this email (compared ignoring case), from the first of
        `tables` that has one (employee, then user: students may not be employees). A table the
        instance does not have, or the account may not read, is skipped with a warning (an
        account that reads only `user`, as before employee was asked, still signs people in),
        unless no table answered."""
        email = email.strip()
        if not email or "^" in email or "\n" in email or "\r" in email:
            return None
        missing: RecordNotFound | AccessDenied | None = None
        asked = False  # whether any of the tables answered
        for table in tables:
            try:
                records = await self.list_records(
                    table, query=f"active=1^email={email}", fields=PERSON_FIELDS, limit=10,
                    exclude_reference_link=True,
                )
            except (RecordNotFound, AccessDenied) as exc:
                log.warning("SimpleOne refused the people table %r (skipped; missing, or no read rights): %s",
                            table, exc)
                missing = exc
                continue
            asked = True
            for record in records:
                # The query is the server's business; which record we accept is ours.
                if as_str(record.get("email")).lower() != email.lower() or not as_str(record.get("sys_id")):
                    continue
                if flag(record.get("active"), default=True):
                    return person_from(record)
        if missing is not None and not asked:
            raise missing
        return None

    async def create_ticket(self, table: str, fields: Mapping[str, str]) -> TicketRef:
        record = await self.create_record(table, fields)
        sys_id, number = as_str(record.get("sys_id")), as_str(record.get("number"))
        if not sys_id:
            # The write may have happened: report it as unclear so the caller looks it up.
            raise TicketSystemUnavailable(f"POST /rest/v1/table/{table}: the created record has no sys_id")
        return TicketRef(table=table, sys_id=sys_id, number=number, state=as_str(record.get("state")),
                         updated_at=as_str(record.get("sys_updated_at")))

    async def find_ticket_by_marker(
        self, table: str, caller_id: str, marker: str, *, field: str = "description"
    ) -> TicketRef | None:
        """The caller's oldest ticket whose `field` contains `marker`: how an unclear create is
        resolved (look the ticket up before creating it again). Not part of the engine's port yet."""
        if not marker.strip():
            raise ValueError("an empty marker would match every ticket")
        query = (
            f"caller={_query_value(caller_id, 'caller_id')}"
            f"^{_name(field, 'field')}LIKE{_query_value(marker, 'marker')}^ORDERBYsys_created_at"
        )
        records = await self.list_records(
            table,
            query=query,
            fields=("sys_id", "number", "caller", "state", "sys_updated_at", field),
            limit=5,
            exclude_reference_link=True,
        )
        for record in records:
            if as_str(record.get("caller")) == caller_id and marker in as_str(record.get(field)):
                return TicketRef(
                    table=table, sys_id=as_str(record.get("sys_id")), number=as_str(record.get("number")),
                    state=as_str(record.get("state")), updated_at=as_str(record.get("sys_updated_at")),
                )
        return None

    async def list_tickets(
        self, caller_id: str, tables: Sequence[str], *, active_only: bool, limit: int,
        closed_since: str = "",
    ) -> list[Ticket]:
        """The caller's tickets across tables, newest first (by sys_created_at), at most limit.

        closed_since ("YYYY-MM-DD HH:MM:SS", UTC, the instance's own time): only inactive
        tickets last updated then or later (`active=0^sys_updated_at>=…`; the timestamps
        compare in that format as they sort). It cannot go with active_only."""
        if closed_since and not _TIME_RE.fullmatch(closed_since):
            raise ValueError(f"closed_since must be 'YYYY-MM-DD HH:MM:SS', got {closed_since!r}")
        if closed_since and active_only:
            raise ValueError("closed_since lists inactive tickets: it cannot go with active_only")
        if limit < 1 or not tables:
            return []
        query = f"caller={_query_value(caller_id, 'caller_id')}"
        if active_only:
            query += "^active=1"
        if closed_since:
            query += f"^active=0^sys_updated_at>={closed_since}"
        query += "^ORDERBYDESCsys_created_at"
        found: list[Ticket] = []
        for table in tables:
            records = await self.list_records(
                table, query=query, fields=TICKET_FIELDS, limit=limit, exclude_reference_link=True
            )
            tickets = (ticket_from(table, r) for r in records)
            # Ownership (and the filter) is re-checked here rather than trusted to the server.
            found.extend(t for t in tickets if t.caller_id == caller_id and (t.active or not active_only)
                         and (not closed_since or (not t.active and t.updated_at >= closed_since)))
        found.sort(key=lambda t: t.created_at, reverse=True)  # stable: ties keep table order
        return found[:limit]

    async def get_ticket(self, table: str, sys_id: str) -> Ticket | None:
        try:
            record = await self.get_record(table, sys_id, fields=TICKET_FIELDS, exclude_reference_link=True)
        except RecordNotFound:
            return None
        return ticket_from(table, record)

    async def get_tickets(self, table: str, sys_ids: Sequence[str]) -> list[Ticket]:
        """These tickets as they are now, in pages of 100 ids (one `sys_idIN` query each)."""
        found: list[Ticket] = []
        ids = list(dict.fromkeys(_sys_id(i) for i in sys_ids))
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            records = await self.list_records(
                table, query=f"sys_idIN{'@'.join(chunk)}", fields=TICKET_FIELDS, limit=len(chunk),
                exclude_reference_link=True,
            )
            wanted = set(chunk)
            found.extend(t for t in (ticket_from(table, r) for r in records) if t.sys_id in wanted)
        return found

    async def add_comment(self, table: str, sys_id: str, field: str, text: str) -> None:
        await self.update_record(table, sys_id, {_name(field, "field"): text})

    async def update_ticket(self, table: str, sys_id: str, fields: Mapping[str, str]) -> None:
        """Write these fields of a ticket in one PATCH (a journal field among them appends its
        entry). A write: sent once, never retried here, failing as add_comment does
        (TicketSystemUnavailable with maybe_done, TicketSystemRejected)."""
        values = {_name(name, "field"): value for name, value in fields.items()}
        if values:
            await self.update_record(table, sys_id, values)

    async def list_comments(
        self, table: str, sys_id: str, *, journal: Journal | None = None, after: str | None = None,
        limit: int = 50,
    ) -> list[Comment]:
        """The ticket's public comments after the entry `after`, oldest first, at most limit.

        Reads the journal table (shared/reference/simpleone-api.md, "Comments") with
        `type_id.name=<public>.<table>^record_id=<sys_id>^sys_id><after>^ORDERBYsys_id`, and
        keeps only entries whose type and ticket it re-checks: work notes never come back, even
        from a server that ignored the query. Pages on with `sys_id>` while the entries of a
        full page were all left out."""
        record_id = _sys_id(sys_id)
        return await self._read_journal(table, f"record_id={record_id}", frozenset({record_id}),
                                        journal=journal, after=after, before=None, limit=limit)

    async def journal_since(
        self, table: str, sys_ids: Sequence[str], *, after: str | None, journal: Journal | None = None,
        limit: int = 200,
    ) -> list[Comment]:
        """Public comments of these tickets (one table) after the entry `after`, oldest first
        (by entry sys_id), at most limit, each with its record_id.

        One query per batch of at most 100 ids, as the activity-feed widget reads its entries
        ([seen], shared/reference/simpleone-api.md, "Comments"):
        `type_id.name=<public>.<table>^record_idIN<id>@<id>…^sys_id><after>^ORDERBYsys_id`,
        paged on with `sys_id>` like list_comments. Every entry is re-checked (exactly the public
        type, a ticket among those asked). The batches' comments are merged, oldest first, and cut
        at limit: each batch gives its own oldest `limit`, so the overall oldest are all there,
        and whatever is left out is newer than the last one returned (the next `after`)."""
        ids = list(dict.fromkeys(_sys_id(i) for i in sys_ids))
        if limit < 1 or not ids:
            return []
        found: list[Comment] = []
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            found.extend(await self._read_journal(table, f"record_idIN{'@'.join(chunk)}", frozenset(chunk),
                                                  journal=journal, after=after, before=None, limit=limit))
        found.sort(key=lambda c: journal_order(c.sys_id))
        return found[:limit]

    async def latest_comments(
        self, table: str, sys_id: str, *, journal: Journal | None = None, before: str | None = None,
        limit: int = 5,
    ) -> list[Comment]:
        """The ticket's newest public comments (older than the entry `before`, if given), at
        most limit, returned oldest first: `…^record_id=<sys_id>^sys_id<<before>^ORDERBYDESCsys_id`,
        paged on downwards with `sys_id<` while a full page held no public comment."""
        record_id = _sys_id(sys_id)
        newest = await self._read_journal(table, f"record_id={record_id}", frozenset({record_id}),
                                          journal=journal, after=None, before=before, limit=limit,
                                          newest_first=True)
        return newest[::-1]

    async def state_changed_by_bot(self, table: str, sys_id: str, journal: Journal | None = None) -> bool:
        """The newest `history` entries of the ticket ([seen]: type_id.name=history, content
        {"history_items": [{column_id, …}]}, sys_created_by): whether the latest one that changed
        `state` was written by this client's account."""
        own = self._config.username.lower() if self._config.username else ""
        if not own:
            return False
        record_id = _sys_id(sys_id)
        feed_table = _name((journal or Journal()).table, "journal table")
        records = await self.list_records(
            feed_table, query=f"type_id.name=history^record_id={record_id}^ORDERBYDESCsys_id",
            fields=("sys_id", "record_id", "content", "sys_created_by"), limit=10, exclude_reference_link=True)
        records = [r for r in records if as_str(r.get("record_id")) == record_id]
        records.sort(key=lambda r: journal_order(as_str(r.get("sys_id"))), reverse=True)
        for record in records:
            if "state" in history_columns(record.get("content")):
                return as_str(record.get("sys_created_by")).lower() == own
        return False

    async def _read_journal(
        self, table: str, where: str, record_ids: frozenset[str], *, journal: Journal | None,
        after: str | None, before: str | None, limit: int, newest_first: bool = False,
    ) -> list[Comment]:
        """Public comments of `record_ids` (which the condition `where` asks for) from the journal
        table, strictly between the entries `after` and `before`, at most limit: the oldest ones,
        oldest first, or with `newest_first` the newest ones, newest first.

        Pages on, at most _JOURNAL_PAGES queries, moving the bound (`sys_id>` up, or `sys_id<`
        down) past each page while a full page's entries were all left out (work notes, history,
        other tickets'). The bounds are re-checked on what comes back, so a server that ignores
        the query repeats nothing and shows nothing it should not."""
        journal = journal or Journal()
        if limit < 1:
            return []
        type_name = f"{_name(journal.public, 'journal field')}.{_name(table, 'table')}"
        feed_table = _name(journal.table, "journal table")
        lower = None if after is None else _sys_id(after)
        upper = None if before is None else _sys_id(before)
        own = frozenset({self._config.username.lower()} if self._config.username else ())
        found: list[Comment] = []
        for _ in range(_JOURNAL_PAGES):
            query = f"type_id.name={type_name}^{where}"
            if lower is not None:
                query += f"^sys_id>{lower}"
            if upper is not None:
                query += f"^sys_id<{upper}"
            query += "^ORDERBYDESCsys_id" if newest_first else "^ORDERBYsys_id"
            records = await self.list_records(feed_table, query=query, fields=FEED_FIELDS, limit=limit,
                                              exclude_reference_link=True)
            inside: list[tuple[dict[str, Any], tuple[int, int, str]]] = []
            for record in records:
                key = journal_order(as_str(record.get("sys_id")))
                if (lower is None or key > journal_order(lower)) and (upper is None or key < journal_order(upper)):
                    inside.append((record, key))
            inside.sort(key=lambda item: item[1], reverse=newest_first)
            for record, _key in inside:
                comment = comment_from(record, type_name=type_name, record_ids=record_ids, own_authors=own,
                                       bot_tail=journal.bot_tail)
                if comment is not None:
                    found.append(comment)
            if len(records) < limit or len(found) >= limit or not inside:
                break  # the last page, enough, or a server that does not move past the bound
            last = as_str(inside[-1][0].get("sys_id"))
            if newest_first:
                upper = last
            else:
                lower = last
        return found[:limit]

    async def state_labels(self, table: str) -> Mapping[str, str]:
        """The instance's own labels of the table's state codes, from sys_choice (`choice_query`).

        Read once per table and kept `labels_ttl` seconds, so lists and notices cost no extra
        round trip. A failed read (after the client's retries) is logged and leaves what was
        known before (or nothing) for `labels_retry_after` seconds: labels never fail a list."""
        now = self._monotonic()
        cached = self._labels.get(table)
        if cached is not None and now < cached[0]:
            return cached[1]
        lock = self._labels_locks.setdefault(table, asyncio.Lock())
        async with lock:
            cached = self._labels.get(table)
            now = self._monotonic()
            if cached is not None and now < cached[0]:
                return cached[1]  # another task read them while this one waited
            known = cached[1] if cached is not None else {}
            try:
                labels = await self._read_state_labels(table)
            except TicketSystemError as exc:
                log.warning("cannot read the state labels of %s from SimpleOne (the flows' fallback labels "
                            "are shown; next try in %g s): %s", table, self._config.labels_retry_after, exc)
                self._labels[table] = (now + self._config.labels_retry_after, known)
                return known
            if not labels:
                log.warning("SimpleOne has no state labels for %s in %s (the flows' fallback labels are shown)",
                            table, self._config.choice_table)
            self._labels[table] = (now + self._config.labels_ttl, labels)
            return labels

    def forget_state_labels(self) -> None:
        """Drop the cached labels: the next state_labels call reads them again."""
        self._labels.clear()

    async def _read_state_labels(self, table: str) -> dict[str, str]:
        config = self._config
        query = config.choice_query.format(
            table=_query_value(_name(table, "table"), "table"),
            column=_query_value(_name(config.state_column, "field"), "state_column"),
            language=_query_value(config.language, "language"),
        )
        records = await self.list_records(config.choice_table, query=query, fields=("value", "title", "language"),
                                          limit=500, exclude_reference_link=True)
        labels: dict[str, str] = {}
        for record in records:
            value, title = as_str(record.get("value")), " ".join(as_str(record.get("title")).split())
            language = as_str(record.get("language"))
            if value and title and language in ("", config.language):
                labels.setdefault(value, title)
        return labels

    async def find_attachments(self, table: str, sys_id: str, files: Sequence[Attachment], *,
                               since: str, known: Sequence[Attachment] = ()) -> list[Attachment]:
        """Those of `files` (name and size) attached to the record at `since` or later (the
        instance's time, "YYYY-MM-DD HH:MM:SS"; "" = any time): how the outbox settles an upload
        whose answer was lost before it sends the file again.

        sys_attachment names a record by its Document ID — a UUID the instance derives from the
        table's and the record's ids (`ss.getDocIdByIds`) — not by its sys_id, and the REST API
        documents no way to compute it ([doc], shared/reference/simpleone-api.md). So:
        1. The Document ID is read off an attachment known to be on the record: a `known` one
           carrying it; else the `known` ones with a sys_id (named by an upload's answer), read
           back; else a `known` file without ids (an upload answered 2xx with no usable body)
           whose name, size and time match exactly one sys_attachment row: that row is it.
        2. With the Document ID, the record's own rows are listed: exact. The files come back
           with their sys_id and Document ID.
        3. Without it, rows are matched by name, size and `sys_created_at >= since` across the
           whole instance, and come back without ids. Limit: a file of the same name and the
           same byte size attached to another record within that window is taken for ours, and
           ours is then not sent again (a file lost, never a duplicate). The window is as narrow
           as `since` is recent: the outbox passes the ticket's sys_updated_at from just before
           the files were queued, the instance's own clock, so the bot's clock plays no part.
        Names are compared exactly after the same cleaning an upload applies (the server's `=`
        ignores case); each row answers for one wanted file at most.
        """
        _sys_id(sys_id)
        since = since if _TIME_RE.fullmatch(since) else ""
        wanted = [f for f in files if f.size >= 0]
        if not wanted:
            return []
        doc_id = await self._document_id(known, since)
        if doc_id:
            self._remember_document_id(table, sys_id, doc_id)
            query = f"record_document_id={doc_id}" + (f"^sys_created_at>={since}" if since else "")
            rows = await self.list_records(ATTACHMENT_TABLE, query=query, fields=_ATTACHMENT_FIELDS, limit=1000,
                                           exclude_reference_link=True)
            rows = [r for r in rows if as_str(r.get("record_document_id")) == doc_id]
            return _match_rows(wanted, rows, since, with_ids=True)
        # One pool of rows for all the wanted files, each row standing for one file at most: two
        # identical files (same name and size) are two only if two rows show them.
        pooled: dict[str, Mapping[str, Any]] = {}
        for name, size in dict.fromkeys((clean_file_name(f.name), f.size) for f in wanted):
            for row in await self._rows_like(Attachment(name, size), since):
                pooled.setdefault(as_str(row.get("sys_id")) or f"row-{len(pooled)}", row)
        return _match_rows(wanted, list(pooled.values()), since, with_ids=False)

    async def list_attachment_names(
        self, table: str, sys_id: str, *, known: Sequence[Attachment] = ()
    ) -> list[str]:
        """Names of the files on the ticket (oldest first), as far as the instance lets them be
        found: sys_attachment rows whose record_document_id is the record's Document ID.

        The REST API documents no way to learn a record's Document ID from its sys_id (see
        find_attachments); it is read off files known to be on the record: `known` (not in the
        engine's port yet), else what this client learnt from an upload's answer or a settled
        upload (kept in memory: lost at a restart, not shared between processes). Without it
        the answer is [] — incomplete, never an error; a failed read raises as any read does."""
        _name(table, "table")
        _sys_id(sys_id)
        doc_id = await self._document_id(known, "") if known else ""
        doc_id = doc_id or self._doc_ids.get((table, sys_id), "")
        if not doc_id:
            return []
        self._remember_document_id(table, sys_id, doc_id)
        rows = await self.list_records(ATTACHMENT_TABLE, query=f"record_document_id={doc_id}^ORDERBYsys_created_at",
                                       fields=_ATTACHMENT_FIELDS, limit=1000, exclude_reference_link=True)
        return [name for r in rows if as_str(r.get("record_document_id")) == doc_id
                and (name := as_str(r.get("file_name")))]

    def _remember_document_id(self, table: str, sys_id: str, doc_id: str) -> None:
        """Keep a record's Document ID (a bounded memory, the least recently used forgotten)."""
        if not _SYS_ID_RE.fullmatch(doc_id):
            return
        self._doc_ids[(table, sys_id)] = doc_id
        self._doc_ids.move_to_end((table, sys_id))
        while len(self._doc_ids) > _DOC_IDS_KEPT:
            self._doc_ids.popitem(last=False)

    async def _document_id(self, known: Sequence[Attachment], since: str) -> str:
        """The record's Document ID, read off files known to be on it; "" if none tells it."""
        for attachment in known:
            if _SYS_ID_RE.fullmatch(attachment.document_id):
                return attachment.document_id
        ids = [a.sys_id for a in known if _SYS_ID_RE.fullmatch(a.sys_id)][:50]
        if ids:
            rows = await self.list_records(ATTACHMENT_TABLE, query=f"sys_idIN{'@'.join(ids)}",
                                           fields=_ATTACHMENT_FIELDS, limit=len(ids), exclude_reference_link=True)
            for row in rows:
                doc_id = as_str(row.get("record_document_id"))
                if as_str(row.get("sys_id")) in ids and _SYS_ID_RE.fullmatch(doc_id):
                    return doc_id
        for attachment in known:
            if attachment.sys_id:
                continue
            matches = _match_rows([attachment], await self._rows_like(attachment, since), since, with_ids=True,
                                  every=True)
            if len(matches) == 1 and _SYS_ID_RE.fullmatch(matches[0].document_id):
                return matches[0].document_id
        return ""

    async def _rows_like(self, file: Attachment, since: str) -> list[dict[str, Any]]:
        """sys_attachment rows of this size (and name, where it can go into a query), since `since`."""
        query = f"size_bytes={file.size}"
        name = clean_file_name(file.name)
        if not any(c in name for c in "^@\n\r"):
            query += f"^file_name={name}"
        if since:
            query += f"^sys_created_at>={since}"
        return await self.list_records(ATTACHMENT_TABLE, query=query + "^ORDERBYsys_created_at",
                                       fields=_ATTACHMENT_FIELDS, limit=100, exclude_reference_link=True)

    async def upload_files(self, table: str, sys_id: str, files: Sequence[Upload]) -> list[Attachment]:
        parts: list[FilePart] = []
        for upload in files:
            try:
                data = await asyncio.to_thread(upload.path.read_bytes)
            except OSError as exc:
                raise TicketSystemRejected(f"cannot read {upload.name!r} for upload: {exc.strerror}") from exc
            parts.append((upload.name, upload.mime, data))
        records = await self.upload(table, sys_id, parts)
        # Bonus ids, when the undocumented answer names the new rows.
        landed = [a for a in (_attachment_of(r, with_ids=True) for r in records) if a is not None and a.sys_id]
        for attachment in landed:  # the record's Document ID, for list_attachment_names
            self._remember_document_id(table, sys_id, attachment.document_id)
        return landed


_ATTACHMENT_FIELDS = ("sys_id", "file_name", "size_bytes", "record_document_id", "sys_created_at")
_TIME_RE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _attachment_of(row: Mapping[str, Any], *, with_ids: bool) -> Attachment | None:
    try:
        size = int(as_str(row.get("size_bytes")))
    except ValueError:
        return None
    if not with_ids:
        return Attachment(as_str(row.get("file_name")), size)
    return Attachment(as_str(row.get("file_name")), size, as_str(row.get("sys_id")),
                      as_str(row.get("record_document_id")))


def _match_rows(wanted: Sequence[Attachment], rows: Sequence[Mapping[str, Any]], since: str, *,
                with_ids: bool, every: bool = False) -> list[Attachment]:
    """The wanted files the rows show (as asked for: the wanted name), each row used once;
    `every`: every matching row, not one per wanted file."""
    found: list[Attachment] = []
    left = [(seen, as_str(r.get("sys_created_at"))) for r in rows
            if (seen := _attachment_of(r, with_ids=with_ids)) is not None]
    for file in wanted:
        name = clean_file_name(file.name)
        for seen, created_at in list(left):
            if seen.name == name and seen.size == file.size and created_at >= since:
                left.remove((seen, created_at))
                found.append(Attachment(file.name, file.size, seen.sys_id, seen.document_id))
                if not every:
                    break
    return found
