"""What may leave the bot as text: one sanitiser for every text sent to SimpleOne or a user, one
for file names, and a nesting bound checked before JSON from outside is parsed."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Final

# C0 controls but tab and newline, DEL, C1 controls; and lone surrogates, which no encoder takes.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_FILE_NAME: Final = 120  # characters of a file name kept (the extension always)


def clean_outgoing(text: str) -> str:
    """text as it may be sent: line ends as \\n, no control characters (NUL, escapes, bells)."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def clean_file_name(name: str) -> str:
    """A file name as it may be shown and sent: its last path part, control characters as spaces,
    no format characters (a right-to-left override could hide the real extension), spaces collapsed, at
    most MAX_FILE_NAME characters with its extension kept; "file" if nothing is left."""
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in name
                   if unicodedata.category(ch) not in ("Cf", "Cs", "Co", "Cn"))
    name = " ".join(name.split()).strip(" .")
    if len(name) > MAX_FILE_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and 0 < len(ext) <= 10 else ""
        keep = MAX_FILE_NAME - len(ext) - (2 if ext else 1)
        name = (stem if ext else name)[:keep].rstrip() + "…" + (f".{ext}" if ext else "")
    return name or "file"


def clean_json_strings(value: Any) -> Any:
    """Every string in a JSON value through clean_outgoing (keys too)."""
    if isinstance(value, str):
        return clean_outgoing(value)
    if isinstance(value, dict):
        return {clean_outgoing(str(k)): clean_json_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json_strings(v) for v in value]
    return value


def nesting(text: str) -> int:
    """How deep arrays and objects nest in JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class TooDeep(ValueError):
    """JSON nested deeper than its reader allows."""


def loads_bounded(text: str, max_depth: int) -> Any:
    """json.loads, refusing text nested deeper than max_depth before parsing it (a deep one
    would exhaust the parser's recursion)."""
    if nesting(text) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth}")
    return json.loads(text, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python reads them by default): numbers no id or size can be."""
    raise ValueError(f"{name} is not JSON")
