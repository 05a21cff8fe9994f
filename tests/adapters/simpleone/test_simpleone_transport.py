"""Each setting of the SimpleOne client's HTTP layer acts: TLS checks, the CA bundle, the
connection cap and the wait for a free connection, keep-alive, connect and read timeouts, and no
proxy taken from the environment. Against small servers on loopback that count what they see."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig
from engine.ports import TicketSystemUnavailable

EMPTY = {"status": "OK", "data": []}
TOKEN = "t" * 32


@dataclass
class Seen:
    """What a canned server saw."""

    delay: float = 0.0  # how long each answer is held back
    requests: list[tuple[str, str]] = field(default_factory=list)
    peers: set[int] = field(default_factory=set)  # client ports: one per connection
    busy: int = 0
    most_busy: int = 0


async def _serve(seen: Seen, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, str]:
    async def answer(request: web.Request) -> web.StreamResponse:
        seen.requests.append((request.method, request.path_qs))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            seen.peers.add(int(peer[1]))
        seen.busy += 1
        seen.most_busy = max(seen.most_busy, seen.busy)
        try:
            await asyncio.sleep(seen.delay)
        finally:
            seen.busy -= 1
        return web.json_response(EMPTY)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"{'https' if tls else 'http'}://127.0.0.1:{port}"


Server = Callable[..., Awaitable[tuple[Seen, str]]]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    runners: list[web.AppRunner] = []

    async def start(tls: ssl.SSLContext | None = None, delay: float = 0.0) -> tuple[Seen, str]:
        seen = Seen(delay=delay)
        runner, url = await _serve(seen, tls)
        runners.append(runner)
        return seen, url

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., SimpleOneClient]]:
    made: list[SimpleOneClient] = []

    def make(url: str, **options: Any) -> SimpleOneClient:
        client = SimpleOneClient(SimpleOneConfig(url, token=TOKEN, **options))
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.close()


# --------------------------------------------------------------------------- TLS


async def test_a_certificate_no_trusted_ca_signed_is_refused_by_default(
    server: Server, server_tls: ssl.SSLContext, clients: Callable[..., SimpleOneClient]
) -> None:
    seen, url = await server(tls=server_tls)
    with pytest.raises(TicketSystemUnavailable, match="certificate") as failed:
        await clients(url).list_records("itsm_incident")
    assert failed.value.maybe_done is False  # refused before anything was sent
    assert seen.requests == []


async def test_the_configured_ca_bundle_is_trusted_and_only_it(
    server: Server, server_tls: ssl.SSLContext, ca: trustme.CA, tmp_path: Path,
    clients: Callable[..., SimpleOneClient],
) -> None:
    seen, url = await server(tls=server_tls)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    assert await clients(url, ca_bundle=bundle).list_records("itsm_incident") == []
    assert len(seen.requests) == 1

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(TicketSystemUnavailable, match="certificate"):
        await clients(url, ca_bundle=other).list_records("itsm_incident")
    assert len(seen.requests) == 1


async def test_verification_off_is_an_explicit_switch(
    server: Server, server_tls: ssl.SSLContext, clients: Callable[..., SimpleOneClient]
) -> None:
    seen, url = await server(tls=server_tls)
    assert await clients(url, verify_tls=False).list_records("itsm_incident") == []
    assert len(seen.requests) == 1


# --------------------------------------------------------------------------- connections


async def test_max_connections_caps_the_connections_in_use(
    server: Server, clients: Callable[..., SimpleOneClient]
) -> None:
    seen, url = await server(delay=0.1)
    client = clients(url, max_connections=2)
    await asyncio.gather(*(client.list_records("itsm_incident") for _ in range(6)))
    assert len(seen.requests) == 6
    assert seen.most_busy == 2
    assert len(seen.peers) == 2  # the two connections carried all six


async def test_idle_connections_are_kept_and_reused(server: Server, clients: Callable[..., SimpleOneClient]) -> None:
    seen, url = await server()
    client = clients(url)
    for _ in range(5):
        await client.list_records("itsm_incident")
    assert len(seen.requests) == 5
    assert len(seen.peers) == 1


async def test_pool_timeout_bounds_the_wait_for_a_free_connection(
    server: Server, clients: Callable[..., SimpleOneClient]
) -> None:
    seen, url = await server(delay=1.0)
    client = clients(url, max_connections=1, pool_timeout=0.2)
    first = asyncio.create_task(client.list_records("itsm_incident"))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(TicketSystemUnavailable, match=r"no free connection within 0\.2 s") as failed:
        await client.create_record("itsm_incident", {"subject": "x"})
    assert time.monotonic() - started < 0.9  # did not wait for the first request to end
    assert failed.value.maybe_done is False
    assert await first == []
    assert [method for method, _ in seen.requests] == ["GET"]  # the create never went out


# --------------------------------------------------------------------------- timeouts


async def test_connect_timeout_bounds_a_tls_handshake_that_never_ends(
    clients: Callable[..., SimpleOneClient],
) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts the connection and never answers the handshake
        writer.close()

    silent = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        client = clients(f"https://127.0.0.1:{port}", connect_timeout=0.3, read_timeout=30)
        started = time.monotonic()
        with pytest.raises(TicketSystemUnavailable, match=r"timed out \(connect\)") as failed:
            await client.list_records("itsm_incident")
        assert time.monotonic() - started < 5
        assert failed.value.maybe_done is False
    finally:
        silent.close()


async def test_read_timeout_bounds_a_silent_server(server: Server, clients: Callable[..., SimpleOneClient]) -> None:
    seen, url = await server(delay=5.0)
    client = clients(url, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TicketSystemUnavailable, match=r"timed out \(read\)") as failed:
        await client.create_record("itsm_incident", {"subject": "x"})
    assert time.monotonic() - started < 3
    assert failed.value.maybe_done is True
    assert [method for method, _ in seen.requests] == ["POST"]  # the server had it


# --------------------------------------------------------------------------- proxies


async def test_proxy_variables_in_the_environment_are_not_used(
    server: Server, clients: Callable[..., SimpleOneClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_seen, proxy_url = await server()
    seen, url = await server()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert await clients(url).list_records("itsm_incident") == []
    assert len(seen.requests) == 1
    assert proxy_seen.requests == []


def test_urls_are_parsed_once_and_kept_within_bounds() -> None:
    from yarl import URL

    from adapters.simpleone.transport import URLS_KEPT, AiohttpTransport

    transport = AiohttpTransport(tls=False, max_connections=1, connect_timeout=1, read_timeout=1, pool_timeout=1)
    text = "https://sd.example/rest/v1/table/itsm_incident/1686"
    assert transport._url(text) == URL(text) and transport._url(text) is transport._url(text)
    for i in range(URLS_KEPT + 10):
        assert str(transport._url(f"https://sd.example/rest/v1/table/task/{i}")) == f"https://sd.example/rest/v1/table/task/{i}"
    assert len(transport._urls) <= URLS_KEPT
