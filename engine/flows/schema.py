"""Validate a parsed flow file against schema/flow.schema.json, with YAML positions."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from engine.flows.findings import Finding
from engine.flows.yamlsrc import YamlDoc
from schema import FLOW_SCHEMA_PATH

KINDS = ("flow", "catalog", "bot", "simpleone")


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FLOW_SCHEMA_PATH.read_text(encoding="utf-8"))
    return data


@lru_cache(maxsize=len(KINDS))
def _validator(kind: str) -> Draft202012Validator:
    # Validating against the one sub-schema the file declares gives precise messages; the
    # top-level oneOf would only say "not valid under any of the given schemas".
    whole = _schema()
    sub = {"$schema": whole["$schema"], "$defs": whole["$defs"], "$ref": f"#/$defs/{kind}File"}
    return Draft202012Validator(sub)


def file_kind(doc: YamlDoc) -> str | None:
    if isinstance(doc.data, dict):
        for kind in KINDS:
            if kind in doc.data:
                return kind
    return None


def check_schema(doc: YamlDoc) -> tuple[str | None, list[Finding]]:
    kind = file_kind(doc)
    if kind is None:
        line, col = doc.pos(())
        return None, [Finding(doc.path, line, col, "F002",
                              "not a flow file: expected one of the top-level keys " + ", ".join(KINDS))]
    errors = sorted(_validator(kind).iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path)))
    findings: list[Finding] = []
    seen: set[tuple[str | int, ...]] = set()
    for error in errors:
        path = tuple(error.absolute_path)
        if path in seen:  # one finding per node is enough to fix it
            continue
        seen.add(path)
        line, col = doc.pos(path)
        extra = _unexpected_key(error)
        if extra is not None:
            line, col = doc.pos((*path, extra), key=True)
        findings.append(Finding(doc.path, line, col, "F002", _describe(error)))
    return kind, findings


def _unexpected_key(error: ValidationError) -> str | None:
    """For 'additional properties', the first key that is not allowed: that is where to look."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return None
    allowed = set((error.schema or {}).get("properties", {}))
    extras = [k for k in error.instance if k not in allowed]
    return extras[0] if extras else None


def _describe(error: ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    best = error
    if error.context:
        # For oneOf/anyOf, report the branch that got furthest: it is what the author meant.
        best = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.context or [])))
        where = ".".join(str(p) for p in best.absolute_path) or where
    message = best.message
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{where}: {message}"
