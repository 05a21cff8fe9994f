"""The SimpleOne client's HTTP stack on the bot's own SimpleOne work, variants interleaved in one run.

Every variant is the same SimpleOneClient (retries, re-login, answer checks); only the transport
under it differs:
  aiohttp         the shipped one: aiohttp directly (adapters/simpleone/transport.py)
  httpx           httpx with its own transport, tuned: HTTP/1.1 only, the same connection cap and
                  keep-alive, the same TLS context and timeouts, no proxy from the environment
  httpx-asyncio   the same, with httpcore's network I/O on asyncio streams instead of anyio's
  httpx+aiohttp   what the client was before: httpx's API, the bytes moved by aiohttp

Each user does what the bot does for a ticket: create it, list the caller's tickets over two
tables, comment, read it back (5 requests). The SimpleOne emulator runs in a child process, new
for every phase (so each sees the same data); this process runs only the client, so its CPU time
is the client's. Phases go A B C D D C B A ...; medians and ratios to the first variant.

Run: .venv/bin/python bench/simpleone_client.py [--users 20] [--rounds 10] [--repeats 2] [--tls]
(httpx, httpcore and, for --tls, trustme come with the test extra.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpcore
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig  # noqa: E402
from adapters.simpleone.transport import KEEPALIVE, HttpAnswer, HttpFailure, HttpRequest, Transport  # noqa: E402
from bench.machine import cpu_sample  # noqa: E402

INCIDENT, REQUEST = "itsm_incident", "itsm_request"
PER_ROUND = 5
VARIANTS = ("aiohttp", "httpx", "httpx-asyncio", "httpx+aiohttp")


# --------------------------------------------------------------------------- httpx under the client


class _AsyncioStream(httpcore.AsyncNetworkStream):
    """httpcore's network stream on asyncio streams: no anyio in the byte path."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout("read timed out") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout("write timed out") from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:  # noqa: ASYNC109
        await self._writer.start_tls(ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=timeout)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # what the pool asks of every idle connection at every request
            sock = self._writer.get_extra_info("socket")
            return sock is not None and _readable(sock)
        if info in ("ssl_object", "socket"):
            return self._writer.get_extra_info(info)
        return None


def _readable(sock: Any) -> bool:
    import select

    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class _AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout("connect timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class HttpxTransport:
    """The client's Transport on httpx, set up as the shipped one is."""

    def __init__(self, config: SimpleOneConfig, *, asyncio_streams: bool = False) -> None:
        tls = config.tls_context()
        transport = httpx.AsyncHTTPTransport(
            verify=tls, http1=True, http2=False, trust_env=False,
            limits=httpx.Limits(max_connections=config.max_connections,
                                max_keepalive_connections=config.max_connections, keepalive_expiry=KEEPALIVE))
        if asyncio_streams:
            # httpcore takes a network backend; httpx does not pass one through, hence the swap.
            transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=tls or None, max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections, keepalive_expiry=KEEPALIVE,
                http1=True, http2=False, network_backend=_AsyncioBackend())
        self._http = httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False,
            timeout=httpx.Timeout(connect=config.connect_timeout, read=config.read_timeout,
                                  write=config.read_timeout, pool=config.pool_timeout))

    async def send(self, request: HttpRequest) -> HttpAnswer:
        try:
            r = await self._http.request(request.method, request.url, params=list(request.params),
                                         headers=list(request.headers), content=request.body)
        except httpx.ConnectError as exc:
            raise HttpFailure(f"cannot connect: {exc}", maybe_sent=False) from exc
        except httpx.HTTPError as exc:
            raise HttpFailure(f"{type(exc).__name__}: {exc}", maybe_sent=True) from exc
        media = r.headers.get("content-type", "").split(";")[0].strip().lower()
        return HttpAnswer(r.status_code, r.content, media, r.charset_encoding)

    async def close(self) -> None:
        await self._http.aclose()


class _OldAiohttpTransport(httpx.AsyncBaseTransport):
    """What the client had before: an httpx transport moving the bytes with aiohttp."""

    def __init__(self, tls: ssl.SSLContext | bool, max_connections: int) -> None:
        self._ssl, self._max = tls, max_connections
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max, ssl=self._ssl), auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"))
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                   if k.lower() not in (b"host", b"content-length", b"transfer-encoding")]
        body = await request.aread()
        async with self._session.request(request.method, str(request.url), headers=headers, data=body or None,
                                         allow_redirects=False) as response:
            content = await response.read()
            return httpx.Response(status_code=response.status, content=content, request=request,
                                  headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers])

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxOverAiohttp(HttpxTransport):
    def __init__(self, config: SimpleOneConfig) -> None:
        self._http = httpx.AsyncClient(transport=_OldAiohttpTransport(config.tls_context(), config.max_connections),
                                       follow_redirects=False)


def make_client(variant: str, config: SimpleOneConfig) -> SimpleOneClient:
    transport: Transport | None = None
    if variant == "httpx":
        transport = HttpxTransport(config)
    elif variant == "httpx-asyncio":
        transport = HttpxTransport(config, asyncio_streams=True)
    elif variant == "httpx+aiohttp":
        transport = HttpxOverAiohttp(config)
    return SimpleOneClient(config, transport=transport)


# --------------------------------------------------------------------------- the run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(port: int, cert: str | None, key: str | None) -> None:
    """The child process: the emulator, over TLS when given a certificate."""
    from aiohttp import web

    from emulators.simpleone.server import build_app
    from emulators.simpleone.state import EmulatorState

    runner = web.AppRunner(build_app(EmulatorState(username="bot", password="bot-password")), access_log=None)
    await runner.setup()
    context = None
    if cert and key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def user(client: SimpleOneClient, caller: str, rounds: int) -> None:
    for n in range(rounds):
        ref = await client.create_ticket(INCIDENT, {"subject": f"bench {n}", "description": "Не печатает принтер",
                                                    "caller": caller})
        await client.list_tickets(caller, [INCIDENT, REQUEST], active_only=True, limit=5)
        await client.add_comment(INCIDENT, ref.sys_id, "additional_comments", "Всё ещё не печатает")
        await client.get_tickets(INCIDENT, [ref.sys_id])


async def phase(variant: str, users: int, rounds: int, tls: tuple[str, str, str] | None) -> tuple[float, float]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port)]
    if tls:
        command += ["--cert", tls[1], "--key", tls[2]]
    server = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        assert server.stdout is not None
        await asyncio.wait_for(server.stdout.readline(), 30)
        url = f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
        config = SimpleOneConfig(url, username="bot", password="bot-password", ca_bundle=tls[0] if tls else None,
                                 read_timeout=30)
        callers = []
        async with aiohttp.ClientSession() as control:
            for n in range(users):
                async with control.post(f"{url}/_emulator/users", ssl=config.tls_context(),
                                        json={"email": f"u{n}@x.ru", "first_name": "B", "last_name": str(n)}) as r:
                    callers.append(str((await r.json())["sys_id"]))
        client = make_client(variant, config)
        try:
            await asyncio.gather(*(user(client, c, 1) for c in callers))  # log in, open the connections
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(user(client, c, rounds) for c in callers))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            await client.close()
        requests = users * rounds * PER_ROUND
        return requests / wall, cpu / requests
    finally:
        server.terminate()
        await server.wait()


async def main(variants: list[str], users: int, rounds: int, repeats: int, tls: bool) -> None:
    certs: tuple[str, str, str] | None = None
    if tls:
        import trustme

        folder = tempfile.mkdtemp(prefix="simpleone-bench-")
        ca = trustme.CA()
        leaf = ca.issue_cert("localhost")
        ca.cert_pem.write_to_path(f"{folder}/ca.pem")
        leaf.cert_chain_pems[0].write_to_path(f"{folder}/cert.pem")
        leaf.private_key_pem.write_to_path(f"{folder}/key.pem")
        certs = (f"{folder}/ca.pem", f"{folder}/cert.pem", f"{folder}/key.pem")
    print(f"SimpleOne client, {users} users at once × {rounds} rounds × {PER_ROUND} requests, "
          f"{'HTTPS' if tls else 'HTTP'} on loopback; variants interleaved", flush=True)
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    before = cpu_sample()
    for r in range(repeats):
        for v in variants if r % 2 == 0 else variants[::-1]:
            rate, cpu = await phase(v, users, rounds, certs)
            results[v].append((rate, cpu))
            print(f"  round {r + 1} {v:<14} {rate:7.0f} requests/s  {cpu * 1e3:6.3f} ms CPU per request", flush=True)
    after = cpu_sample()
    base = variants[0]
    base_rate = statistics.median(x[0] for x in results[base])
    base_cpu = statistics.median(x[1] for x in results[base])
    print(f"medians of {repeats}, ratios to {base}:")
    for v in variants:
        rate = statistics.median(x[0] for x in results[v])
        cpu = statistics.median(x[1] for x in results[v])
        print(f"  {v:<14} {rate:7.0f} requests/s ({rate / base_rate:4.2f}×)   "
              f"{cpu * 1e3:6.3f} ms CPU per request ({cpu / base_cpu:4.2f}×)")
    if before and after:
        busy = (after[0] - before[0]) / max(1, after[1] - before[1])
        print(f"(the machine's CPUs were {busy:.0%} busy during the run, this bench and its server included; "
              f"{os.cpu_count()} CPUs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--users", type=int, default=20, help="users at once")
    parser.add_argument("--rounds", type=int, default=10, help="tickets per user in the measured part")
    parser.add_argument("--repeats", type=int, default=2, help="phases per variant")
    parser.add_argument("--tls", action="store_true", help="HTTPS on loopback with a throwaway CA (needs trustme)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.cert, args.key))
    else:
        unknown = set(args.variants.split(",")) - set(VARIANTS)
        if unknown:
            parser.error(f"unknown variants {sorted(unknown)}")
        asyncio.run(main(args.variants.split(","), args.users, args.rounds, args.repeats, args.tls))
