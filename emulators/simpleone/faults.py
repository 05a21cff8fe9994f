"""Fault switches of the SimpleOne emulator: what the next requests should suffer.

Settable from Python (tests) and over HTTP (`POST /_emulator/faults`, see `Faults.configure`).
A rule fires for the next `count` requests that match its method and path prefix; an
`after_write` rule fires only on writes (create, update, delete, upload) and only after the
write has been done, which is the case exactly-once logic has to survive.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast, get_args

from emulators.faults import DEFAULT_HANG_SECONDS, FaultSwitches, integer, number, optional_string, rule_object

__all__ = ["DEFAULT_HANG_SECONDS", "FAULT_KINDS", "FaultKind", "FaultRule", "Faults"]

FaultKind = Literal["error", "html", "hang", "drop"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
RULE_KEYS = frozenset({"kind", "count", "status", "method", "path_prefix", "after_write", "seconds"})


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


class Faults(FaultSwitches[FaultRule]):
    """The emulator's fault switches. All of them are off after construction and `clear()`."""

    KINDS: ClassVar[tuple[str, ...]] = FAULT_KINDS
    EXTRA_KEYS: ClassVar[frozenset[str]] = frozenset({"expire_tokens", "error_rate", "fail_every"})

    def __init__(self) -> None:
        super().__init__()
        # A share of API requests that fail at random (benchmarks, soak tests): half of them
        # before the request is handled, half after a write was done (the unclear case).
        self.error_rate: float = 0.0
        self.rng = random.Random(0)
        # Tokens carry the generation they were issued in; bumping it expires them all.
        self.token_generation: int = 0
        # Every n-th API request (0: none) answers 500 before it is handled: a SimpleOne that
        # fails one request in n, deterministically (a test switch, not a behaviour of SimpleOne).
        self.fail_every: int = 0
        self._requests_seen: int = 0

    # -- arming ------------------------------------------------------------------------------

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

    def set_fail_every(self, n: int) -> None:
        """From now on every n-th API request (the n-th, 2n-th, … counted from here) answers
        500 before it is handled; 0 turns it off."""
        if n < 0:
            raise ValueError("fail_every must not be negative")
        self.fail_every = n
        self._requests_seen = 0

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on (401); new logins work."""
        self.token_generation += 1

    def clear(self) -> None:
        """Disarm everything: rules, latency, outage, random errors. Issued tokens stay as they are."""
        super().clear()
        self.error_rate = 0.0
        self.set_fail_every(0)

    # -- firing ------------------------------------------------------------------------------

    def set_error_rate(self, rate: float, seed: int = 0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("error_rate must be from 0 to 1")
        self.error_rate = rate
        self.rng = random.Random(seed)

    def take(self, method: str, path: str, *, after_write: bool) -> FaultRule | None:
        """Consume one shot of the first armed rule of this phase that matches the request, or
        draw a random error (error_rate), split evenly between the two phases; every
        fail_every-th request fails before it is handled."""
        if self.fail_every and not after_write:
            self._requests_seen += 1
            if self._requests_seen % self.fail_every == 0:
                return FaultRule("error", status=500)
        if self.error_rate and self.rng.random() < self.error_rate / 2:
            return FaultRule("error", status=500)
        return self.take_first(lambda rule: rule.after_write == after_write and rule.applies_to(method, path))

    # -- HTTP control ------------------------------------------------------------------------
    # e.g. {"clear": true, "latency": 0.2, "outage": false, "expire_tokens": true, "error_rate": 0.1,
    #       "fail_every": 3,
    #       "add": [{"kind": "error", "count": 2, "status": 500, "method": "POST",
    #                "path_prefix": "/rest/v1/table/itsm_incident", "after_write": false}]}

    def check_extra(self, spec: Mapping[str, Any]) -> None:
        rate = spec.get("error_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1):
            raise ValueError("error_rate must be a number from 0 to 1")
        every = spec.get("fail_every")
        if every is not None and integer("fail_every", every) < 0:
            raise ValueError("fail_every must not be negative")

    def apply_extra(self, spec: Mapping[str, Any]) -> None:
        if spec.get("error_rate") is not None:
            self.set_error_rate(float(spec["error_rate"]))
        if spec.get("expire_tokens"):
            self.expire_tokens()
        if spec.get("fail_every") is not None:
            self.set_fail_every(int(spec["fail_every"]))

    def extra_snapshot(self) -> dict[str, Any]:
        return {"error_rate": self.error_rate, "token_generation": self.token_generation,
                "fail_every": self.fail_every}

    def rule_from_json(self, item: object) -> FaultRule:
        fields = rule_object(item, RULE_KEYS, FAULT_KINDS)
        kind = cast(FaultKind, fields["kind"])
        count = integer("count", fields.get("count", 1))
        status = integer("status", fields.get("status", 502 if kind == "html" else 500))
        seconds = number("seconds", fields.get("seconds", DEFAULT_HANG_SECONDS))
        method = optional_string("method", fields.get("method"))
        prefix = optional_string("path_prefix", fields.get("path_prefix"))
        return FaultRule(kind, count, status, method, prefix, bool(fields.get("after_write")), seconds)
