"""The SimpleOne client's HTTP layer: aiohttp, one pooled session per client, HTTP/1.1.

Why aiohttp directly: on the client's own workload (tickets created, listed, commented and read
back against the emulator on loopback, `bench/simpleone_client.py`) it takes a third (20 requests
at once) to a half (one at a time) of the CPU per request that httpx took over an aiohttp
transport, and a tenth to a third of what httpx took over its own tuned transport (httpcore's
pool rechecks every connection for every request).

What each setting does (tests/adapters/simpleone/test_simpleone_transport.py shows each acting):
- TLS is verified against the system's CA store, or against only the given CA bundle; turning
  verification off is a separate, explicit switch.
- max_connections caps the open connections; a request waits at most pool_timeout for one of
  them to be free, and is then refused before anything is sent.
- connect_timeout bounds the TCP connect and the TLS handshake; read_timeout the silence while
  the answer is awaited or read, from the end of the request's body on. aiohttp has no write
  timeout: a body the server stops reading is ended by the caller's deadline (the outbox times
  every attempt), so the client has no write_timeout setting that would do nothing.
- Idle connections are kept KEEPALIVE seconds and reused; redirects are not followed.
- No proxy: HTTP(S)_PROXY, ALL_PROXY and .netrc are not read (aiohttp's trust_env=False), so the
  bearer token and tickets go to SimpleOne directly, whatever the service's environment holds.
- No cookie jar: every request is authorised by its bearer token alone.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import aiohttp
from yarl import URL

__all__ = ["KEEPALIVE", "AiohttpTransport", "HttpAnswer", "HttpFailure", "HttpRequest", "Transport"]

KEEPALIVE = 15.0  # seconds an idle connection is kept for reuse
URLS_KEPT = 512


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as the client means it; the body is already encoded."""

    method: str
    url: str  # absolute, without a query string
    params: Sequence[tuple[str, str]] = ()
    headers: Sequence[tuple[str, str]] = ()
    body: bytes | None = None


class HttpAnswer:
    """An answer: status, body, and the media type and charset of its Content-Type."""

    __slots__ = ("_text", "charset", "content", "content_type", "status")

    def __init__(self, status: int, content: bytes = b"", content_type: str = "", charset: str | None = None) -> None:
        self.status = status
        self.content = content
        self.content_type = content_type  # the media type alone, lower case ("application/json")
        self.charset = charset
        self._text: str | None = None

    @property
    def text(self) -> str:
        """The body decoded by its charset (UTF-8 when none is named or it is unknown)."""
        if self._text is None:
            try:
                self._text = self.content.decode(self.charset or "utf-8", "replace")
            except LookupError:
                self._text = self.content.decode("utf-8", "replace")
        return self._text


class HttpFailure(Exception):
    """No answer. maybe_sent: whether the request may have reached the server."""

    def __init__(self, message: str, *, maybe_sent: bool) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class Transport(Protocol):
    async def send(self, request: HttpRequest) -> HttpAnswer: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    def __init__(
        self,
        *,
        tls: ssl.SSLContext | Literal[False],
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        pool_timeout: float,
    ) -> None:
        """tls: the context to verify servers with, or False to verify nothing."""
        self._tls = tls
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        # The connector never queues (the semaphore lets through only as many as it holds), so
        # waiting for a connection is one bounded wait here.
        self._slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None
        # Parsed URLs by their text: aiohttp takes a yarl.URL as it is, and parses a str (by
        # regex) on every request. Bounded: a record's URL names its sys_id.
        self._urls: dict[str, URL] = {}

    def _url(self, text: str) -> URL:
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) >= URLS_KEPT:
                self._urls.clear()
            url = self._urls[text] = URL(text)
        return url

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ssl=self._tls,
                                             keepalive_timeout=KEEPALIVE)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def send(self, request: HttpRequest) -> HttpAnswer:
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise HttpFailure(f"no free connection within {self._pool_timeout:g} s "
                              f"({self._max_connections} in use)", maybe_sent=False) from None
        try:
            async with self._open().request(
                request.method, self._url(request.url), params=list(request.params), headers=list(request.headers),
                data=request.body, allow_redirects=False,
            ) as response:
                content = await response.read()
                return HttpAnswer(response.status, content, response.content_type.lower(), response.charset)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise HttpFailure(f"TLS certificate refused: {exc.certificate_error}", maybe_sent=False) from exc
        except aiohttp.ClientConnectorError as exc:  # refused, unreachable, TLS failures
            raise HttpFailure(f"cannot connect: {exc}", maybe_sent=False) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise HttpFailure("timed out (connect)", maybe_sent=False) from exc
        except aiohttp.SocketTimeoutError as exc:
            raise HttpFailure("timed out (read)", maybe_sent=True) from exc
        except TimeoutError as exc:
            raise HttpFailure("timed out", maybe_sent=True) from exc
        except aiohttp.ClientError as exc:  # a dropped connection, a broken answer
            raise HttpFailure(f"connection dropped ({type(exc).__name__}: {exc})", maybe_sent=True) from exc
        finally:
            self._slots.release()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
