"""The flow set as typed, immutable data, built from schema-valid YAML documents."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.flows.templates import Template, lookup
from engine.ports.tickets import DEFAULT_PEOPLE_TABLES, Journal

RETURN = "return"
TYPED = "typed"  # the slot and the event of text an attachments input asks about (ask_text)
HERE = "here"  # a `then` naming the state the event came from


@dataclass(frozen=True, slots=True)
class Where:
    """Where a node came from, for findings."""

    path: str
    line: int
    col: int


# Slots a `when` or `unless` names: `when` holds if all are set, `unless` if none is.
Condition = tuple[str, ...]


def condition(value: str | list[str] | None) -> Condition:
    """A `when`/`unless` as YAML has it: one slot or a list."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def holds(values: Mapping[str, Any], when: Condition, unless: Condition) -> bool:
    return all(lookup(values, w) for w in when) and not any(lookup(values, u) for u in unless)


@dataclass(frozen=True, slots=True)
class SayPart:
    template: Template
    when: Condition = ()
    unless: Condition = ()
    # `each: <list slot>`: `parts` said once per item of the list, with the item's fields as
    # data (over the slots); the part's own template is then empty.
    each: str = ""
    parts: tuple[SayPart, ...] = ()


@dataclass(frozen=True, slots=True)
class ButtonSpec:
    label: str
    event: str
    color: str | None
    when: Condition
    unless: Condition
    where: Where


@dataclass(frozen=True, slots=True)
class TransitionSpec:
    event: str
    to: str  # a qualified state name "flow.state", or RETURN
    say: tuple[SayPart, ...] = ()
    then: str | None = None
    otherwise: str | None = None  # 'else' in YAML (its last, unguarded item)
    # The guarded items of a list 'else', tried in order before `otherwise` (to, when, unless).
    otherwise_when: tuple[TransitionSpec, ...] = ()
    set: Mapping[str, Any] = field(default_factory=dict)
    clear: tuple[str, ...] = ()
    append: Mapping[str, str] = field(default_factory=dict)  # target slot ← source slot's text
    count: str | None = None  # a counter counted once more when the transition is taken
    # The draft of the flow the transition is from is done with (sent, or no longer needed).
    forget_draft: bool = False
    # Guards over the session's slots: taken only when all of `when` are set and none of `unless`.
    when: Condition = ()
    unless: Condition = ()
    where: Where | None = None


# An event's transitions from one state, tried in order: the first whose guards hold is taken.
Alternatives = tuple[TransitionSpec, ...]


@dataclass(frozen=True, slots=True)
class InputSpec:
    kind: str  # text | email | code | attachments
    slot: str
    min_length: int = 0
    min_letters: int = 0  # letters or digits the text must have (not just dots or emoji)
    max_length: int = 4000
    max_files: int = 5
    max_file_mb: float = 10.0
    extensions: tuple[str, ...] = ()
    text_slot: str | None = None
    ask_text: bool = False  # attachments: text without a file goes to slot 'typed' and raises 'typed'
    files_slot: str | None = None
    commands: bool = True  # typed commands are commands here (False: they are content)
    accepted: tuple[SayPart, ...] = ()
    noted: tuple[SayPart, ...] = ()
    errors: Mapping[str, Template] = field(default_factory=dict)


# What each input kind may answer with; flowlint demands a text for each in flows/.
ERRORS_BY_KIND: dict[str, tuple[str, ...]] = {
    "text": ("too_short", "too_long", "not_text", "no_letters"),
    "email": ("bad_email", "not_text"),
    "code": ("bad_code", "not_text"),
    "attachments": ("too_many_files", "file_too_big", "bad_file_type", "too_long"),
}


@dataclass(frozen=True, slots=True)
class PickSpec:
    source: str  # "catalog" or the name of a list slot
    slot: str
    label: Template | None
    line: Template | None
    page_size: int = 6
    columns: int = 1  # buttons side by side, where the labels are short enough


@dataclass(frozen=True, slots=True)
class StateSpec:
    name: str  # qualified: "flow.state"
    say: tuple[SayPart, ...]
    enter: tuple[str, ...]
    enter_where: tuple[Where, ...]
    input: InputSpec | None
    pick: PickSpec | None
    buttons: tuple[tuple[ButtonSpec, ...], ...]
    footer: bool
    inline: bool
    on: Mapping[str, Alternatives]
    where: Where
    free_text: bool = False  # unmatched text goes to the start state's input (a new request)


@dataclass(frozen=True, slots=True)
class FlowSpec:
    name: str
    start: str  # qualified
    states: Mapping[str, StateSpec]
    where: Where
    # Slots forgotten when the user leaves the flow with no way back, and on `forget_draft`
    # (engine/dialogue/drafts.py).
    draft: tuple[str, ...] = ()
    draft_where: tuple[Where, ...] = ()


@dataclass(frozen=True, slots=True)
class TicketMapping:
    """How a catalogue entry becomes a SimpleOne record: its table and field values."""

    table: str | None = None
    service: str | None = None
    category: str | None = None
    subcategory: str | None = None
    contact_type: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    def over(self, base: TicketMapping) -> TicketMapping:
        """This mapping with unset values taken from base (defaults → group → entry)."""
        return TicketMapping(
            table=self.table or base.table,
            service=self.service or base.service,
            category=self.category or base.category,
            subcategory=self.subcategory or base.subcategory,
            contact_type=self.contact_type or base.contact_type,
            fields={**base.fields, **self.fields},
        )

    def record_fields(self) -> dict[str, str]:
        out = dict(self.fields)
        for key in ("service", "category", "subcategory", "contact_type"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    id: str
    name: str
    group_id: str
    group_name: str
    mapping: TicketMapping  # already merged with group and defaults
    where: Where
    label: str = ""  # the short button label; the name where none is given
    keywords: tuple[str, ...] = ()  # what people call it: free text that says so proposes it
    hint: str | None = None  # self-help offered once it is chosen, before the ticket
    group_label: str = ""
    group_keywords: tuple[str, ...] = ()

    @property
    def button(self) -> str:
        return self.label or self.name

    def as_slot(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "group_id": self.group_id, "group": self.group_name,
                "label": self.button, "hint": (self.hint or "").strip()}


@dataclass(frozen=True, slots=True)
class CatalogGroup:
    id: str
    name: str
    entries: tuple[CatalogEntry, ...]
    where: Where
    label: str = ""
    keywords: tuple[str, ...] = ()

    @property
    def button(self) -> str:
        return self.label or self.name


@dataclass(frozen=True, slots=True)
class Catalog:
    groups: tuple[CatalogGroup, ...]
    ignore: tuple[str, ...] = ()  # words the free-text search counts for nothing

    def entry(self, entry_id: str) -> CatalogEntry | None:
        for group in self.groups:
            for entry in group.entries:
                if entry.id == entry_id:
                    return entry
        return None


@dataclass(frozen=True, slots=True)
class PickLabels:
    next: str
    prev: str
    back: str


@dataclass(frozen=True, slots=True)
class TypedPattern:
    """Typed text of this shape is `event` at every step; what matched goes to `slot`."""

    regex: re.Pattern[str]
    slot: str
    event: str
    where: Where


@dataclass(frozen=True, slots=True)
class BotSettings:
    start: str
    footer: tuple[tuple[ButtonSpec, ...], ...]
    global_on: Mapping[str, Alternatives]
    commands: Mapping[str, str]  # normalised typed text → event
    pick_labels: PickLabels
    messages: Mapping[str, Template]
    notices: Mapping[str, Template]  # sent unasked: a late ticket number, a status change
    mail_subject: Template
    mail_body: Template
    where: Where
    patterns: tuple[TypedPattern, ...] = ()
    # Where an idle dialogue asks whether to go on or start again (None: the message is taken
    # where the user left off, or not understood there).
    resume: str | None = None
    # Buttons under a notice, by notice name: each raises a global event about its ticket.
    notice_buttons: Mapping[str, tuple[tuple[ButtonSpec, ...], ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TicketMove:
    """A change the user makes to their ticket from the chat (reopen, confirm, withdraw, rate):
    the state it sets (table or "default" → code; none: the state stays) and the public
    comment written with it (over the dialogue's slots)."""

    states: Mapping[str, str]
    comment: Template | None
    field: str = ""  # a field that takes the slot `rating` (rate: the instance's rating field)

    def state_for(self, table: str) -> str:
        return self.states.get(table) or self.states.get("default", "")


@dataclass(frozen=True, slots=True)
class TicketSettings:
    tables: tuple[str, ...]
    time_zone: str  # where ticket times are shown in (IANA name)
    # State codes of tickets whose work is done though they are still active (awaiting the
    # user's confirmation): listed, but not counted as open.
    finished_states: frozenset[str]
    comment_field: str
    subject: Template
    subject_max_length: int
    description: Template
    comment: Template | None
    list_limit: int
    # Table (or "default") → code → label. status_labels override the ticket system's own
    # labels (TicketSystem.state_labels); status_fallback is read only where it has none.
    status_labels: Mapping[str, Mapping[str, str]]
    where: Where
    # Where a user signing in is looked up by email, in order (simpleone.people_tables).
    people_tables: tuple[str, ...] = DEFAULT_PEOPLE_TABLES
    status_fallback: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Which journal entries may be read for a user (only `public` ones), and the tail the bot's
    # own comments end with (the end of `comment:`), by which they are told apart.
    journal: Journal = field(default_factory=Journal)
    # States in which the agent waits for the user (Требуется информация): their notice carries
    # the agent's last public comment and «Ответить».
    waiting_states: frozenset[str] = frozenset()
    # What the user's own moves on a ticket write: state codes per table ("default" for any),
    # and the comment that goes with them (TicketMove).
    moves: Mapping[str, TicketMove] = field(default_factory=dict)

    def status_label(self, table: str, code: str, system_label: str = "") -> str:
        """What users read for a state: the flows' override of the code, else the ticket
        system's own label (system_label), else the flows' fallback, else the code itself."""
        return (self._label(self.status_labels, table, code) or system_label.strip()
                or self._label(self.status_fallback, table, code) or code)

    @staticmethod
    def _label(labels: Mapping[str, Mapping[str, str]], table: str, code: str) -> str:
        for key in (table, "default"):
            label = labels.get(key, {}).get(code)
            if label:
                return label
        return ""


def render_say(parts: Sequence[SayPart], values: Mapping[str, Any]) -> str:
    """What a `say` says over values: its parts whose when/unless hold, one per line."""
    return "\n".join(_say_lines(parts, values)).strip()


def _say_lines(parts: Sequence[SayPart], values: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for part in parts:
        if not holds(values, part.when, part.unless):
            continue
        if not part.each:
            out.append(part.template.render(values))
            continue
        items = lookup(values, part.each)
        for item in items if isinstance(items, list) else ():
            out.extend(_say_lines(part.parts, {**values, **item} if isinstance(item, Mapping) else values))
    return out


# Compared by identity, and weakly referenced by the machine compiled from it
# (engine.dialogue.machine.machine_of): a flow set and its machine come and go together.
@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class FlowSet:
    """A whole, valid flow set: what the engine runs and hot reload swaps atomically."""

    version: str
    flows: Mapping[str, FlowSpec]
    states: Mapping[str, StateSpec]
    catalog: Catalog
    bot: BotSettings
    tickets: TicketSettings
    files: tuple[str, ...]
    # Slots that hold spooled files, with the input whose limits apply to them.
    file_slots: Mapping[str, InputSpec]
    # What typed text is a command at every step (normalised text → global event): the bot's
    # commands, then the labels of the main menu's and the footer's buttons.
    typed_commands: Mapping[str, str] = field(default_factory=dict)
