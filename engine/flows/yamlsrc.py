"""YAML documents with the line and column of every node, parsed defensively.

Flow files are edited by hand, so every problem must come back as a finding with a position,
never as a traceback or a hang: oversized files, binary junk, deep nesting and alias bombs
included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.flows.findings import Finding

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 200_000  # after alias expansion; a flow set is a few thousand
MAX_DEPTH = 100

JsonPath = tuple[str | int, ...]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS = yaml.SafeLoader(stream="")
# YAML 1.1 reads yes/no/on/off as booleans; in flow texts those are words, keep them.
_BOOL_WORDS = {"true": True, "false": False}


@dataclass(slots=True)
class YamlDoc:
    path: str
    data: Any
    source: str = ""  # the text parsed: the flow set's version is a hash of exactly this
    positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    # (key, where, first occurrence): PyYAML would silently keep the last duplicate.
    duplicates: list[tuple[str, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    # Where each text value is written in source (start and end character), block indicator included.
    spans: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)

    def pos(self, path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        """Position of the node at path, or of its nearest ancestor that has one."""
        table = self.key_positions if key else self.positions
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), (1, 1))

    def raw(self, path: JsonPath) -> tuple[str, tuple[int, int]]:
        """The text value at path as written in the file, and the line and column it starts at."""
        start, end = self.spans.get(tuple(path), (0, 0))
        return self.source[start:end], self.pos(path)


class _TooBig(Exception):
    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.line, self.col = line, col


class _Builder:
    def __init__(self, doc: YamlDoc) -> None:
        self.doc = doc
        self.count = 0

    def build(self, node: yaml.Node, path: JsonPath, depth: int) -> Any:
        self.count += 1
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if self.count > MAX_NODES:
            raise _TooBig(f"more than {MAX_NODES} nodes after expanding aliases", line, col)
        if depth > MAX_DEPTH:
            raise _TooBig(f"nested deeper than {MAX_DEPTH} levels", line, col)
        self.doc.positions.setdefault(path, (line, col))
        if isinstance(node, yaml.ScalarNode):
            self.doc.spans.setdefault(path, (node.start_mark.index, node.end_mark.index))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return _scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: JsonPath, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _TooBig("merge keys (<<) are not supported", key_node.start_mark.line + 1,
                              key_node.start_mark.column + 1)
            if not isinstance(key_node, yaml.ScalarNode):
                raise _TooBig("mapping keys must be plain text", key_node.start_mark.line + 1,
                              key_node.start_mark.column + 1)
            key = str(key_node.value)
            kpos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in out:
                first = self.doc.key_positions.get((*path, key), kpos)
                self.doc.duplicates.append((key, kpos, first))
                continue
            self.doc.key_positions[(*path, key)] = kpos
            out[key] = self.build(value_node, (*path, key), depth + 1)
        return out


def _scalar(node: yaml.Node) -> Any:
    value = str(node.value)
    if node.tag == "tag:yaml.org,2002:bool":
        return _BOOL_WORDS.get(value.lower(), value)
    if node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:null"):
        try:
            return _SCALARS.construct_object(node)
        except (ValueError, yaml.YAMLError):
            return value
    return value


_INDENTATION = ("did not find expected key", "did not find expected '-'", "bad indentation", "expected <block end>")


def _advice(text: str, line: int, col: int, problem: str) -> str:
    """What a support lead can do about a syntax error, where its usual cause is clear."""
    lines = text.splitlines()
    here = lines[line - 1] if 0 < line <= len(lines) else ""
    indent = here[: len(here) - len(here.lstrip())]
    if "\t" in indent or "tab" in problem or here[col - 1 : col] == "\t":
        return "; YAML does not allow tabs for indentation: use spaces"
    if "mapping values are not allowed" in problem:
        if ": " in here[: col - 1].lstrip("- "):
            return ("; a text that contains ': ' must be put in quotes, e.g. say: \"Время: 10:00\"; "
                    "or check this line's indentation against the line above")
        return "; check this line's indentation against the line above"
    if any(p in problem for p in _INDENTATION):
        return "; check this line's indentation against the line above (keys of one level start in one column)"
    if "expected ',' or ']'" in problem or "expected ',' or '}'" in problem:
        return "; a '[' or '{' above is not closed"
    if "quoted scalar" in problem:
        return "; a quote opened above is never closed"
    return ""


def parse_yaml(text: str, path: str) -> tuple[YamlDoc | None, list[Finding]]:
    """Parse one document; on any problem return findings instead of raising."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        advice = _advice(text, line, col, f"{exc.problem} {exc.context}")
        return None, [Finding(path, line, col, "F001", f"YAML syntax error: {problem}{advice}")]
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        return None, [Finding(path, 1, 1, "F001", f"YAML error: {str(exc).splitlines()[0][:200]}")]
    if node is None:
        return None, [Finding(path, 1, 1, "F001", "file is empty")]
    doc = YamlDoc(path, None, text)
    try:
        doc.data = _Builder(doc).build(node, (), 0)
    except _TooBig as exc:
        return None, [Finding(path, exc.line, exc.col, "F003", str(exc))]
    except RecursionError:
        return None, [Finding(path, 1, 1, "F003", "structure nested too deeply")]
    findings = [
        Finding(path, line, col, "F040", f"duplicate key '{key}' (first at line {first[0]})")
        for key, (line, col), first in doc.duplicates
    ]
    return doc, findings


def load_yaml_file(path: Path, shown_as: str | None = None) -> tuple[YamlDoc | None, list[Finding]]:
    name = shown_as or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, [Finding(name, 1, 1, "F003", f"file is {size} bytes; the limit is {MAX_FILE_BYTES}")]
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Finding(name, 1, 1, "F001", f"cannot read file: {exc.strerror or exc}")]
    if b"\x00" in raw:
        return None, [Finding(name, 1, 1, "F001", "file is binary, not YAML text")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [Finding(name, line, 1, "F001", "file is not valid UTF-8 text")]
    return parse_yaml(text, name)
