"""Backends for the contract suites in this directory.

Each `*_contract.py` module here is a test module written against one port only: the storage
ports (sessions, inbox, locks, auth, outbox, notices; storage_contract.py what spans them),
Mailer, FileSpool. The fixtures below run every test in it once per backend, the way aiogram
tests its FSM storages. The modules are collected by `pytest_collect_file` below, since their
names do not match pytest's `test_*.py`.

Adding a backend is one entry in a registry dict (see `postgres` below: a fresh database per
test on the server SUPPORTBOT_TEST_POSTGRES_URL names).

`open` must open the SAME database on every call (tests close and reopen it to check
durability); `persistent=False` marks a backend whose data ends with close (":memory:").
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from adapters.smtp import SmtpMailer
from adapters.spool import DiskSpool
from adapters.storage.sqlite import open_sqlite
from emulators.mail_sink import ConsoleMailSink, MemoryMailSink
from engine.ports import FileSpool, Mailer, MailMessage

pytest.register_assert_rewrite(
    "sessions_contract", "inbox_contract", "locks_contract", "auth_contract", "outbox_contract", "notices_contract",
    "storage_contract", "mailer_contract", "spool_contract", "privacy_contract",
)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # An explicitly named file is already collected by pytest itself; do not add it twice.
    if file_path.name.endswith("_contract.py") and not parent.session.isinitpath(file_path):
        module: pytest.Module = pytest.Module.from_parent(parent, path=file_path)
        return module
    return None


# --------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class StorageBackend:
    # Opens the backend's one database (again); the caller closes what it opened.
    open: Callable[[], Awaitable[Any]]
    persistent: bool


@asynccontextmanager
async def sqlite_file(tmp_path: Path) -> AsyncIterator[StorageBackend]:
    path = tmp_path / "contract.db"
    yield StorageBackend(open=lambda: open_sqlite(path), persistent=True)


@asynccontextmanager
async def sqlite_memory(tmp_path: Path) -> AsyncIterator[StorageBackend]:
    yield StorageBackend(open=lambda: open_sqlite(":memory:"), persistent=False)


@asynccontextmanager
async def postgres(tmp_path: Path) -> AsyncIterator[StorageBackend]:
    """A fresh database on the server SUPPORTBOT_TEST_POSTGRES_URL names, dropped afterwards.
    Without it the backend is skipped, saying so — except in CI, where that is a failure."""
    admin = os.environ.get("SUPPORTBOT_TEST_POSTGRES_URL")
    if not admin:
        if os.environ.get("CI"):
            pytest.fail("CI must test PostgreSQL: SUPPORTBOT_TEST_POSTGRES_URL is not set (see .ci/run)")
        from tests.postgres_db import SKIP_REASON

        pytest.skip(SKIP_REASON)
    from adapters.storage.postgres import open_postgres
    from tests.postgres_db import create_scratch_database, drop_database

    dsn = await create_scratch_database(admin)
    try:
        yield StorageBackend(open=lambda: open_postgres(dsn), persistent=True)
    finally:
        await drop_database(admin, dsn)


STORAGE_BACKENDS: dict[str, Callable[[Path], Any]] = {
    "sqlite-file": sqlite_file,
    "sqlite-memory": sqlite_memory,
    "postgres": postgres,
}


@pytest.fixture(params=sorted(STORAGE_BACKENDS))
async def storage_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    async with STORAGE_BACKENDS[request.param](tmp_path) as backend:
        yield backend


@pytest.fixture
async def storage(storage_backend: StorageBackend) -> AsyncIterator[Any]:
    opened = await storage_backend.open()
    yield opened
    await opened.close()  # close is idempotent: tests that closed it themselves are fine


# --------------------------------------------------------------------------- mail


@dataclass(frozen=True)
class MailBackend:
    mailer: Mailer
    # What the far side received so far, in order, as the port's own message type.
    received: Callable[[], list[MailMessage]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class CollectingHandler:
    """An aiosmtpd handler that keeps every accepted message."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def parsed(self) -> list[EmailMessage]:
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(e.original_content) for e in self.envelopes]


def as_mail_message(message: EmailMessage) -> MailMessage:
    body = message.get_content().replace("\r\n", "\n")  # SMTP carries CRLF line ends
    return MailMessage(to=str(message["To"]), subject=str(message["Subject"]), body=body.rstrip("\n"))


@asynccontextmanager
async def smtp_backend() -> AsyncIterator[MailBackend]:
    handler = CollectingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), server_hostname="test.local")
    await asyncio.to_thread(controller.start)
    try:
        mailer = SmtpMailer("127.0.0.1", controller.port, from_addr="bot@test.local", timeout=5)
        yield MailBackend(mailer, lambda: [as_mail_message(m) for m in handler.parsed()])
    finally:
        await asyncio.to_thread(controller.stop)


@asynccontextmanager
async def memory_backend() -> AsyncIterator[MailBackend]:
    sink = MemoryMailSink()
    yield MailBackend(sink, lambda: list(sink.messages))


def parse_console(text: str) -> list[MailMessage]:
    """Read back what ConsoleMailSink printed."""
    out = []
    for block in text.split("--- mail to ")[1:]:
        head, _, rest = block.partition(" ---\n")
        subject_line, _, body = rest.partition("\n\n")
        body = body.rsplit("--- end of mail ---", 1)[0]
        out.append(MailMessage(head, subject_line.removeprefix("Subject: "), body.rstrip("\n")))
    return out


@asynccontextmanager
async def console_backend() -> AsyncIterator[MailBackend]:
    stream = io.StringIO()
    yield MailBackend(ConsoleMailSink(stream), lambda: parse_console(stream.getvalue()))


MAIL_BACKENDS: dict[str, Callable[[], Any]] = {
    "smtp": smtp_backend,
    "memory": memory_backend,
    "console": console_backend,
}


@pytest.fixture(params=sorted(MAIL_BACKENDS))
async def mail_backend(request: pytest.FixtureRequest) -> AsyncIterator[MailBackend]:
    async with MAIL_BACKENDS[request.param]() as backend:
        yield backend


# --------------------------------------------------------------------------- files


SPOOL_BACKENDS: dict[str, Callable[[Path], FileSpool]] = {
    "disk": lambda tmp_path: DiskSpool(tmp_path / "spool"),
}


@pytest.fixture(params=sorted(SPOOL_BACKENDS))
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> FileSpool:
    return SPOOL_BACKENDS[request.param](tmp_path)
