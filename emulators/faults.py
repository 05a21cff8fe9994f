"""What the emulators' fault switches have in common: rules armed for the next `count` matching
requests, latency, an outage, and one JSON control message that validates all before it arms
any. Each emulator says which kinds of rule it has, what a rule matches and how it fires.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from typing import Any, ClassVar, Generic, Protocol, TypeVar

__all__ = [
    "DEFAULT_HANG_SECONDS",
    "FaultRuleLike",
    "FaultSwitches",
    "integer",
    "number",
    "optional_string",
    "rule_object",
]

# Longer than any sane client timeout; closing the emulator ends a hang early.
DEFAULT_HANG_SECONDS = 300.0


class FaultRuleLike(Protocol):
    """What the switches need of an emulator's rule (a slotted dataclass)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]  # what dataclasses.asdict asks for
    count: int  # shots left; taking one counts down

    @property
    def kind(self) -> str: ...

    @property
    def status(self) -> int: ...

    @property
    def seconds(self) -> float: ...


Rule = TypeVar("Rule", bound=FaultRuleLike)


class FaultSwitches(ABC, Generic[Rule]):
    """Armed rules, latency and outage. All are off after construction and `clear()`."""

    KINDS: ClassVar[tuple[str, ...]]
    # Control keys an emulator adds to clear, latency, outage and add.
    EXTRA_KEYS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        self.latency: float = 0.0  # seconds added before every request the emulator serves
        self.outage: bool = False  # every such request answers 503
        self._rules: list[Rule] = []

    # -- arming ------------------------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        if rule.kind not in self.KINDS:
            raise ValueError(f"unknown fault kind {rule.kind!r}; known: {', '.join(self.KINDS)}")
        if rule.count < 1:
            raise ValueError("a fault rule needs count >= 1")
        self.check(rule)
        if not 100 <= rule.status <= 599:
            raise ValueError(f"bad HTTP status {rule.status}")
        if rule.seconds < 0:
            raise ValueError("seconds must not be negative")
        self._rules.append(rule)
        return rule

    def check(self, rule: Rule) -> None:
        """Raise ValueError if this emulator cannot fire `rule` (beyond the common checks)."""

    def set_outage(self, on: bool) -> None:
        self.outage = on

    def clear(self) -> None:
        """Disarm everything: rules, latency, outage."""
        self.latency = 0.0
        self.outage = False
        self._rules.clear()

    # -- firing ------------------------------------------------------------------------------

    def take_first(self, matches: Callable[[Rule], bool]) -> Rule | None:
        """Consume one shot of the first armed rule that `matches`, in the order they were armed."""
        for rule in self._rules:
            if rule.count > 0 and matches(rule):
                rule.count -= 1
                if rule.count == 0:
                    self._rules.remove(rule)
                return rule
        return None

    def pending(self) -> list[Rule]:
        return list(self._rules)

    # -- HTTP control ------------------------------------------------------------------------

    @abstractmethod
    def rule_from_json(self, item: object) -> Rule:
        """One rule of a control message's `add` list; ValueError if it is malformed."""

    def check_extra(self, spec: Mapping[str, Any]) -> None:
        """Validate the emulator's own keys of a control message (ValueError)."""

    def apply_extra(self, spec: Mapping[str, Any]) -> None:
        """Apply the emulator's own keys of a validated control message."""

    def extra_snapshot(self) -> dict[str, Any]:
        return {}

    def configure(self, spec: Mapping[str, Any]) -> None:
        """Apply a JSON control message: {"clear": true, "latency": 0.2, "outage": false,
        "add": [rule, ...], ...the emulator's own keys}. Raises ValueError on anything
        malformed, having changed nothing."""
        known = {"clear", "latency", "outage", "add"} | self.EXTRA_KEYS
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
        latency = spec.get("latency")
        if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)):
            raise ValueError("latency must be a number of seconds")
        if latency is not None and latency < 0:
            raise ValueError("latency must not be negative")
        outage = spec.get("outage")
        if outage is not None and not isinstance(outage, bool):
            raise ValueError("outage must be true or false")
        self.check_extra(spec)
        added = spec.get("add", [])
        if not isinstance(added, list):
            raise ValueError("'add' must be a list of rules")
        rules = [self.rule_from_json(item) for item in added]
        probe = type(self)()
        for rule in rules:
            probe.add(rule)  # validate all before arming any
        if spec.get("clear"):
            self.clear()
        if latency is not None:
            self.latency = float(latency)
        if outage is not None:
            self.outage = outage
        self.apply_extra(spec)
        for rule in rules:
            self.add(rule)

    def snapshot(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "outage": self.outage,
            **self.extra_snapshot(),
            "rules": [asdict(rule) for rule in self._rules],
        }


# -- reading a rule from JSON -------------------------------------------------------------------


def rule_object(item: object, allowed: Iterable[str], kinds: tuple[str, ...]) -> dict[str, Any]:
    """`item` as a rule's JSON object with only `allowed` keys and a known `kind`."""
    if not isinstance(item, dict):
        raise ValueError("each rule must be a JSON object")
    unknown = set(item) - set(allowed)
    if unknown:
        raise ValueError(f"unknown rule keys {sorted(unknown)}")
    kind = item.get("kind")
    if kind not in kinds:
        raise ValueError(f"rule kind must be one of {kinds}, got {kind!r}")
    return item


def integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def optional_string(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value
