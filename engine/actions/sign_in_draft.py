"""A step's view of its peer's sign-in: read from storage when first asked, changed in memory,
and committed with the step (StepCommit.sign_in) or not at all.

So an action later in the same step sees what an earlier one did (tickets.create right after
auth.bind finds the binding), and a step whose process dies before its commit leaves no trace:
its redo starts from what was committed, with no bookkeeping of half-done steps.
"""

from __future__ import annotations

from enum import Enum
from typing import Final, Literal, Protocol

from engine.ports import Binding, PendingCode, SignInWrites


class _Unread(Enum):
    UNREAD = "unread"


_UNREAD: Final = _Unread.UNREAD


class SignInReader(Protocol):
    async def get_binding(self, peer: str) -> Binding | None: ...

    async def get_code(self, peer: str) -> PendingCode | None: ...



class SignInDraft:
    """The peer's binding and pending code within one step."""

    __slots__ = ("_binding", "_binding_changed", "_code", "_code_changed", "_store", "peer")

    def __init__(self, store: SignInReader, peer: str) -> None:
        self._store = store
        self.peer = peer
        self._binding: Binding | Literal[_Unread.UNREAD] | None = _UNREAD
        self._code: PendingCode | Literal[_Unread.UNREAD] | None = _UNREAD
        self._binding_changed = False
        self._code_changed = False

    async def binding(self) -> Binding | None:
        if self._binding is _UNREAD:
            self._binding = await self._store.get_binding(self.peer)
        return self._binding

    def bind(self, binding: Binding | None) -> None:
        """Bind the peer (None: unbind it) when the step commits."""
        self._binding, self._binding_changed = binding, True

    async def code(self) -> PendingCode | None:
        if self._code is _UNREAD:
            self._code = await self._store.get_code(self.peer)
        return self._code

    def set_code(self, code: PendingCode | None) -> None:
        """The pending code as the step leaves it (None: gone)."""
        self._code, self._code_changed = code, True

    def writes(self) -> SignInWrites | None:
        """What the step changed, for its commit; None when nothing."""
        found = SignInWrites(
            self.peer,
            self._binding_changed,
            self._binding if self._binding is not _UNREAD else None,
            self._code_changed,
            self._code if self._code is not _UNREAD else None,
        )
        return found if found else None
