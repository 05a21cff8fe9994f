"""The generic "pick from a list" state: the service catalogue (groups → entries) or a list slot.

Where the user is (level and page) lives in the reserved slot `_pick`, so it survives restarts
like every other part of the session. Items are numbered across pages; full names go in the
message text and on the buttons the short labels (catalog.yaml's `label:`, else the name, cut to
VK's 40 characters), side by side where they are short enough (`columns`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.flows.model import Catalog, FlowSet, PickSpec, StateSpec
from engine.flows.text import normalize_text
from engine.flows.vk_limits import pack, shorten
from engine.replies import Button

PICK_SLOT = "_pick"
# The list's own events: handled by the picker in place; a choice becomes the event 'chosen'.
NAVIGATION = ("pick", "pick_next", "pick_prev", "pick_up")
TOP = -1


@dataclass(frozen=True, slots=True)
class Item:
    title: str  # full name, for the message text
    label: str  # for the button, at most MAX_LABEL characters
    value: dict[str, Any] | None  # the slot value when picked; None for a catalogue group


@dataclass(frozen=True, slots=True)
class View:
    items: list[Item]
    group: int  # TOP, or the index of the open catalogue group
    page: int
    pages: int
    page_size: int

    @property
    def first(self) -> int:
        return self.page * self.page_size

    def page_items(self) -> list[tuple[int, Item]]:
        return list(enumerate(self.items))[self.first : self.first + self.page_size]


def position(slots: dict[str, Any], state: str) -> tuple[int, int]:
    pos = slots.get(PICK_SLOT)
    if isinstance(pos, dict) and pos.get("s") == state:
        return int(pos.get("g", TOP)), int(pos.get("p", 0))
    return TOP, 0


def set_position(slots: dict[str, Any], state: str, group: int, page: int) -> None:
    slots[PICK_SLOT] = {"s": state, "g": group, "p": page}


# The catalogue's items never change within a flow set: built once per catalogue and level.
_catalog_items: dict[tuple[int, int], tuple[Catalog, list[Item]]] = {}


def catalog_items(catalog: Catalog, group: int) -> list[Item]:
    key = (id(catalog), group)
    cached = _catalog_items.get(key)
    if cached is not None and cached[0] is catalog:
        return cached[1]
    groups = catalog.groups
    if 0 <= group < len(groups):
        built = [Item(e.name, shorten(e.button), e.as_slot()) for e in groups[group].entries]
    else:
        built = [Item(g.name, shorten(g.button), None) for g in groups]
    if len(_catalog_items) > 256:  # old flow sets after many reloads
        _catalog_items.clear()
    _catalog_items[key] = (catalog, built)
    return built


def reset(flows: FlowSet, st: StateSpec, slots: dict[str, Any]) -> None:
    """Start a pick afresh: at the top, or for the catalogue in the group of the current choice
    (changing the service from the check screen shows its neighbours)."""
    assert st.pick is not None
    slots.pop(PICK_SLOT, None)
    chosen = slots.get(st.pick.slot)
    if st.pick.source != "catalog" or not isinstance(chosen, dict):
        return
    for g, group in enumerate(flows.catalog.groups):
        for e, entry in enumerate(group.entries):
            if entry.id == chosen.get("id"):
                set_position(slots, st.name, g, e // st.pick.page_size)
                return


def items(flows: FlowSet, spec: PickSpec, slots: dict[str, Any], group: int) -> list[Item]:
    if spec.source == "catalog":
        return catalog_items(flows.catalog, group)
    out: list[Item] = []
    source = slots.get(spec.source)
    for n, value in enumerate(source if isinstance(source, list) else [], 1):
        if not isinstance(value, dict):
            continue
        values = {**value, "n": n}
        title = spec.line.render(values) if spec.line else str(n)
        label = spec.label.render(values) if spec.label else str(n)
        out.append(Item(title, shorten(label), dict(value)))
    return out


def view(flows: FlowSet, st: StateSpec, slots: dict[str, Any]) -> View:
    assert st.pick is not None
    group, page = position(slots, st.name)
    if st.pick.source != "catalog" or not 0 <= group < len(flows.catalog.groups):
        group = TOP
    found = items(flows, st.pick, slots, group)
    size = st.pick.page_size
    pages = max(1, -(-len(found) // size))
    return View(found, group, min(max(page, 0), pages - 1), pages, size)


def lines(flows: FlowSet, v: View, numbered: bool) -> list[str]:
    """The visible page as message lines; catalogue names are numbered, list lines are templates.
    Inside a catalogue group the group's name heads the list, so the user knows where they are."""
    head = [f"{flows.catalog.groups[v.group].name}:"] if numbered and v.group != TOP else []
    return head + [f"{i + 1}. {item.title}" if numbered else item.title for i, item in v.page_items()]


def buttons(flows: FlowSet, st: StateSpec, v: View, back_handled: bool) -> list[list[Button]]:
    labels = flows.bot.pick_labels
    shown = v.page_items()
    assert st.pick is not None
    rows = [[Button(shown[k][1].label, "pick", index=shown[k][0]) for k in row]
            for row in pack([item.label for _, item in shown], st.pick.columns)]
    nav = []
    if v.page > 0:
        nav.append(Button(labels.prev, "pick_prev"))
    if v.page < v.pages - 1:
        nav.append(Button(labels.next, "pick_next"))
    if nav:
        rows.append(nav)
    if v.group != TOP:
        rows.append([Button(labels.back, "pick_up")])
    elif back_handled:
        rows.append([Button(labels.back, "back")])
    return rows


def navigate(flows: FlowSet, st: StateSpec, slots: dict[str, Any], event: str, index: int | None) -> str | None:
    """Apply pick navigation; returns "chosen" when a final item went into the slot."""
    assert st.pick is not None
    v = view(flows, st, slots)
    if event == "pick_next":
        set_position(slots, st.name, v.group, min(v.page + 1, v.pages - 1))
    elif event == "pick_prev":
        set_position(slots, st.name, v.group, max(v.page - 1, 0))
    elif event == "pick_up":
        set_position(slots, st.name, TOP, max(v.group, 0) // v.page_size)
    elif event == "pick" and index is not None and 0 <= index < len(v.items):
        item = v.items[index]
        if item.value is None:
            set_position(slots, st.name, index, 0)
        else:
            slots[st.pick.slot] = dict(item.value)  # items may be shared between sessions
            return "chosen"
    return None


def typed_number(typed: str) -> int | None:
    """The number typed ("3", "3."), if the text is one."""
    digits = typed.strip().rstrip(".")
    if digits.isascii() and digits.isdigit() and len(digits) <= 9:  # "²" is a digit to isdigit, not to int()
        return int(digits)
    return None


def match(v: View, typed: str, normalized: str) -> int | None:
    """A typed number or full name, anywhere in the list (not only on the visible page)."""
    n = typed_number(typed)
    if n is not None:
        return n - 1 if 1 <= n <= len(v.items) else None
    for i, item in enumerate(v.items):
        if normalize_text(item.title) == normalized or normalize_text(item.label) == normalized:
            return i
    return None
