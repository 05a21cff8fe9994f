"""Fault switches of the fake VK server: what the next requests should suffer.

Settable from Python (tests) and over HTTP (`POST /_vk/faults`, see `VkFaults.configure`).
A rule fires for the next `count` calls that match its target: an API method name
("messages.send"), None for any API method, or LONG_POLL for the long-poll server's requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast, get_args

FaultKind = Literal["error", "drop", "hang", "http"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

LONG_POLL = "longpoll"  # the target name of a_check requests
DEFAULT_HANG_SECONDS = 300.0  # longer than any sane client timeout; closing ends a hang early

# VK's own texts for the codes a test is likely to inject.
ERROR_TEXTS: Mapping[int, str] = {
    1: "Unknown error occurred",
    5: "User authorization failed: invalid access_token",
    6: "Too many requests per second",
    9: "Flood control",
    10: "Internal server error",
    29: "Rate limit reached",
    901: "Can't send messages for users without permission",
}


@dataclass(slots=True)
class VkFaultRule:
    """One armed fault.

    kind: "error" answers VK error `code` (API methods only); "drop" closes the connection with
    no answer; "hang" holds the request `seconds`, then drops it; "http" answers HTTP `status`
    with a plain-text body, as a front end in trouble would.
    """

    kind: FaultKind
    count: int = 1
    code: int = 10
    method: str | None = None
    status: int = 502
    seconds: float = DEFAULT_HANG_SECONDS

    @property
    def message(self) -> str:
        return ERROR_TEXTS.get(self.code, "Unknown error occurred")

    def applies_to(self, target: str) -> bool:
        if self.count <= 0:
            return False
        if self.method is None:
            return target != LONG_POLL
        return self.method == target


class VkFaults:
    """The fake server's fault switches. All are off after construction and `clear()`."""

    def __init__(self) -> None:
        self.latency: float = 0.0  # seconds added before every API call and long-poll answer
        self.outage: bool = False  # API, long poll and files all answer HTTP 503
        self._rules: list[VkFaultRule] = []

    # -- arming ------------------------------------------------------------------------------

    def add(self, rule: VkFaultRule) -> VkFaultRule:
        if rule.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {rule.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if rule.count < 1:
            raise ValueError("a fault rule needs count >= 1")
        if rule.kind == "error" and rule.method == LONG_POLL:
            raise ValueError("the long-poll server has no VK error codes; use drop, hang or http")
        if not 100 <= rule.status <= 599:
            raise ValueError(f"bad HTTP status {rule.status}")
        if rule.seconds < 0:
            raise ValueError("seconds must not be negative")
        self._rules.append(rule)
        return rule

    def fail_next(self, method: str | None = None, count: int = 1, *, code: int = 10) -> VkFaultRule:
        """The next `count` calls of `method` (None: any method) answer VK error `code`."""
        return self.add(VkFaultRule("error", count, code, method))

    def drop_next(self, method: str | None = None, count: int = 1) -> VkFaultRule:
        """The next `count` matching requests have their connection closed without an answer."""
        return self.add(VkFaultRule("drop", count, method=method))

    def hang_next(
        self, method: str | None = None, count: int = 1, *, seconds: float = DEFAULT_HANG_SECONDS
    ) -> VkFaultRule:
        """The next `count` matching requests get no answer for `seconds`, then a dropped connection."""
        return self.add(VkFaultRule("hang", count, method=method, seconds=seconds))

    def http_next(self, method: str | None = None, count: int = 1, *, status: int = 502) -> VkFaultRule:
        """The next `count` matching requests answer HTTP `status` with a non-JSON body."""
        return self.add(VkFaultRule("http", count, method=method, status=status))

    def set_outage(self, on: bool) -> None:
        self.outage = on

    def clear(self) -> None:
        """Disarm everything: rules, latency, outage."""
        self.latency = 0.0
        self.outage = False
        self._rules.clear()

    # -- firing ------------------------------------------------------------------------------

    def take(self, target: str, *, network: bool) -> VkFaultRule | None:
        """Consume one shot of the first armed rule of this layer that matches the call.

        Network rules (drop, hang, http) act before the request is read; error rules act where
        VK answers errors, after the token and the rate limit were checked.
        """
        for rule in self._rules:
            if (rule.kind != "error") == network and rule.applies_to(target):
                rule.count -= 1
                if rule.count == 0:
                    self._rules.remove(rule)
                return rule
        return None

    def pending(self) -> list[VkFaultRule]:
        return list(self._rules)

    # -- HTTP control ------------------------------------------------------------------------

    def configure(self, spec: Mapping[str, Any]) -> None:
        """Apply a JSON control message, e.g.

        {"clear": true, "latency": 0.2, "outage": false,
         "add": [{"kind": "error", "count": 3, "code": 6, "method": "messages.send"},
                 {"kind": "drop", "method": "longpoll"}]}

        Raises ValueError on anything malformed, having changed nothing.
        """
        known = {"clear", "latency", "outage", "add"}
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
        added = spec.get("add", [])
        if not isinstance(added, list):
            raise ValueError("'add' must be a list of rules")
        rules = [_rule_from_json(item) for item in added]
        probe = VkFaults()
        for rule in rules:
            probe.add(rule)  # validate all before arming any
        if spec.get("clear"):
            self.clear()
        if latency is not None:
            self.latency = float(latency)
        if outage is not None:
            self.outage = outage
        for rule in rules:
            self.add(rule)

    def snapshot(self) -> dict[str, Any]:
        return {"latency": self.latency, "outage": self.outage, "rules": [asdict(r) for r in self._rules]}


def _rule_from_json(item: object) -> VkFaultRule:
    if not isinstance(item, dict):
        raise ValueError("each rule must be a JSON object")
    allowed = {"kind", "count", "code", "method", "status", "seconds"}
    unknown = set(item) - allowed
    if unknown:
        raise ValueError(f"unknown rule keys {sorted(unknown)}")
    kind = item.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"rule kind must be one of {FAULT_KINDS}, got {kind!r}")
    count, code, status = item.get("count", 1), item.get("code", 10), item.get("status", 502)
    for name, value in (("count", count), ("code", code), ("status", status)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
    seconds = item.get("seconds", DEFAULT_HANG_SECONDS)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError("seconds must be a number")
    method = item.get("method")
    if method is not None and not isinstance(method, str):
        raise ValueError("method must be a string")
    return VkFaultRule(cast(FaultKind, kind), count, code, method, status, float(seconds))
