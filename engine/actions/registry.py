"""The registry of named actions that flows run on entering a state.

An action is an async function of an ActionContext that returns the name of an outcome event,
or None when it only updates slots (then the next action of the state runs). Each declares the
outcomes it can return and the slots it writes, so that flowlint can check that every outcome is
handled and every template slot exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.actions.context import ActionContext


@dataclass(frozen=True, slots=True)
class Shape:
    """What a slot holds, as far as templates care: a value, a record, or a list of records."""

    fields: frozenset[str] = frozenset()
    is_list: bool = False

    @classmethod
    def record(cls, *names: str) -> Shape:
        return cls(frozenset(names))

    @classmethod
    def list_of(cls, *names: str) -> Shape:
        return cls(frozenset(names), is_list=True)


VALUE = Shape()

ActionFn = Callable[["ActionContext"], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class ActionInfo:
    name: str
    emits: frozenset[str]
    writes: Mapping[str, Shape]
    fn: ActionFn
    doc: str
    # Events fired later, in the state the action's outcome led to, when the SimpleOne work it
    # queued has an outcome within the wait (see Engine.settle).
    settles: frozenset[str] = frozenset()
    # It acts outside the step's commit (mails a letter, writes storage itself): run only for an
    # event made sure to be new (Turn.confirm_new), never for a duplicate on its way to refusal.
    outside: bool = False


class ActionRegistry:
    def __init__(self) -> None:
        self._actions: dict[str, ActionInfo] = {}

    def register(
        self, name: str, *, emits: set[str], writes: Mapping[str, Shape] | None = None,
        settles: set[str] | None = None, outside: bool = False,
    ) -> Callable[[ActionFn], ActionFn]:
        def decorate(fn: ActionFn) -> ActionFn:
            if name in self._actions:
                raise ValueError(f"action {name!r} registered twice")
            doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
            self._actions[name] = ActionInfo(name, frozenset(emits), dict(writes or {}), fn, doc,
                                             frozenset(settles or ()), outside)
            return fn

        return decorate

    def get(self, name: str) -> ActionInfo | None:
        return self._actions.get(name)

    def all(self) -> list[ActionInfo]:
        return sorted(self._actions.values(), key=lambda a: a.name)


REGISTRY = ActionRegistry()
action = REGISTRY.register
