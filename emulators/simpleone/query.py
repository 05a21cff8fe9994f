"""SimpleOne encoded queries (`sysparm_query`): parse once, then filter and sort records.

Grammar (ServiceNow-style, as seen against real SimpleOne instances):

    query     := "" | segment ("^" segment)*
    segment   := condition | "OR" condition | "ORDERBY" field | "ORDERBYDESC" field | "EQ"
               | "(" condition | "OR" condition ")"      (parentheses around one ^OR group)
    condition := field operator value
    field     := name ("." name)*        name := [a-z_][a-z0-9_]*

`^OR` binds tighter than `^`, so `a^b^ORc` means a AND (b OR c). Field names are lower-case
snake_case, which is what lets an operator follow a field without a separator (`stateIN2@3`).
Parentheses may wrap one ^OR group, as a real activity-feed widget queries the journal [seen:
shared/reference/simpleone-api.md, "Comments"]:
`(type_id.name=additional_comments.itsm_incident^ORtype_id.name=history)^record_idIN1@2^sys_id>3`.
Not supported: nested or AND-spanning parentheses, `^NQ`, escaping `^` inside a value.

Comparison rules: `=`/`!=` ignore case ([doc] the condition-operators page: `=` is
case-insensitive; `!=` is its negation [guess]); `IN` compares text exactly;
`LIKE`/`STARTSWITH`/`ENDSWITH` ignore case; `<`, `<=`, `>`, `>=` compare as numbers when
both sides are plain decimals and as text otherwise, which orders "YYYY-MM-DD HH:MM:SS"
timestamps correctly. Integers compare exactly: 18-digit sys_ids differ in digits a float
cannot hold, and `sys_id>LAST` must see them [seen, same page]. `sys_id<` (a ticket's comments
before one already shown, newest first with `ORDERBYDESCsys_id`) is [guess]: the same
comparison the other way; `ORDERBYDESC` itself is [seen] (the reference's query syntax).
`sys_updated_at>…` on "YYYY-MM-DD HH:MM:SS" text is [seen] (polling for changes, the
reference's "What the API does not give"); `>=` beside it is [guess]. Missing values are "".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "OPERATORS",
    "Condition",
    "Order",
    "Query",
    "QueryError",
    "as_text",
    "parse_query",
]

T = TypeVar("T")

# Resolves a (possibly dot-walked) field name to its value for one record.
Getter = Callable[[str], object]


class QueryError(ValueError):
    """The encoded query cannot be parsed; the message says where and why."""


# Longest first where one operator is a prefix of another ("NOT IN" before "IN", ">=" before ">").
OPERATORS: tuple[str, ...] = (
    "ISNOTEMPTY",
    "ISEMPTY",
    "NOT IN",
    "NOT LIKE",
    "STARTSWITH",
    "ENDSWITH",
    "LIKE",
    "IN",
    "!=",
    ">=",
    "<=",
    "=",
    ">",
    "<",
)
_UNARY = frozenset({"ISEMPTY", "ISNOTEMPTY"})
_FIELD_RE = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_INTEGER_RE = re.compile(r"-?\d+")


def as_text(value: object) -> str:
    """The text a stored value is compared as: None is empty, booleans are "1"/"0"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):  # a reference object {"value": sys_id, "link": ...}
        return as_text(value.get("value"))
    return str(value)


def _number(text: str) -> float | None:
    # An int where the text is one: exact, and Python compares int with float exactly too.
    if _INTEGER_RE.fullmatch(text):
        return int(text)
    return float(text) if _NUMBER_RE.fullmatch(text) else None


def _compare(left: str, right: str) -> int:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    return (left > right) - (left < right)


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: str = ""

    def matches(self, get: Getter) -> bool:
        text = as_text(get(self.field))
        op, value = self.op, self.value
        if op == "=":  # [doc] case-insensitive (condition operators)
            return text.lower() == value.lower()
        if op == "!=":  # [guess] the negation of `=`, so case-insensitive too
            return text.lower() != value.lower()
        if op == "IN":
            return text in value.split("@")
        if op == "NOT IN":
            return text not in value.split("@")
        if op == "LIKE":
            return value.lower() in text.lower()
        if op == "NOT LIKE":
            return value.lower() not in text.lower()
        if op == "STARTSWITH":
            return text.lower().startswith(value.lower())
        if op == "ENDSWITH":
            return text.lower().endswith(value.lower())
        if op == "ISEMPTY":
            return text == ""
        if op == "ISNOTEMPTY":
            return text != ""
        cmp = _compare(text, value)
        if op == ">":
            return cmp > 0
        if op == ">=":
            return cmp >= 0
        if op == "<":
            return cmp < 0
        if op == "<=":
            return cmp <= 0
        raise AssertionError(f"unhandled operator {op!r}")  # parse_query admits no other

    def render(self) -> str:
        return f"{self.field}{self.op}{self.value}"


@dataclass(frozen=True, slots=True)
class Order:
    field: str
    descending: bool = False

    def render(self) -> str:
        return f"ORDERBY{'DESC' if self.descending else ''}{self.field}"


def _sort_key(value: object) -> tuple[int, float, str]:
    # Empty first, then numbers by value, then text; one tuple shape keeps keys comparable.
    text = as_text(value)
    if text == "":
        return (0, 0.0, "")
    number = _number(text)
    if number is not None:
        return (1, number, "")
    return (2, 0.0, text)


def _key_by(getter_for: Callable[[T], Getter], field: str) -> Callable[[T], tuple[int, float, str]]:
    return lambda item: _sort_key(getter_for(item)(field))


@dataclass(frozen=True, slots=True)
class Query:
    """A conjunction of disjunctions of conditions, plus sort keys in priority order."""

    groups: tuple[tuple[Condition, ...], ...] = ()
    order: tuple[Order, ...] = ()

    def matches(self, get: Getter) -> bool:
        return all(any(c.matches(get) for c in group) for group in self.groups)

    def conditions(self) -> list[Condition]:
        return [c for group in self.groups for c in group]

    def apply(self, items: Iterable[T], getter_for: Callable[[T], Getter]) -> list[T]:
        """The items that match, sorted by the ORDERBY clauses (stable, so ties keep input order)."""
        selected = [item for item in items if self.matches(getter_for(item))]
        for order in reversed(self.order):
            selected.sort(key=_key_by(getter_for, order.field), reverse=order.descending)
        return selected

    def render(self) -> str:
        parts = ["^OR".join(c.render() for c in group) for group in self.groups]
        parts.extend(o.render() for o in self.order)
        return "^".join(parts)


def _parse_field(text: str, segment: str) -> str:
    if not _FIELD_RE.fullmatch(text):
        raise QueryError(f"bad field name {text!r} in segment {segment!r}")
    return text


def _parse_condition(text: str, segment: str) -> Condition:
    match = _FIELD_RE.match(text)
    if match is None:
        raise QueryError(f"segment {segment!r} does not start with a field name")
    field, rest = match.group(), text[match.end() :]
    for op in OPERATORS:
        if rest.startswith(op):
            value = rest[len(op) :]
            if op in _UNARY and value:
                raise QueryError(f"{op} takes no value, got {value!r} in segment {segment!r}")
            return Condition(field, op, value)
    raise QueryError(f"no known operator after field {field!r} in segment {segment!r}")


def parse_query(text: str) -> Query:
    """Parse a `sysparm_query` value; raises QueryError (and nothing else) when it is malformed."""
    if not isinstance(text, str):
        raise QueryError(f"query must be a string, not {type(text).__name__}")
    if text.strip() == "":
        return Query()
    groups: list[list[Condition]] = []
    order: list[Order] = []
    segments: Sequence[str] = text.split("^")
    open_paren = False  # inside "(a^ORb…)": only ^OR segments may follow until ")"
    for index, segment in enumerate(segments):
        if segment == "":
            raise QueryError(f"empty segment at position {index} in {text!r}")
        if open_paren and (not segment.startswith("OR") or segment.startswith("ORDERBY")):
            raise QueryError(f"parentheses may only group ^OR conditions, got {segment!r} inside in {text!r}")
        if segment.startswith("(") or (open_paren and segment.endswith(")")):
            opens = segment.startswith("(")
            if opens and open_paren:
                raise QueryError(f"nested parentheses are not supported in {text!r}")
            body = segment[1:] if opens else segment
            closes = body.endswith(")")
            body = body[:-1] if closes else body
            if opens:
                groups.append([_parse_condition(body, segment)])
            else:
                groups[-1].append(_parse_condition(body[2:], segment))
            open_paren = not closes
            continue
        if segment.startswith("ORDERBYDESC"):
            order.append(Order(_parse_field(segment[len("ORDERBYDESC") :], segment), True))
        elif segment.startswith("ORDERBY"):
            order.append(Order(_parse_field(segment[len("ORDERBY") :], segment), False))
        elif segment == "EQ":
            if index != len(segments) - 1:
                raise QueryError("EQ may only end a query")
        elif segment.startswith("OR"):
            if not groups:
                raise QueryError(f"^OR with no condition before it in {text!r}")
            groups[-1].append(_parse_condition(segment[2:], segment))
        else:
            groups.append([_parse_condition(segment, segment)])
    if open_paren:
        raise QueryError(f"'(' is never closed in {text!r}")
    return Query(tuple(tuple(g) for g in groups), tuple(order))
