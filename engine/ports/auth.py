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


@dataclass(frozen=True, slots=True)
class SendStats:
    """Codes mailed since a time (inclusive): by this peer (to any address), to this address (by
    any peer), by this peer to this address; the latest of the last kind (resend cooldown); and
    the earliest by this peer and the earliest to this address by other peers (when a cap frees)."""

    by_peer: int
    by_email: int
    by_pair: int
    last_pair_at: float | None
    first_peer_at: float | None = None
    first_others_at: float | None = None


@dataclass(frozen=True, slots=True)
class SignInWrites:
    """What one step changed in its peer's sign-in, committed with the step (StepCommit.sign_in)
    or not at all: the binding and the pending code as the step left them. (Code sends are not
    here: a quota shared by all users is claimed before the letter leaves, SignInCodes.reserve_send.)"""

    peer: str
    binding_changed: bool = False
    binding: Binding | None = None  # when changed: the new binding, or None (signed out)
    code_changed: bool = False
    code: PendingCode | None = None  # when changed: the new code state, or None (gone)

    def __bool__(self) -> bool:
        return self.binding_changed or self.code_changed


class Bindings(Protocol):
    """Peers bound to a corporate email and the SimpleOne person behind it.

    The engine's steps change bindings only through StepCommit.sign_in; put_binding and
    delete_binding are for set-up outside a dialogue (tests, tools, an admin's fix)."""

    async def get_binding(self, peer: str) -> Binding | None: ...

    async def put_binding(self, binding: Binding) -> None: ...

    async def delete_binding(self, peer: str) -> None: ...


class SignInCodes(Protocol):
    """Sign-in codes waiting to be entered, and the sends that quotas count; written only by a
    step's commit (StepCommit.sign_in)."""

    async def get_code(self, peer: str) -> PendingCode | None: ...

    async def code_send_stats(self, peer: str, email: str, since: float) -> SendStats: ...

    async def reserve_send(self, peer: str, email: str, at: float, since: float, *, peer_cap: int,
                           others_cap: int) -> bool:
        """Count a code send (peer to email, at `at`) if, since `since`, the peer has sent fewer
        than peer_cap, and strangers (peers that never signed in with the address, this one
        included) fewer than others_cap to it, all together; a peer that signed in with the
        address before is held only by its own cap. Atomic, whatever other users and workers do at the same moment;
        False, counting nothing, when a cap is reached. Claimed before the letter leaves."""
        ...

    async def release_send(self, peer: str, email: str, at: float) -> None:
        """Take back a reserved send whose letter did not leave (the mail server was down)."""
        ...
