"""The telemetry port: what the engine, its workers and the channels report for metrics.

The engine names what happened (the constants below) with a few string labels; an adapter
(adapters/web/metrics.py) turns that into Prometheus metrics. The engine never imports a
metrics client, and without an adapter nothing is recorded (NULL_TELEMETRY).
"""

from __future__ import annotations

from typing import Final, Protocol

# What is counted (Telemetry.count), with its labels.
EVENTS_RECEIVED: Final = "events_received"  # channel: a user event reached the engine
EVENTS_HANDLED: Final = "events_handled"  # channel: its step committed
EVENTS_DEDUPLICATED: Final = "events_deduplicated"  # channel: handled before, dropped
ACTION_OUTCOMES: Final = "action_outcomes"  # action, outcome: an action of a committed step
FLOW_COUNTS: Final = "flow_counts"  # counter: a transition's `count:` of a committed step
PICKS: Final = "picks"  # state, source: an item of a pick list chosen (source: the list's slot)
OUTBOX_QUEUED: Final = "outbox_queued"  # kind: an item committed with a step
OUTBOX_FINISHED: Final = "outbox_finished"  # kind, state (done|failed): an item's outcome
OUTBOX_RETRIED: Final = "outbox_retried"  # kind: an attempt that will be tried again
REPLIES_SENT: Final = "replies_sent"  # channel: a message the bot sent
CHANNEL_ERRORS: Final = "channel_errors"  # channel, code: an error the channel's API answered
NOTICES_SENT: Final = "notices_sent"  # kind (status|comment|outbox|…): a notice delivered
TICKET_SYSTEM_ERRORS: Final = "ticket_system_errors"  # operation, error: a SimpleOne call failed

# What is timed (Telemetry.observe), in seconds.
STEP_SECONDS: Final = "step_seconds"  # channel: one user event, from arrival to its replies
TICKET_SYSTEM_SECONDS: Final = "ticket_system_seconds"  # operation: one SimpleOne call


class Telemetry(Protocol):
    def count(self, name: str, amount: float = 1.0, /, **labels: str) -> None:
        """`name` happened `amount` times more."""
        ...

    def observe(self, name: str, seconds: float, /, **labels: str) -> None:
        """One `name` took `seconds`."""
        ...

    def active(self, peer: str) -> None:
        """The peer took a step now (for an approximate count of active sessions)."""
        ...


class NullTelemetry:
    """Records nothing: the engine's default, and what tests and the terminal chat use."""

    def count(self, name: str, amount: float = 1.0, /, **labels: str) -> None:
        pass

    def observe(self, name: str, seconds: float, /, **labels: str) -> None:
        pass

    def active(self, peer: str) -> None:
        pass


NULL_TELEMETRY: Final[Telemetry] = NullTelemetry()


def channel_of(peer: str) -> str:
    """The channel a peer belongs to ("vk:123" → "vk"): a label of bounded cardinality."""
    return peer.split(":", 1)[0] if ":" in peer else "other"
