"""The Mailer port over SMTP (aiosmtplib): one connection per message, UTF-8 throughout."""

from __future__ import annotations

import re
import ssl
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
from pathlib import Path

import aiosmtplib

from engine.ports import MailError, MailMessage, MailRecipientRefused

__all__ = ["SmtpMailer"]

_ADDRESS = re.compile(r"[^\s@<>,;\"]+@[^\s@<>,;\"]+")
# A subject is one line: line breaks become a space (no header injection), other controls go.
_LINE_BREAKS = re.compile(r"\s*[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+\s*")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


class SmtpMailer:
    """Hands messages to an SMTP server.

    starttls: upgrade a plain connection (port 587) and refuse to go on without it;
    use_tls: TLS from the first byte (port 465). Certificates are always verified, against the
    system store or, for a private CA or a self-signed server, ca_file / tls_context.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        from_addr: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        timeout: float = 10.0,
        ca_file: str | Path | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if starttls and use_tls:
            raise ValueError("choose starttls (port 587) or use_tls (port 465), not both")
        if (username is None) != (password is None):
            raise ValueError("SMTP username and password go together: give both or neither")
        if ca_file is not None and tls_context is not None:
            raise ValueError("give ca_file or tls_context, not both")
        if timeout <= 0:
            raise ValueError(f"SMTP timeout must be positive, not {timeout}")
        if ca_file is not None:
            tls_context = ssl.create_default_context(cafile=str(ca_file))
        self._host = host
        self._port = port
        self._from = from_addr
        self._username = username
        self._password = password
        self._starttls = starttls
        self._use_tls = use_tls
        self._timeout = timeout
        self._tls_context = tls_context

    def build(self, message: MailMessage) -> MIMEText:
        """The RFC 5322 message for message: UTF-8 subject and body, Date and Message-ID.

        Built with the compat32 classes on purpose: EmailMessage's header folder (policy.default)
        drops spaces between RFC 2047 encoded words in long non-ASCII subjects (CPython issues
        121284, 144156); email.header.Header folds them correctly.
        """
        if not _ADDRESS.fullmatch(message.to):
            raise ValueError(f"not a plain email address: {message.to!r}")
        subject = _CONTROLS.sub("", _LINE_BREAKS.sub(" ", message.subject))
        mail = MIMEText(message.body, "plain", "utf-8")
        mail["From"] = self._from
        mail["To"] = message.to
        # Plain text only where unfolding gives it back exactly: ASCII, single spaces, no edges.
        plain = subject.isascii() and subject == " ".join(subject.split())
        # Header is what compat32 expects here; typeshed only admits str.
        mail["Subject"] = Header(subject, "us-ascii" if plain else "utf-8")  # type: ignore[assignment]
        mail["Date"] = formatdate(localtime=True)
        mail["Message-ID"] = make_msgid(domain=self._from.rpartition("@")[2] or None)
        return mail

    async def send(self, message: MailMessage) -> None:
        try:
            mail = self.build(message)
        except (ValueError, TypeError) as exc:  # a header with a line break, a malformed address
            raise MailError(f"cannot build the message to {message.to!r}: {exc}") from None
        try:
            refused, _ = await aiosmtplib.send(
                mail,
                sender=self._from,
                recipients=[message.to],
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._use_tls,
                start_tls=self._starttls,
                timeout=self._timeout,
                tls_context=self._tls_context,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise MailRecipientRefused(self._describe(exc)) from None
        except (aiosmtplib.SMTPException, OSError) as exc:  # OSError covers ssl.SSLError too
            # from None: the cause's traceback is not ours to vouch for; the text below is.
            raise MailError(self._describe(exc)) from None
        if refused:
            raise MailRecipientRefused(f"SMTP {self._host}:{self._port} refused {', '.join(sorted(refused))}")

    def _describe(self, exc: BaseException) -> str:
        text = f"SMTP {self._host}:{self._port}: {type(exc).__name__}: {exc}"
        if self._password:
            text = text.replace(self._password, "***")
        return text
