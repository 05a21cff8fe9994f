"""Validation of what a user types or attaches in a state that expects input."""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from typing import Any

from engine.flows.model import InputSpec
from engine.ports import IncomingFile

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_CODE_NOISE = re.compile(r"[\s\-]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CODE_LENGTH = 6



@dataclass(slots=True)
class Verdict:
    value: Any = None
    error: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def limits(spec: InputSpec) -> dict[str, Any]:
    """Variables an input's error texts may use."""
    return {
        "min": spec.min_length,
        "max": spec.max_length,
        "max_files": spec.max_files,
        "max_mb": f"{spec.max_file_mb:g}",
        "extensions": ", ".join(spec.extensions),
    }


def clean_text(text: str) -> str:
    return _CONTROL.sub("", text).strip()


def check_text(spec: InputSpec, raw: str) -> Verdict:
    text = clean_text(raw)
    if spec.kind == "email":
        email = text.lower()
        if not email:
            return Verdict(error="not_text")
        if len(email) > 254 or not _EMAIL.fullmatch(email):
            return Verdict(error="bad_email")
        return Verdict(email)
    if spec.kind == "code":
        code = _CODE_NOISE.sub("", text)
        if not code:
            return Verdict(error="not_text")
        if len(code) != CODE_LENGTH or not code.isascii() or not code.isdigit():
            return Verdict(error="bad_code")
        return Verdict(code)
    if not text:
        return Verdict(error="not_text")
    if len(text) < spec.min_length:
        return Verdict(error="too_short", vars={"count": len(text)})
    if sum(ch.isalnum() for ch in text) < spec.min_letters:
        return Verdict(error="no_letters", vars={"count": len(text)})
    if len(text) > spec.max_length:
        return Verdict(error="too_long", vars={"count": len(text)})
    return Verdict(text)


def file_extension(name: str, mime: str) -> str:
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    if not ext and mime:
        guessed = mimetypes.guess_extension(mime) or ""
        ext = guessed.lstrip(".")
    return ext


def check_file(spec: InputSpec, file: IncomingFile | tuple[str, int], already: int) -> Verdict:
    """One incoming file against the state's limits; already = files accepted so far."""
    name, size, mime = (file.name, len(file.data), file.mime) if isinstance(file, IncomingFile) \
        else (file[0], file[1], "")
    info = {"file": {"name": name, "size": size}}
    if already >= spec.max_files:
        return Verdict(error="too_many_files", vars=info)
    if spec.extensions and file_extension(name, mime) not in spec.extensions:
        return Verdict(error="bad_file_type", vars=info)
    if size > spec.max_file_mb * 1024 * 1024:
        return Verdict(error="file_too_big", vars=info)
    return Verdict(file, vars=info)
