"""Fault switches of the SimpleOne emulator: what the next requests should suffer.

Settable from Python (tests) and over HTTP (`POST /_emulator/faults`, see `Faults.configure`).
A rule fires for the next `count` requests that match its method and path prefix; an
`after_write` rule fires only on writes (create, update, delete, upload) and only after the
write has been done, which is the case exactly-once logic has to survive.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast, get_args

FaultKind = Literal["error", "html", "hang", "drop"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

# Longer than any sane client timeout; closing the emulator ends a hang early.
DEFAULT_HANG_SECONDS = 300.0


@dataclass(slots=True)
class FaultRule:
    """One armed fault.

    kind: "error" answers `status` with a JSON error; "html" answers `status` with an HTML page
    (use 200 to imitate a proxy's login page); "hang" waits `seconds` and then drops the
    connection; "drop" closes the connection without an answer.
    """

    kind: FaultKind
    count: int = 1
    status: int = 500
    method: str | None = None
    path_prefix: str | None = None
    after_write: bool = False
    seconds: float = DEFAULT_HANG_SECONDS

    def applies_to(self, method: str, path: str) -> bool:
        if self.count <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


class Faults:
    """The emulator's fault switches. All of them are off after construction and `clear()`."""

    def __init__(self) -> None:
        self.latency: float = 0.0  # seconds added before every API request
        self.outage: bool = False  # every API request answers 503
        # A share of API requests that fail at random (benchmarks, soak tests): half of them
        # before the request is handled, half after a write was done (the unclear case).
        self.error_rate: float = 0.0
        self.rng = random.Random(0)
        # Tokens carry the generation they were issued in; bumping it expires them all.
        self.token_generation: int = 0
        self._rules: list[FaultRule] = []

    # -- arming ------------------------------------------------------------------------------

    def add(self, rule: FaultRule) -> FaultRule:
        if rule.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {rule.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if rule.count < 1:
            raise ValueError("a fault rule needs count >= 1")
        if not 100 <= rule.status <= 599:
            raise ValueError(f"bad HTTP status {rule.status}")
        if rule.seconds < 0:
            raise ValueError("seconds must not be negative")
        self._rules.append(rule)
        return rule

    def fail_next(
        self, count: int = 1, *, status: int = 500, method: str | None = None, path_prefix: str | None = None
    ) -> FaultRule:
        """The next `count` matching requests answer `status` with a JSON error body."""
        return self.add(FaultRule("error", count, status, method, path_prefix))

    def html_next(
        self, count: int = 1, *, status: int = 502, method: str | None = None, path_prefix: str | None = None
    ) -> FaultRule:
        """The next `count` matching requests answer an HTML page (status 200 = a proxy login page)."""
        return self.add(FaultRule("html", count, status, method, path_prefix))

    def hang_next(
        self,
        count: int = 1,
        *,
        seconds: float = DEFAULT_HANG_SECONDS,
        method: str | None = None,
        path_prefix: str | None = None,
    ) -> FaultRule:
        """The next `count` matching requests get no answer for `seconds`, then a dropped connection."""
        return self.add(FaultRule("hang", count, method=method, path_prefix=path_prefix, seconds=seconds))

    def drop_next(
        self, count: int = 1, *, method: str | None = None, path_prefix: str | None = None
    ) -> FaultRule:
        """The next `count` matching requests have their connection closed without an answer."""
        return self.add(FaultRule("drop", count, method=method, path_prefix=path_prefix))

    def fail_after_write(
        self,
        count: int = 1,
        *,
        mode: FaultKind = "error",
        status: int = 500,
        method: str | None = None,
        path_prefix: str | None = None,
        seconds: float = DEFAULT_HANG_SECONDS,
    ) -> FaultRule:
        """The next `count` matching writes are performed, then answered with `mode` instead."""
        return self.add(FaultRule(mode, count, status, method, path_prefix, True, seconds))

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on (401); new logins work."""
        self.token_generation += 1

    def set_outage(self, on: bool) -> None:
        self.outage = on

    def clear(self) -> None:
        """Disarm everything: rules, latency, outage, random errors. Issued tokens stay as they are."""
        self.latency = 0.0
        self.outage = False
        self.error_rate = 0.0
        self._rules.clear()

    # -- firing ------------------------------------------------------------------------------

    def set_error_rate(self, rate: float, seed: int = 0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("error_rate must be from 0 to 1")
        self.error_rate = rate
        self.rng = random.Random(seed)

    def take(self, method: str, path: str, *, after_write: bool) -> FaultRule | None:
        """Consume one shot of the first armed rule of this phase that matches the request, or
        draw a random error (error_rate), split evenly between the two phases."""
        if self.error_rate and self.rng.random() < self.error_rate / 2:
            return FaultRule("error", status=500)
        for rule in self._rules:
            if rule.after_write == after_write and rule.applies_to(method, path):
                rule.count -= 1
                if rule.count == 0:
                    self._rules.remove(rule)
                return rule
        return None

    def pending(self) -> list[FaultRule]:
        return list(self._rules)

    # -- HTTP control ------------------------------------------------------------------------

    def configure(self, spec: Mapping[str, Any]) -> None:
        """Apply a JSON control message, e.g.

        {"clear": true, "latency": 0.2, "outage": false, "expire_tokens": true,
         "add": [{"kind": "error", "count": 2, "status": 500, "method": "POST",
                  "path_prefix": "/rest/v1/table/itsm_incident", "after_write": false}]}

        Raises ValueError on anything malformed, having changed nothing.
        """
        known = {"clear", "latency", "outage", "expire_tokens", "add", "error_rate"}
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
        rate = spec.get("error_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1):
            raise ValueError("error_rate must be a number from 0 to 1")
        rules = [_rule_from_json(item) for item in _as_list(spec.get("add", []))]
        probe = Faults()
        for rule in rules:
            probe.add(rule)  # validate all before arming any
        if spec.get("clear"):
            self.clear()
        if latency is not None:
            self.latency = float(latency)
        if outage is not None:
            self.outage = outage
        if rate is not None:
            self.set_error_rate(float(rate))
        if spec.get("expire_tokens"):
            self.expire_tokens()
        for rule in rules:
            self.add(rule)

    def snapshot(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "outage": self.outage,
            "error_rate": self.error_rate,
            "token_generation": self.token_generation,
            "rules": [asdict(rule) for rule in self._rules],
        }


def _as_list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise ValueError("'add' must be a list of rules")
    return value


def _rule_from_json(item: object) -> FaultRule:
    if not isinstance(item, dict):
        raise ValueError("each rule must be a JSON object")
    allowed = {"kind", "count", "status", "method", "path_prefix", "after_write", "seconds"}
    unknown = set(item) - allowed
    if unknown:
        raise ValueError(f"unknown rule keys {sorted(unknown)}")
    kind = item.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"rule kind must be one of {FAULT_KINDS}, got {kind!r}")
    count = item.get("count", 1)
    status = item.get("status", 502 if kind == "html" else 500)
    seconds = item.get("seconds", DEFAULT_HANG_SECONDS)
    for name, value in (("count", count), ("status", status)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError("seconds must be a number")
    method, prefix = item.get("method"), item.get("path_prefix")
    if method is not None and not isinstance(method, str):
        raise ValueError("method must be a string")
    if prefix is not None and not isinstance(prefix, str):
        raise ValueError("path_prefix must be a string")
    return FaultRule(
        cast(FaultKind, kind), count, status, method, prefix, bool(item.get("after_write")), float(seconds)
    )
