"""Connections to the callback endpoint, held to what the process can afford.

Each open connection costs a file descriptor. A client that opens many and never finishes a
request (headers or body a byte every few seconds) would otherwise keep them until the process
can open nothing: not VK's next event, not the database, not a reply. So:
- a connection must have delivered a whole request (headers and body) within `request_timeout`
  of opening, and the next one within as long after a response on a kept-alive connection;
- at most `limit` connections are open at once. The guard accepts connections itself and stops
  accepting at the limit (the kernel queues the rest), so it never runs the process out of
  descriptors; a connection waiting to be accepted takes the place of the open one that has
  waited longest without a request in work. A request in work (VK's takes about a millisecond)
  is never closed for a slow one;
- what it closed is logged once a second at most, in one line, never per connection.

It wraps the server's protocol factory (aiohttp's request handler is an asyncio protocol) and
learns, from a middleware, when a request's body is in and when its answer is out.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0  # seconds for a whole request to arrive
SWEEP_EVERY = 1.0
BACKLOG = 128  # connections the kernel queues while the guard is not accepting
# Descriptors kept for everything else the process opens: the database, VK's and SimpleOne's
# connection pools, the mail server, spooled files, the log.
RESERVED_DESCRIPTORS = 64
MOST_CONNECTIONS = 4096
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_RETRY = 1.0  # seconds to stop accepting when the system has no descriptor or memory for one


def descriptor_limit(wanted: int = 65536) -> int:
    """The process's limit on open files, first raised towards its hard limit (as Go's runtime
    does at start): the soft limit of 1 024 many systems set is a default, not a decision."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d (%s)", soft, target, exc)
    return wanted if soft == resource.RLIM_INFINITY else int(soft)


def connection_limit(descriptors: int) -> int:
    """How many connections the endpoint may hold with `descriptors` open files at most."""
    return max(8, min(MOST_CONNECTIONS, descriptors - max(RESERVED_DESCRIPTORS, descriptors // 4)))


@dataclass(slots=True, eq=False)
class _Connection:
    transport: asyncio.BaseTransport
    deadline: float  # monotonic time by which a whole request must be in (while none is in work)
    working: int = 0  # requests in work (pipelined ones are handled one at a time, but count)
    closing: bool = False  # closed by the guard; its descriptor goes when the loop closes it


class ConnectionGuard:
    def __init__(self, *, limit: int, request_timeout: float = REQUEST_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or request_timeout <= 0:
            raise ValueError("a connection guard needs limit >= 1 and request_timeout > 0")
        self.limit = limit
        self.request_timeout = request_timeout
        self.clock = clock
        # Insertion order is opening order: the first idle one found has waited longest.
        self._open: dict[asyncio.BaseTransport, _Connection] = {}
        self._accepting: set[int] = set()  # descriptors accepted whose protocol has not started yet
        self.timed_out = 0  # closed for not delivering a request in time
        self.made_room = 0  # closed for a connection waiting to be accepted
        self.full = 0  # times every connection was in work and accepting waited
        self._listener: socket.socket | None = None
        self._reading = False
        self._factory: Callable[[], asyncio.Protocol] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeping: asyncio.Task[None] | None = None

    @property
    def open(self) -> int:
        return len(self._open)

    # -- accepting ---------------------------------------------------------------------------

    async def listen(self, protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int) -> None:
        """Accept connections on host:port for the server whose protocols `protocol_factory`
        makes (aiohttp's `runner.server`), until close()."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        self._listener = socket.create_server(address[:2], family=family, backlog=BACKLOG)
        self._listener.setblocking(False)
        inner = protocol_factory
        self._factory = lambda: _GuardedProtocol(self, inner())
        self._resume()
        self._sweeping = asyncio.create_task(self.run())

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    async def close(self) -> None:
        """Stop accepting (connections already open are the server's to finish)."""
        self._pause()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._sweeping is not None:
            self._sweeping.cancel()
            await asyncio.gather(self._sweeping, return_exceptions=True)

    def _holding(self) -> int:
        return len(self._open) + len(self._accepting)

    def _resume(self) -> None:
        if self._listener is not None and not self._reading:
            asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept_ready)
            self._reading = True

    def _pause(self) -> None:
        if self._listener is not None and self._reading:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._reading = False

    def _accept_ready(self) -> None:
        assert self._listener is not None and self._factory is not None
        loop = asyncio.get_running_loop()
        waiting = True  # the listener is readable: a connection waits to be accepted
        while True:
            if self._holding() >= self.limit:
                # Full, and one waits: close the longest idle connection and accept when its
                # descriptor is free (connection_lost resumes); if every one is in work, wait
                # for one to end (request_ended resumes). Full with none known to wait: the
                # listener wakes this again if one does.
                if waiting:
                    if not self._make_room():
                        self.full += 1
                    self._pause()
                return
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                # Out of descriptors or memory all the same (other parts of the process, other
                # processes): wait a second rather than spin on the ready listener.
                log.error("accepting a callback connection failed: %s; trying again in %.0f s", exc, ACCEPT_RETRY)
                self._pause()
                loop.call_later(ACCEPT_RETRY, self._resume)
                return
            waiting = False
            conn.setblocking(False)
            self._accepting.add(conn.fileno())
            task = loop.create_task(self._start(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start(self, conn: socket.socket) -> None:
        assert self._factory is not None
        descriptor = conn.fileno()
        try:
            await asyncio.get_running_loop().connect_accepted_socket(self._factory, conn)
        except OSError as exc:
            log.debug("an accepted connection could not start: %s", exc)
            conn.close()
        finally:
            self._accepting.discard(descriptor)  # if its protocol did not say it opened

    def _make_room(self) -> bool:
        """Close the open connection that has waited longest with no request in work."""
        if any(c.closing for c in self._open.values()):
            return True  # room is being made already
        idle = next((c for c in self._open.values() if c.working == 0), None)
        if idle is None:
            return False
        self._drop(idle)
        self.made_room += 1
        return True

    def _drop(self, connection: _Connection) -> None:
        connection.closing = True
        connection.transport.abort()  # type: ignore[attr-defined]  # a socket transport

    # -- what the connections do -------------------------------------------------------------

    def opened(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._accepting.discard(sock.fileno())
        self._open[transport] = _Connection(transport, self.clock() + self.request_timeout)

    def closed(self, transport: asyncio.BaseTransport) -> None:
        if self._open.pop(transport, None) is not None and self._holding() < self.limit:
            self._resume()

    def request_began(self, transport: asyncio.BaseTransport | None) -> None:
        connection = self._open.get(transport) if transport is not None else None
        if connection is not None:
            connection.working += 1

    def request_ended(self, transport: asyncio.BaseTransport | None) -> None:
        connection = self._open.get(transport) if transport is not None else None
        if connection is not None:
            connection.working = max(0, connection.working - 1)
            if connection.working == 0:
                connection.deadline = self.clock() + self.request_timeout
                if not self._reading and self._holding() >= self.limit:
                    self._resume()  # a connection waiting to be accepted may take this one's place

    def sweep(self) -> int:
        """Close the connections that have not delivered a request in time; how many."""
        now = self.clock()
        late = [c for c in self._open.values() if c.working == 0 and not c.closing and c.deadline <= now]
        for connection in late:
            self._drop(connection)
        self.timed_out += len(late)
        return len(late)

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """A request is in work once its body is in: reading a slow body is waiting, not work."""
        if request.can_read_body:
            try:
                await request.read()  # kept by the request: the handler reads it again at no cost
            except ConnectionError:
                return web.Response(status=400, text="connection lost")  # nobody to hear it
        self.request_began(request.transport)
        try:
            return await handler(request)
        finally:
            self.request_ended(request.transport)

    async def run(self, every: float = SWEEP_EVERY) -> None:
        """Sweep until cancelled, and say once a second at most what was closed and why."""
        reported = (0, 0, 0)
        while True:
            await asyncio.sleep(every)
            self.sweep()
            counts = (self.timed_out, self.made_room, self.full)
            if counts != reported:
                late, room, full = (now - before for now, before in zip(counts, reported, strict=True))
                log.warning("callback connections: %d closed for sending no whole request within %g s, "
                            "%d closed to make room for newer ones%s; %d open of at most %d",
                            late, self.request_timeout, room,
                            f", all in work {full} time(s) (new ones waited)" if full else "",
                            len(self._open), self.limit)
                reported = counts


class _GuardedProtocol(asyncio.Protocol):
    """The server's protocol, with the guard told when its connection opens and closes."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.guard.opened(transport)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            if self.transport is not None:
                self.guard.closed(self.transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
