"""Any TicketSystem with every call timed and every failure counted, by operation (the port's
method name: create_ticket, find_person, …), for the SimpleOne metrics."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any, cast

from engine.ports import TicketSystem, TicketSystemRejected, TicketSystemUnavailable
from engine.ports.telemetry import TICKET_SYSTEM_ERRORS, TICKET_SYSTEM_SECONDS, Telemetry

# The port's operations, and only those: a label value per method, a bounded set.
OPERATIONS = frozenset(name for name, member in inspect.getmembers(TicketSystem)
                       if inspect.iscoroutinefunction(member) and not name.startswith("_") and name != "close")


def error_kind(exc: BaseException) -> str:
    """A failure as a label: SimpleOne down or slow (the breaker's business), or it said no."""
    if isinstance(exc, TicketSystemUnavailable):
        return "unavailable"
    if isinstance(exc, TicketSystemRejected):
        return "rejected"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "error"


class TimedTicketSystem:
    """Wraps the client the engine and the workers get; the wiring closes the client itself."""

    def __init__(self, inner: TicketSystem, telemetry: Telemetry) -> None:
        self._inner = inner
        self._telemetry = telemetry

    def __getattr__(self, name: str) -> Any:
        member = getattr(self._inner, name)
        if name not in OPERATIONS:
            return member
        return self._timed(name, member)

    def _timed(self, operation: str, call: Callable[..., Any]) -> Callable[..., Any]:
        telemetry = self._telemetry

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            except Exception as exc:  # a cancelled call is no failure of SimpleOne's
                telemetry.count(TICKET_SYSTEM_ERRORS, operation=operation, error=error_kind(exc))
                raise
            finally:
                telemetry.observe(TICKET_SYSTEM_SECONDS, time.perf_counter() - started, operation=operation)

        return timed


def timed_ticket_system(inner: TicketSystem, telemetry: Telemetry) -> TicketSystem:
    """inner, its calls measured (typed as the port: the proxy forwards every attribute)."""
    return cast(TicketSystem, TimedTicketSystem(inner, telemetry))
