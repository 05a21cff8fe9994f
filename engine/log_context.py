"""What a log line is about, set by the engine per event: the peer, the event's id, the dialogue's
state. Context variables, so every line logged while the event is handled (by the engine, an
action, a storage call) carries them without being handed them; the log's formatter reads them
(supportbot/logs.py), the rest of the engine never does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

peer_var: ContextVar[str | None] = ContextVar("supportbot_log_peer", default=None)
event_var: ContextVar[str | None] = ContextVar("supportbot_log_event", default=None)
state_var: ContextVar[str | None] = ContextVar("supportbot_log_state", default=None)


@contextmanager
def about(peer: str, event_id: str | None) -> Iterator[None]:
    """Lines logged inside are about this peer and event (the state as the engine learns it)."""
    tokens = (peer_var.set(peer), event_var.set(event_id), state_var.set(None))
    try:
        yield
    finally:
        state_var.reset(tokens[2])
        event_var.reset(tokens[1])
        peer_var.reset(tokens[0])


def in_state(state: str) -> None:
    state_var.set(state)
