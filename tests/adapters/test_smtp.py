"""SmtpMailer against a real SMTP server (aiosmtpd) on loopback: plain, AUTH, STARTTLS, TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.smtp import SmtpMailer
from engine.ports import MailError, MailMessage, MailRecipientRefused

FROM = "support-bot@ranepa.ru"
USER, PASSWORD = "bot", "s3cret-Pa55-do-not-leak"
# aiosmtpd warns about AUTH over plain loopback, which is exactly what some tests want.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

MAIL = MailMessage(
    "ivanov-ii@ranepa.ru",
    "Код для входа: 482913",
    "Здравствуйте!\nВаш код — 482913.\nЁлки-палки, юникод работает.",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Handler:
    """Keeps accepted mail; refuses RCPT for addresses starting with "nobody"."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("nobody"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def message(self, index: int = -1) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.envelopes[index].original_content)
        assert isinstance(parsed, EmailMessage)
        return parsed


@asynccontextmanager
async def smtp_server(**kwargs: Any) -> AsyncIterator[tuple[Handler, int]]:
    handler = Handler()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="test.local", **kwargs
    )
    await asyncio.to_thread(controller.start)
    try:
        yield handler, controller.port
    finally:
        await asyncio.to_thread(controller.stop)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI (no `cryptography` here)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    yield cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def decoded(message: EmailMessage) -> MailMessage:
    body = message.get_content().replace("\r\n", "\n")
    return MailMessage(str(message["To"]), str(message["Subject"]), body)


# --------------------------------------------------------------------------- delivery


async def test_russian_text_headers_and_envelope() -> None:
    async with smtp_server() as (handler, port):
        await SmtpMailer("127.0.0.1", port, from_addr=FROM).send(MAIL)

    envelope = handler.envelopes[0]
    assert envelope.mail_from == FROM
    assert envelope.rcpt_tos == [MAIL.to]
    message = handler.message()
    assert decoded(message) == MAIL
    assert message["From"] == FROM
    assert message.get_content_charset() == "utf-8"
    assert message["Message-ID"].endswith("@ranepa.ru>")
    assert message["Date"].datetime is not None
    assert all(len(line) <= 998 for line in envelope.original_content.splitlines())


_ALPHABET = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВЯ abcXYZ0123456789 .,:;!?—№«»-_=?()@"
_TEXT = st.text(alphabet=list(_ALPHABET), max_size=300)


@settings(max_examples=150, deadline=None)
@given(subject=_TEXT, body=_TEXT)
def test_any_subject_and_body_survive_encoding(subject: str, body: str) -> None:
    # No server needed: what build() writes must parse back to the same text. (EmailMessage's
    # own header folder fails this for long Russian subjects: it drops spaces.)
    mail = SmtpMailer("127.0.0.1", 25, from_addr=FROM).build(MailMessage("a@ranepa.ru", subject, body))
    raw = mail.as_bytes()
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    assert decoded(parsed) == MailMessage("a@ranepa.ru", subject, body)


async def test_line_breaks_in_a_subject_cannot_inject_headers() -> None:
    async with smtp_server() as (handler, port):
        await SmtpMailer("127.0.0.1", port, from_addr=FROM).send(
            MailMessage("a@ranepa.ru", "Тема\r\nBcc: victim@example.com", "текст")
        )
    message = handler.message()
    assert message["Bcc"] is None
    assert message["Subject"] == "Тема Bcc: victim@example.com"
    assert handler.envelopes[0].rcpt_tos == ["a@ranepa.ru"]


@pytest.mark.parametrize(
    ("given", "sent"),
    [("Тема\u2028вторая строка", "Тема вторая строка"), ("a\x0c b", "a b"), ("нуль\x00\x1b[31m", "нуль[31m")],
)
def test_subjects_are_one_line_without_controls(given: str, sent: str) -> None:
    mail = SmtpMailer("127.0.0.1", 25, from_addr=FROM).build(MailMessage("a@ranepa.ru", given, "b"))
    parsed = BytesParser(policy=policy.default).parsebytes(mail.as_bytes())
    assert parsed["Subject"] == sent


@pytest.mark.parametrize("to", ["a@ranepa.ru\r\nBcc: x@y.z", "no-at-sign", "a@b.c, d@e.f", ""])
async def test_bad_recipient_is_a_mail_error(to: str) -> None:
    with pytest.raises(MailError):
        await SmtpMailer("127.0.0.1", free_port(), from_addr=FROM).send(MailMessage(to, "s", "b"))


# --------------------------------------------------------------------------- auth and TLS


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535 itself


AUTH_REQUIRED: dict[str, Any] = {
    "authenticator": authenticator,
    "auth_required": True,
    "auth_require_tls": False,  # plain loopback
}


async def test_auth_login_succeeds_with_the_right_password() -> None:
    async with smtp_server(**AUTH_REQUIRED) as (handler, port):
        await SmtpMailer("127.0.0.1", port, from_addr=FROM, username=USER, password=PASSWORD).send(MAIL)
    assert decoded(handler.message()) == MAIL


async def test_wrong_password_fails_without_revealing_it() -> None:
    wrong = "wrong-" + PASSWORD
    async with smtp_server(**AUTH_REQUIRED) as (handler, port):
        mailer = SmtpMailer("127.0.0.1", port, from_addr=FROM, username=USER, password=wrong)
        with pytest.raises(MailError) as caught:
            await mailer.send(MAIL)
    assert wrong not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert handler.envelopes == []


async def test_unauthenticated_send_is_refused() -> None:
    async with smtp_server(**AUTH_REQUIRED) as (_, port):
        with pytest.raises(MailError):
            await SmtpMailer("127.0.0.1", port, from_addr=FROM).send(MAIL)


async def test_starttls_with_a_trusted_self_signed_certificate(certificate: tuple[Path, Path]) -> None:
    async with smtp_server(tls_context=server_context(certificate), require_starttls=True) as (handler, port):
        mailer = SmtpMailer("127.0.0.1", port, from_addr=FROM, starttls=True, ca_file=certificate[0])
        await mailer.send(MAIL)
    assert decoded(handler.message()) == MAIL


async def test_starttls_with_auth(certificate: tuple[Path, Path]) -> None:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    async with smtp_server(
        tls_context=server_context(certificate), require_starttls=True, authenticator=authenticator
    ) as (handler, port):
        mailer = SmtpMailer(
            "127.0.0.1", port, from_addr=FROM, starttls=True, tls_context=context,
            username=USER, password=PASSWORD,
        )
        await mailer.send(MAIL)
    assert decoded(handler.message()) == MAIL


async def test_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    async with smtp_server(tls_context=server_context(certificate), require_starttls=True) as (handler, port):
        with pytest.raises(MailError, match=r"(?i)certificate"):
            await SmtpMailer("127.0.0.1", port, from_addr=FROM, starttls=True).send(MAIL)
    assert handler.envelopes == []


async def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    async with smtp_server(ssl_context=server_context(certificate)) as (handler, port):
        await SmtpMailer("127.0.0.1", port, from_addr=FROM, use_tls=True, ca_file=certificate[0]).send(MAIL)
    assert decoded(handler.message()) == MAIL


# --------------------------------------------------------------------------- failures


async def test_server_down_is_a_mail_error() -> None:
    with pytest.raises(MailError, match=r"127\.0\.0\.1"):
        await SmtpMailer("127.0.0.1", free_port(), from_addr=FROM, timeout=2).send(MAIL)


async def test_silent_server_times_out_as_a_mail_error() -> None:
    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(MailError, match=r"(?i)timeout|timed out"):
            await SmtpMailer("127.0.0.1", port, from_addr=FROM, timeout=0.3).send(MAIL)
    finally:
        server.close()


async def test_rejected_recipient_is_its_own_mail_error() -> None:
    async with smtp_server() as (handler, port):
        mailer = SmtpMailer("127.0.0.1", port, from_addr=FROM)
        with pytest.raises(MailRecipientRefused, match=r"nobody@ranepa\.ru"):
            await mailer.send(MailMessage("nobody@ranepa.ru", "s", "b"))
    assert handler.envelopes == []


@pytest.mark.parametrize(
    "options",
    [
        {"starttls": True, "use_tls": True},
        {"username": USER},
        {"password": PASSWORD},
        {"timeout": 0},
        {"ca_file": "ca.pem", "tls_context": ssl.create_default_context()},
    ],
)
def test_contradictory_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SmtpMailer("127.0.0.1", 25, from_addr=FROM, **options)
