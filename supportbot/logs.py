"""The log: plain lines (the default) or one JSON object per line (LOG_FORMAT=json), with the
third-party libraries' chatter held back.

Neither format lets an e-mail address through: one that reaches a message (an exception's text
that quotes a query or a refused recipient) is replaced by a short hash of it, so lines about
one address still match. The JSON lines carry the peer as such a hash too, with the event's id
and the dialogue's state (engine/log_context.py). Codes and message texts are never logged at
INFO or above by the bot's own calls (tests/supportbot/test_logs.py runs a whole conversation
to check it); a pattern could not recognise them, so that is kept at the calls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from engine.log_context import event_var, peer_var, state_var

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A chat's id where a message names one ("ticket for peer vk:1 queued"): hashed in JSON lines.
PEER = re.compile(r"\b(?:vk|console|studio|test):[\w-]+")
# Loggers that speak at INFO about every request or callback: WARNING unless LOG_LEVEL=DEBUG.
THIRD_PARTY = ("transitions", "aiohttp", "asyncio", "asyncpg", "aiosmtplib", "aiosmtpd", "mail.log")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def pseudonym(value: str) -> str:
    """A short stable hash: lines about the same peer or address match, the value does not show.
    Not a secret against whoever holds the logs and guesses ids: it keeps them out of sight."""
    return hashlib.sha256(b"supportbot:" + value.encode()).hexdigest()[:12]


def redact_emails(text: str) -> str:
    return EMAIL.sub(lambda m: f"<email {pseudonym(m[0].lower())}>", text)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact_emails(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message; peer (hashed),
    event and state/flow while an event is handled; exc with the traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        message = PEER.sub(lambda m: f"<peer {pseudonym(m[0])}>", redact_emails(record.getMessage()))
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        peer, event, state = peer_var.get(), event_var.get(), state_var.get()
        if peer is not None:
            line["peer"] = pseudonym(peer)
        if event:
            line["event"] = event
        if state:
            line["state"] = state
            line["flow"] = state.split(".", 1)[0]
        if record.exc_info:
            line["exc"] = redact_emails(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = redact_emails(record.exc_text)
        return json.dumps(line, ensure_ascii=False)


def setup_logging(level: str, log_format: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """The root logger at level, to stream (stderr), in the format; the third-party loggers quiet."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "supportbot", False):
            root.removeHandler(old)
    handler.supportbot = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    quiet_third_party()
    return handler


def quiet_third_party() -> None:
    """transitions logs every callback of every trigger at INFO (two lines a step), aiohttp every
    request: the bot's own log says what happened, so theirs speak from WARNING unless the whole
    log is at DEBUG."""
    debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
