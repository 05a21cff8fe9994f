"""A step's sign-in draft: reads through to storage once, shows the step its own changes, and
hands the commit exactly what changed."""

from __future__ import annotations

from engine.actions.sign_in_draft import SignInDraft
from engine.ports import Binding, PendingCode, SignInWrites

STORED = Binding("vk:1", "old@ranepa.ru", "sys-1", "Старый", 1.0)
CODE = PendingCode("vk:1", "a@ranepa.ru", b"h" * 32, b"salt", 100.0, 700.0)


class Store:
    def __init__(self) -> None:
        self.reads = 0

    async def get_binding(self, peer: str) -> Binding | None:
        self.reads += 1
        return STORED

    async def get_code(self, peer: str) -> PendingCode | None:
        self.reads += 1
        return CODE



async def test_nothing_read_or_changed_commits_nothing() -> None:
    draft = SignInDraft(Store(), "vk:1")
    assert draft.writes() is None


async def test_reads_go_to_storage_once_and_changes_are_seen_by_later_actions() -> None:
    store = Store()
    draft = SignInDraft(store, "vk:1")
    assert await draft.binding() == STORED
    assert await draft.binding() == STORED
    fresh = Binding("vk:1", "new@ranepa.ru", "sys-2", "Новый", 2.0)
    draft.bind(fresh)
    assert await draft.binding() == fresh
    assert await draft.code() == CODE
    draft.set_code(None)
    assert await draft.code() is None
    assert store.reads == 2
    assert draft.writes() == SignInWrites("vk:1", True, fresh, True, None)


async def test_a_read_alone_changes_nothing() -> None:
    draft = SignInDraft(Store(), "vk:1")
    await draft.binding()
    await draft.code()
    assert draft.writes() is None


async def test_unbinding_is_a_change_to_none() -> None:
    draft = SignInDraft(Store(), "vk:1")
    draft.bind(None)
    assert await draft.binding() is None
    assert draft.writes() == SignInWrites("vk:1", binding_changed=True, binding=None)
