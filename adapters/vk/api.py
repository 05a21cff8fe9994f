"""A thin client of VK's method API, paced to VK's per-token rate limit.

vkbottle's API would send the same requests, but brings a process-wide HTTP session, a
rescheduler that retries a broken answer without end, and per-call validation the bot does
not need; here every call is one form POST, one JSON parse, and a clear exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus

import aiohttp
from yarl import URL

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.vk.ru/method/"
DEFAULT_VERSION = "5.199"


class VkError(Exception):
    """Base of the client's failures."""


class VkApiError(VkError):
    """VK answered with an error object."""

    def __init__(self, code: int, message: str, method: str) -> None:
        super().__init__(f"{method}: VK error {code}: {message}")
        self.code = code
        self.method = method


# Errors no retry fixes: a bad token (5), no access (15, 27), the long poll off or a wrong group
# (100): the process must stop and say so.
FATAL_CODES = frozenset({5, 15, 27, 100})


class FatalVkError(VkError):
    """VK refuses the bot's configuration; retrying cannot help."""


class VkTransportError(VkError):
    """No usable answer: a network error, a timeout, a non-JSON body, HTTP 5xx."""


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: concurrent clients must not retry in step."""
    return float(min(cap, base * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0))


class TokenPacer:
    """Spreads calls over the tokens so that none goes over `rate` calls a second.

    Each call reserves the earliest free slot of the least busy token, so concurrent callers
    queue fairly instead of tripping VK's error 6 and retrying in a burst.
    """

    def __init__(self, tokens: Sequence[str], rate: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not tokens:
            raise ValueError("at least one VK token is needed")
        self.tokens = list(tokens)
        self.interval = 1.0 / rate
        self.clock = clock
        self._next = dict.fromkeys(self.tokens, 0.0)

    def reserve(self) -> tuple[str, float]:
        """A token and how long to wait before using it."""
        now = self.clock()
        token = min(self.tokens, key=self._next.__getitem__)
        at = max(now, self._next[token])
        self._next[token] = at + self.interval
        return token, at - now

    async def acquire(self) -> str:
        token, wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return token


@dataclass(frozen=True, slots=True)
class ExecuteResult:
    """What `execute` answered: the script's return value and the errors of the calls in it
    that failed (each is `false` in the value): [{"method", "error_code", "error_msg"}, ...]."""

    response: Any
    errors: Any


class VkApi:
    def __init__(self, session: aiohttp.ClientSession, tokens: Sequence[str], *,
                 api_url: str = DEFAULT_API_URL, version: str = DEFAULT_VERSION,
                 rate: float = 20.0, timeout: float = 20.0) -> None:
        self.session = session
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.version = version
        self.pacer = TokenPacer(tokens, rate)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # Built once: each method's URL (aiohttp takes a yarl.URL as it is; a str is parsed on
        # every request) and each token's tail of the form.
        self._urls: dict[str, URL] = {}
        self._auth = {token: f"&access_token={quote_plus(token)}&v={quote_plus(version)}" for token in tokens}

    def url(self, method: str) -> URL:
        url = self._urls.get(method)
        if url is None:
            url = self._urls[method] = URL(self.api_url + method)
        return url

    async def call(self, method: str, params: Mapping[str, Any]) -> Any:
        """The `response` of one method call; raises VkApiError or VkTransportError."""
        return await self.call_form(method, form_fields(params))

    async def call_form(self, method: str, form: str) -> Any:
        """As `call`, with the parameters already form-encoded ("a=1&b=2", without the token)."""
        token = await self.pacer.acquire()
        body = (form + self._auth[token] if form else self._auth[token][1:]).encode("ascii")
        try:
            async with self.session.post(self.url(method), data=body, headers=_FORM,
                                         timeout=self.timeout) as resp:
                body_text = await resp.text()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise VkTransportError(f"{method}: {exc.__class__.__name__}: {exc}") from None
        return _answer(method, status, body_text)


def _answer(method: str, status: int, body: str) -> Any:
    if status >= 500:
        raise VkTransportError(f"{method}: HTTP {status}")
    try:
        answer = json.loads(body)
    except ValueError:
        raise VkTransportError(f"{method}: HTTP {status}, not JSON: {body[:120]!r}") from None
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        error = answer["error"]
        raise VkApiError(int(error.get("error_code", 0)), str(error.get("error_msg", "")), method)
    if not isinstance(answer, dict) or "response" not in answer:
        raise VkTransportError(f"{method}: HTTP {status}, no response in {body[:120]!r}")
    if method == "execute":
        # Calls inside that failed are `false` in the response, their errors listed apart.
        return ExecuteResult(answer["response"], answer.get("execute_errors"))
    return answer["response"]


def form_fields(params: Mapping[str, Any]) -> str:
    """Parameters form-encoded, None left out."""
    return "&".join(f"{quote_plus(k)}={_quoted(_form(v))}" for k, v in params.items() if v is not None)


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@lru_cache(maxsize=512)
def _quoted_cached(value: str) -> str:
    return quote_plus(value)


def _quoted(value: str) -> str:
    """Form-encoded value; keyboards repeat from message to message, so long values are cached
    (quoting a keyboard's JSON character by character was a tenth of the bot's CPU)."""
    return _quoted_cached(value) if len(value) > 64 else quote_plus(value)


def _form(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
