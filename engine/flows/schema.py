"""Validate a parsed flow file against schema/flow.schema.json, with YAML positions."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.flows.findings import Finding, nearest
from engine.flows.yamlsrc import JsonPath, YamlDoc
from schema import FLOW_SCHEMA_PATH

if TYPE_CHECKING:  # jsonschema is imported where a file is validated: a start with every file known valid skips it
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

KINDS = ("flow", "catalog", "bot", "simpleone")
log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _schema_bytes() -> bytes:
    """The schema as read once per process: what validates and what keys the cache are the same bytes."""
    return FLOW_SCHEMA_PATH.read_bytes()


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_schema_bytes().decode("utf-8"))
    return data


@lru_cache(maxsize=len(KINDS))
def _validator(kind: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    # Validating against the one sub-schema the file declares gives precise messages; the
    # top-level oneOf would only say "not valid under any of the given schemas".
    whole = _schema()
    sub = {"$schema": whole["$schema"], "$defs": whole["$defs"], "$ref": f"#/$defs/{kind}File"}
    return Draft202012Validator(sub)


@lru_cache(maxsize=1)
def _validator_stamp() -> bytes:
    """Which jsonschema does the validating, without importing it: where it is installed and its
    validating modules' sizes and times (an upgrade or an edit changes them)."""
    spec = importlib.util.find_spec("jsonschema")
    if spec is None or spec.origin is None:
        return b"jsonschema: not found"
    package = Path(spec.origin).parent
    parts = [str(package)]
    for name in ("validators.py", "_keywords.py", "_types.py", "_format.py"):
        try:
            st = (package / name).stat()
        except OSError:
            parts.append(f"{name}: missing")
            continue
        parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts).encode()


class ValidFlowCache:
    """Flow files jsonschema has found valid, so that a start with files validated before does
    not validate them again (nor import jsonschema).

    An entry is an empty file named by the SHA-256 of everything the verdict depends on: the
    exact text of the flow file, the kind it declares, the exact bytes of the schema and which
    jsonschema validated it. An edited file, schema or jsonschema gives another name, so an
    entry can only ever vouch for the very content it was written for. Only passes are kept:
    a file with errors is validated every time, for its findings. A directory that cannot be
    written only costs the saving.
    """

    FORMAT = b"supportbot valid flow file 1"  # bump if what an entry means changes
    MAX_ENTRIES = 500  # a long studio session writes one per saved edit: the oldest go

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def key(self, kind: str, doc: YamlDoc) -> str:
        digest = hashlib.sha256(self.FORMAT)
        for part in (_validator_stamp(), _schema_bytes(), kind.encode(), doc.source.encode("utf-8")):
            digest.update(len(part).to_bytes(8, "big"))  # lengths first: no two inputs read alike
            digest.update(part)
        return digest.hexdigest()

    def known_valid(self, kind: str, doc: YamlDoc) -> bool:
        return (self.directory / self.key(kind, doc)).is_file()

    def remember_valid(self, kind: str, doc: YamlDoc) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / self.key(kind, doc)).touch()
            entries = list(self.directory.iterdir())
            if len(entries) > self.MAX_ENTRIES:
                entries.sort(key=lambda p: p.stat().st_mtime_ns)
                for old in entries[: len(entries) - self.MAX_ENTRIES]:
                    with contextlib.suppress(OSError):
                        old.unlink()
        except OSError as exc:
            log.debug("flow validation cache %s not written: %s", self.directory, exc)


def default_cache_dir() -> Path:
    """Where the bot's commands keep the cache: $XDG_CACHE_HOME/supportbot, else ~/.cache/supportbot."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "supportbot" / "valid-flows"


def file_kind(doc: YamlDoc) -> str | None:
    if isinstance(doc.data, dict):
        for kind in KINDS:
            if kind in doc.data:
                return kind
    return None


def check_schema(doc: YamlDoc, cache: ValidFlowCache | None = None) -> tuple[str | None, list[Finding]]:
    kind = file_kind(doc)
    if kind is None:
        line, col = doc.pos(())
        return None, [Finding(doc.path, line, col, "F002",
                              "not a flow file: expected one of the top-level keys " + ", ".join(KINDS))]
    if cache is not None and cache.known_valid(kind, doc):
        return kind, []
    findings = schema_findings(doc, _validator(kind))
    if cache is not None and not findings:
        cache.remember_valid(kind, doc)
    return kind, findings


def schema_findings(doc: YamlDoc, validator: Draft202012Validator) -> list[Finding]:
    """The document's schema errors in plain words, each at the line to look at."""
    errors = sorted(validator.iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path)))
    findings: list[Finding] = []
    seen: set[tuple[str | int, ...]] = set()
    for error in errors:
        path = tuple(error.absolute_path)
        if path in seen:  # one finding per node is enough to fix it
            continue
        seen.add(path)
        for at, key, message in explain(error, doc.data):
            line, col = doc.pos(at, key=key)
            findings.append(Finding(doc.path, line, col, "F002", message))
    return findings


# What a pattern of the schema asks for, in words.
PATTERNS = {
    "^[a-z][a-z0-9_]*$": "must be a name in small Latin letters, digits and _, starting with a letter",
    "^[a-z][a-z0-9_]*\\.[a-z][a-z0-9_]*$": "must be written as part.name (small Latin letters, e.g. tickets.create)",
    "^(return|[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)?)$":
        "must be a state of this flow, flow.state of another flow, or return",
    "^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z0-9_]+)*$": "must be a slot name such as description or service.name",
    "^[^@\\s]+@[^@\\s]+$": "must be an email address",
}
TYPES = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
         "array": "a list", "object": "a set of 'key: value' lines", "null": "empty"}
# A list's items by the key that holds them, so that places read "test 2, step 3".
ITEMS = {"tests": "test", "steps": "step", "attach": "file", "patterns": "pattern", "enter": "action",
         "ignore": "word", "groups": "group", "entries": "entry", "say": "part", "keywords": "word"}
ROWS = ("buttons", "footer")  # lists of rows of buttons
# Keys named by what they hold ("test 2", "state 'menu'", "on: back") rather than by themselves.
CONTAINERS = ("tests", "steps", "states", "groups", "entries", "on", "global", "catalog")


def explain(error: ValidationError, data: Any) -> list[tuple[JsonPath, bool, str]]:
    """(where to point, whether at a key, message) for one schema error, in a support lead's words."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list((error.schema or {}).get("properties", {}))
        out = []
        for extra in (k for k in error.instance if k not in allowed):
            guess = nearest(str(extra), allowed)
            hint = f": did you mean {guess}?" if guess else ""
            out.append(((*path, extra), True, f"unknown key '{extra}' {place(path, data, 'at')}{hint} "
                        f"(allowed: {', '.join(allowed)})"))
        if out:
            return out
    if error.validator in ("oneOf", "anyOf") and error.context:
        return [(path, False, _alternatives(error, data))]
    return [(path, False, _one(error, data))]


def _alternatives(error: ValidationError, data: Any) -> str:
    path = tuple(error.absolute_path)
    context = error.context or []
    here = [e for e in context if tuple(e.absolute_path) == path]
    if here and len(here) == len(context) and all(e.validator == "required" for e in here):
        keys = [str(k) for e in here for k in (e.validator_value or [])]
        return f"{place(path, data, 'at').removeprefix('in ')} needs one of the keys {', '.join(keys)}"
    if here and len(here) == len(context) and all(e.validator == "type" for e in here):
        wanted = [TYPES.get(str(t), str(t)) for e in here for t in _list(e.validator_value)]
        return f"{_subject(path, data)} must be {' or '.join(dict.fromkeys(wanted))}, got {_value(error.instance)}" \
            + _in(path[:-1], data)
    # The branch that got furthest is what the author meant.
    best = max(context, key=lambda e: (len(e.absolute_path), -len(e.context or [])))
    if best.validator == "additionalProperties":
        return explain(best, data)[0][2]
    if best.validator in ("oneOf", "anyOf") and best.context:
        return _alternatives(best, data)
    return _one(best, data)


def _one(error: ValidationError, data: Any) -> str:
    path = tuple(error.absolute_path)
    what, value, rule = _subject(path, data), error.instance, error.validator_value
    where = _in(path[:-1], data)
    if error.validator == "required":
        missing = [k for k in _list(rule) if isinstance(value, dict) and k not in value]
        names = ", ".join(f"'{k}'" for k in missing) or str(rule)
        return f"missing {names} {place(path, data, 'at')} (it must be given)"
    if error.validator == "type":
        wanted = " or ".join(TYPES.get(str(t), str(t)) for t in _list(rule))
        return f"{what} must be {wanted}, got {_value(value)}{where}"
    if error.validator == "enum":
        guess = nearest(str(value), [str(v) for v in _list(rule)])
        hint = f" (did you mean {guess}?)" if guess else ""
        return f"{what} must be one of {', '.join(map(str, _list(rule)))}, got {_value(value)}{hint}{where}"
    if error.validator == "const":
        return f"{what} must be {_value(rule)}, got {_value(value)}{where}"
    if error.validator == "pattern":
        return f"{what} {PATTERNS.get(str(rule), f'does not have the expected form ({rule})')}, " \
            f"got {_value(value)}{where}"
    if error.validator in ("minLength", "minItems", "minProperties"):
        if rule == 1:
            return f"{what} must not be empty{where}"
        unit = {"minLength": "characters", "minItems": "items", "minProperties": "keys"}[str(error.validator)]
        return f"{what} must have at least {rule} {unit}{where}"
    if error.validator in ("maxLength", "maxItems"):
        unit = "characters" if error.validator == "maxLength" else "items"
        return f"{what} is too long: {len(value)} {unit}, at most {rule}{where}"
    if error.validator in ("minimum", "exclusiveMinimum", "maximum"):
        bound = {"minimum": "at least", "exclusiveMinimum": "more than", "maximum": "at most"}[str(error.validator)]
        return f"{what} must be {bound} {rule}, got {_value(value)}{where}"
    if error.validator == "uniqueItems":
        return f"{what} has the same item twice{where}"
    if error.validator == "propertyNames":
        return f"key {_value(value)} {PATTERNS.get(str((rule or {}).get('pattern')), 'is not allowed here')}{where}"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"{message} {place(path, data, 'at')}"


def place(path: JsonPath, data: Any, at_top: str = "in") -> str:
    """'in test 1, step 2', "in state 'describe', input", 'at the top of the file'."""
    parts: list[str] = []
    node = data
    for i, key in enumerate(path):
        before = path[i - 1] if i else None
        if isinstance(key, int):
            item = node[key] if isinstance(node, list) and 0 <= key < len(node) else None
            ident = item.get("id") if isinstance(item, dict) else None
            if isinstance(before, int) and _rows(path[: i - 1]):
                noun = "button"
            elif _rows(path[:i]):
                noun = "row"
            else:
                noun = ITEMS.get(str(before), "item")
            parts.append(f"{noun} '{ident}'" if isinstance(ident, str) else f"{noun} {key + 1}")
        elif before == "states" and i == 1:
            parts.append(f"state '{key}'")
        elif before in ("on", "global"):
            parts.append(f"{before}: {key}")
        elif key not in CONTAINERS:
            parts.append(str(key))
        node = node.get(key) if isinstance(node, dict) else (
            node[key] if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node) else None)
    if not parts:
        return "at the top of the file" if at_top == "at" else ""
    return "in " + ", ".join(parts)


def _rows(path: JsonPath) -> bool:
    """Whether the node at path is a keyboard: a list of rows of buttons."""
    return bool(path) and (path[-1] in ROWS or (len(path) >= 2 and path[-2] == "notice_buttons"))


def _subject(path: JsonPath, data: Any) -> str:
    if not path:
        return "the file"
    last = path[-1]
    if isinstance(last, int):
        return place(path, data).removeprefix("in ")
    return f"'{last}'"


def _in(path: JsonPath, data: Any) -> str:
    where = place(path, data)
    return f" ({where})" if where else ""


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a set of keys"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]
