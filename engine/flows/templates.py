"""Safe text templates over session slots.

Syntax: `{slot}`, `{slot.field}`, `{list|count}`, `{list|names}`, `{n|plural:файл,файла,файлов}`
(the number with its noun in the right form: 1 файл, 3 файла, 5 файлов), `{text|short:40}` (cut at
a word to at most 40 characters, with "…"); `{{` and `}}` for braces.
Only dictionary keys are looked up — never attributes, indexes or format specs — and a
substituted value is never parsed again, so nothing a user types can reach the engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FILTERS = ("count", "names", "plural", "short")
_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
_FIELD = re.compile(rf"\s*({_PATH})\s*(?:\|\s*([a-z]+)\s*(?::([^{{}}]*))?)?")


class TemplateError(ValueError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Ref:
    path: tuple[str, ...]
    filter: str | None
    offset: int  # character offset of the "{" in the source, for lint positions
    argument: str = ""  # the filter's, after a colon


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    parts: tuple[str | Ref, ...]

    @property
    def refs(self) -> list[Ref]:
        return [p for p in self.parts if isinstance(p, Ref)]

    def render(self, values: Mapping[str, Any]) -> str:
        out: list[str] = []
        for part in self.parts:
            out.append(part if isinstance(part, str)
                       else _format(_lookup(values, part.path), part.filter, part.argument))
        return "".join(out)

    def render_compact(self, values: Mapping[str, Any]) -> str:
        """As render, leaving out the lines that consist of placeholders with nothing in them
        (a notice's "{comment.text}" line when there is no comment); lines left empty on
        purpose stay."""
        lines: list[str] = []
        line: list[str] = []
        placeholders_only = True
        has_ref = False
        for part in self.parts:
            if isinstance(part, Ref):
                line.append(_format(_lookup(values, part.path), part.filter, part.argument))
                has_ref = True
                continue
            pieces = part.split("\n")
            for i, piece in enumerate(pieces):
                if i:
                    text = "".join(line)
                    if text.strip() or not (has_ref and placeholders_only):
                        lines.append(text)
                    line, placeholders_only, has_ref = [], True, False
                line.append(piece)
                placeholders_only = placeholders_only and not piece.strip()
        text = "".join(line)
        if text.strip() or not (has_ref and placeholders_only):
            lines.append(text)
        return "\n".join(lines)


def parse(source: str) -> Template:
    parts: list[str | Ref] = []
    text: list[str] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "{" and source.startswith("{{", i):
            text.append("{")
            i += 2
        elif ch == "}" and source.startswith("}}", i):
            text.append("}")
            i += 2
        elif ch == "{":
            end = source.find("}", i + 1)
            if end < 0:
                raise TemplateError("'{' is never closed (write '{{' for a literal brace)", i)
            m = _FIELD.fullmatch(source, i + 1, end)
            if not m:
                raise TemplateError(f"'{source[i:end + 1][:60]}' is not a slot name such as {{description}}", i)
            name, argument = m.group(2), (m.group(3) or "").strip()
            if name and name not in FILTERS:
                raise TemplateError(f"unknown filter '{name}' (known: {', '.join(FILTERS)})", i)
            problem = _argument_problem(name, argument)
            if problem:
                raise TemplateError(problem, i)
            if text:
                parts.append("".join(text))
                text = []
            parts.append(Ref(tuple(m.group(1).split(".")), name, i, argument))
            i = end + 1
        elif ch == "}":
            raise TemplateError("'}' without '{' (write '}}' for a literal brace)", i)
        else:
            text.append(ch)
            i += 1
    if text:
        parts.append("".join(text))
    return Template(source, tuple(parts))


def lookup(values: Mapping[str, Any], dotted: str) -> Any:
    return _lookup(values, tuple(dotted.split(".")))


def _lookup(values: Mapping[str, Any], path: Sequence[str]) -> Any:
    current: Any = values
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _argument_problem(name: str | None, argument: str) -> str | None:
    if name == "plural" and (len(argument.split(",")) != 3 or not all(f.strip() for f in argument.split(","))):
        return "plural needs three forms of the noun, as for 1, 3 and 5: {n|plural:файл,файла,файлов}"
    if name == "short" and not (argument.isdigit() and int(argument) > 1):
        return "short needs the most characters to keep: {text|short:40}"
    if name in ("count", "names") and argument:
        return f"filter '{name}' takes no ':' argument"
    return None


def plural(n: int, forms: Sequence[str]) -> str:
    """The Russian form of a noun for n: forms as for 1, 3 and 5 (файл, файла, файлов)."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return forms[0]
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return forms[1]
    return forms[2]


def short(text: str, limit: int) -> str:
    """text on one line, cut at a word to at most `limit` characters, with "…" if cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut and not text[limit - 1].isspace():
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,.;:—-") + "…"


def _format(value: Any, filter_name: str | None, argument: str = "") -> str:
    if filter_name == "plural":
        try:
            n = int(str(value))
        except ValueError:
            return str(value or "")
        return f"{n} {plural(n, [f.strip() for f in argument.split(',')])}"
    if filter_name == "short":
        return short(_format(value, None), int(argument))
    if filter_name == "count":
        return str(len(value)) if isinstance(value, (list, tuple, Mapping, str)) else "0"
    if filter_name == "names":
        if not isinstance(value, list):
            return ""
        return ", ".join(str(v.get("name", "")) if isinstance(v, Mapping) else str(v) for v in value)
    if value is None or isinstance(value, (Mapping, list)):
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    return str(value)
