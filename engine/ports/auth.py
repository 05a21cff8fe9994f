"""The sign-in port: peers bound to verified emails, pending codes and how many were mailed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Binding:
    """A channel peer bound to a verified corporate email and the SimpleOne person behind it."""

    peer: str
    email: str
    caller_id: str
    name: str
    bound_at: float


@dataclass(frozen=True, slots=True)
class PendingCode:
    """A sign-in code waiting to be entered; only its salted hash is stored."""

    peer: str
    email: str
    code_hash: bytes
    salt: bytes
    created_at: float
    expires_at: float
    attempts: int = 0
    # The session version of the step that last wrote the code (sent it, or used it), and
    # whether it was used. A step that wrote it and then never committed (its process died) is
    # recognised when the event is handled again: the session is still at that version.
    step: int = -1
    used: bool = False
    mailed: bool = False  # the mail server took the letter (a redone step need not send again)


@dataclass(frozen=True, slots=True)
class SendStats:
    """Codes mailed since a time (inclusive): by this peer (to any address), to this address (by
    any peer), by this peer to this address; and the latest of the last kind (resend cooldown)."""

    by_peer: int
    by_email: int
    by_pair: int
    last_pair_at: float | None


class Bindings(Protocol):
    """Peers bound to a corporate email and the SimpleOne person behind it."""

    async def get_binding(self, peer: str) -> Binding | None: ...

    async def put_binding(self, binding: Binding) -> None: ...

    async def delete_binding(self, peer: str) -> None: ...


class SignInCodes(Protocol):
    """Sign-in codes waiting to be entered, and the sends that quotas count."""

    async def put_code(self, code: PendingCode) -> None:
        """Store a new code for code.peer, replacing any earlier one."""
        ...

    async def get_code(self, peer: str) -> PendingCode | None: ...

    async def add_code_attempt(self, peer: str) -> int:
        """Count one wrong entry against the peer's code; returns the attempts so far (0 if none)."""
        ...

    async def delete_code(self, peer: str) -> None: ...

    async def record_code_sent(self, peer: str, email: str, at: float) -> None: ...

    async def code_send_stats(self, peer: str, email: str, since: float) -> SendStats: ...
