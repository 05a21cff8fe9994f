"""Fault switches of the fake VK server: what the next requests should suffer.

Settable from Python (tests) and over HTTP (`POST /_vk/faults`, see `VkFaults.configure`).
A rule fires for the next `count` calls that match its target: an API method name
("messages.send"), None for any API method, or LONG_POLL for the long-poll server's requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, cast, get_args

from emulators.faults import DEFAULT_HANG_SECONDS, FaultSwitches, integer, number, optional_string, rule_object

__all__ = ["DEFAULT_HANG_SECONDS", "ERROR_TEXTS", "FAULT_KINDS", "LONG_POLL", "FaultKind", "VkFaultRule", "VkFaults"]

FaultKind = Literal["error", "drop", "hang", "http"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
RULE_KEYS = frozenset({"kind", "count", "code", "method", "status", "seconds"})

LONG_POLL = "longpoll"  # the target name of a_check requests

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


class VkFaults(FaultSwitches[VkFaultRule]):
    """The fake server's fault switches (latency and outage cover API, long poll and files).
    All are off after construction and `clear()`."""

    KINDS: ClassVar[tuple[str, ...]] = FAULT_KINDS

    def check(self, rule: VkFaultRule) -> None:
        if rule.kind == "error" and rule.method == LONG_POLL:
            raise ValueError("the long-poll server has no VK error codes; use drop, hang or http")

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

    def take(self, target: str, *, network: bool) -> VkFaultRule | None:
        """Consume one shot of the first armed rule of this layer that matches the call.

        Network rules (drop, hang, http) act before the request is read; error rules act where
        VK answers errors, after the token and the rate limit were checked.
        """
        return self.take_first(lambda rule: (rule.kind != "error") == network and rule.applies_to(target))

    # e.g. {"clear": true, "latency": 0.2, "outage": false,
    #       "add": [{"kind": "error", "count": 3, "code": 6, "method": "messages.send"},
    #               {"kind": "drop", "method": "longpoll"}]}
    def rule_from_json(self, item: object) -> VkFaultRule:
        fields = rule_object(item, RULE_KEYS, FAULT_KINDS)
        count = integer("count", fields.get("count", 1))
        code = integer("code", fields.get("code", 10))
        status = integer("status", fields.get("status", 502))
        seconds = number("seconds", fields.get("seconds", DEFAULT_HANG_SECONDS))
        method = optional_string("method", fields.get("method"))
        return VkFaultRule(cast(FaultKind, fields["kind"]), count, code, method, status, seconds)
