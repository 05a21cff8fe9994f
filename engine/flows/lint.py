"""Semantic checks of a built flow set: what the schema alone cannot see."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.actions.registry import VALUE, ActionRegistry, Shape
from engine.flows.build import Built, TemplateUse
from engine.flows.findings import Finding, Severity, did_you_mean, nearest
from engine.flows.model import (
    ERRORS_BY_KIND,
    HERE,
    RETURN,
    TYPED,
    Alternatives,
    ButtonSpec,
    StateSpec,
    TransitionSpec,
    Where,
)
from engine.flows.text import normalize_text
from engine.flows.vk_limits import KEYBOARD_LIMITS, MAX_LABEL, MAX_PAYLOAD, MAX_PER_ROW, pack, shorten
from engine.replies import Button
from engine.ticket_time import known_zone

# VK's keyboard limits (shared/reference/vk-api.md): (rows, buttons) regular and inline.

FILE_FIELDS = frozenset({"id", "name", "size", "mime"})
BUILTIN_SLOTS: dict[str, Shape] = {"user": Shape.record("email", "name", "caller_id")}
CATALOG_ITEM = Shape.record("id", "name", "group", "group_id", "label", "hint")
SCOPE_VARS: dict[str, dict[str, Shape]] = {
    "mail": {"code": VALUE, "minutes": VALUE, "email": VALUE},
    "message": {"file": Shape.record("name"), "number": VALUE, "count": VALUE},
    # What engine/work/ticket_work.py and engine/work/status_watch.py give a notice.
    "notice": {"ticket": Shape.record("number", "subject", "status", "table", "sys_id", "files"),
               "files": VALUE, "status": VALUE, "comment": Shape.record("text", "date", "earlier")},
    # What engine/work/ticket_moves.py gives a move's comment.
    "move": {"ticket": Shape.record("number", "subject", "status", "table", "sys_id"), "text": VALUE,
             "rating": VALUE, "user": Shape.record("email", "name", "caller_id")},
    "input": {"min": VALUE, "max": VALUE, "max_files": VALUE, "max_mb": VALUE, "extensions": VALUE,
              "file": Shape.record("name", "size"), "count": VALUE, "left": VALUE},
}
# Events the engine raises itself, by the kind of state.
INPUT_EVENT = "ok"
PICK_EVENTS = ("chosen", "back")


class Linter:
    def __init__(self, built: Built, registry: ActionRegistry, origin: str = "flows") -> None:
        self.built = built
        self.registry = registry
        self.origin = origin  # where set-wide findings (a missing settings file) point
        self.findings: list[Finding] = []
        self._settled: dict[str, dict[str, Where]] | None = None
        self._known: dict[str, Shape] | None = None  # known_slots(), worked out once
        self.states: dict[str, StateSpec] = {
            name: st for flow in built.flows.values() for name, st in flow.states.items()
        }

    def add(self, where: Where | None, code: str, message: str, severity: Severity = Severity.ERROR) -> None:
        w = where or Where(self.origin, 1, 1)
        self.findings.append(Finding(w.path, w.line, w.col, code, message, severity))

    def run(self) -> list[Finding]:
        b = self.built
        if b.bot is None:
            self.add(None, "F070", "no bot settings: one file must have the top-level key 'bot'")
        if b.catalog is None:
            self.add(None, "F070", "no service catalogue: one file must have the top-level key 'catalog'")
        if b.tickets is None:
            self.add(None, "F070", "no SimpleOne settings: one file must have the top-level key 'simpleone'")
        if not b.flows:
            self.add(None, "F070", "no flows: at least one file must have the top-level key 'flow'")
        self.check_targets()
        self.check_states()
        self.check_reachability()
        self.check_templates()
        self.check_drafts()
        self.check_catalog()
        self.check_catalog_labels()
        self.check_settings()
        return self.findings

    # ------------------------------------------------------------------ targets

    def check_target(self, target: str | None, where: Where | None) -> None:
        if target is None or target in (RETURN, HERE):
            return
        if "." not in target:
            self.add(where, "F010", f"target '{target}' must be written as flow.state here")
            return
        flow, _, state = target.partition(".")
        if flow not in self.built.flows:
            guess = nearest(flow, self.built.flows)
            hint = f"did you mean {guess}?" if guess else "flows: " + (", ".join(sorted(self.built.flows)) or "none")
            self.add(where, "F011", f"unknown flow '{flow}' in target '{target}' ({hint})")
        elif target not in self.states:
            names = [s.partition(".")[2] for s in self.states if s.startswith(f"{flow}.")]
            self.add(where, "F010", f"unknown state '{state}' in flow '{flow}'{did_you_mean(state, names)}")

    def transitions(self) -> Iterable[tuple[StateSpec | None, TransitionSpec]]:
        for st in self.states.values():
            for alternatives in st.on.values():
                for t in alternatives:
                    yield st, t
        if self.built.bot:
            for alternatives in self.built.bot.global_on.values():
                for t in alternatives:
                    yield None, t

    def check_targets(self) -> None:
        for flow in self.built.flows.values():
            self.check_target(flow.start, flow.where)
        if self.built.bot:
            self.check_target(self.built.bot.start, self.built.bot.where)
            self.check_target(self.built.bot.resume, self.built.bot.where)
        for _, t in self.transitions():
            self.check_target(t.to, t.where)
            self.check_target(t.then, t.where)
            self.check_target(t.otherwise, t.where)
            for alt in t.otherwise_when:
                self.check_target(alt.to, alt.where)
            if t.to == RETURN and t.then:
                self.add(t.where, "F070", "'then' makes no sense on a transition to 'return'")
        for alternatives in self.all_alternatives():
            for t in alternatives[:-1]:
                if not (t.when or t.unless):
                    self.add(t.where, "F015", f"'on: {t.event}': this alternative has no 'when' or 'unless', "
                             "so the ones after it are never taken")

    def all_alternatives(self) -> Iterable[Alternatives]:
        for st in self.states.values():
            yield from st.on.values()
        if self.built.bot:
            yield from self.built.bot.global_on.values()

    # ------------------------------------------------------------------ states

    def raised_events(self, st: StateSpec) -> dict[str, Where]:
        """Events that can happen in this state, with where each comes from."""
        raised: dict[str, Where] = {}
        for row in self.rows(st):
            for button in row:
                raised.setdefault(button.event, button.where)
        if st.input and st.input.kind != "attachments":
            raised.setdefault(INPUT_EVENT, st.where)
        if st.input and st.input.ask_text:
            raised.setdefault(TYPED, st.where)
        if st.pick:
            for ev in PICK_EVENTS:
                raised.setdefault(ev, st.where)
        for name in st.enter:
            info = self.registry.get(name)
            for ev in info.emits if info else ():
                raised.setdefault(ev, st.where)
        for ev, where in self.settled().get(st.name, {}).items():
            raised.setdefault(ev, where)
        return raised

    def settled(self) -> dict[str, dict[str, Where]]:
        """Outcome events of queued work, by the state an action's outcome leads to."""
        if self._settled is None:
            self._settled = {}
            for st in self.states.values():
                for name in st.enter:
                    info = self.registry.get(name)
                    if info is None or not info.settles:
                        continue
                    for ev in info.emits:
                        for t in st.on.get(ev, ()):
                            if t.to in self.states:
                                for settled in info.settles:
                                    self._settled.setdefault(t.to, {}).setdefault(settled, st.where)
        return self._settled

    def rows(self, st: StateSpec) -> list[tuple[ButtonSpec, ...]]:
        rows = list(st.buttons)
        if st.footer and self.built.bot:
            rows.extend(self.built.bot.footer)
        return rows

    def handled_events(self, st: StateSpec) -> list[str]:
        return [*st.on, *(self.built.bot.global_on if self.built.bot else ())]

    def handled(self, st: StateSpec, event: str) -> bool:
        return event in st.on or bool(self.built.bot and event in self.built.bot.global_on)

    def check_states(self) -> None:
        commands = set(self.built.bot.commands.values()) if self.built.bot else set()
        global_events = self.built.bot.global_on if self.built.bot else {}
        for st in self.states.values():
            raised = self.raised_events(st)
            for name, where in zip(st.enter, st.enter_where, strict=True):
                info = self.registry.get(name)
                if info is None:
                    names = [a.name for a in self.registry.all()]
                    guess = nearest(name, names)
                    hint = f"did you mean {guess}?" if guess else "known: " + ", ".join(names)
                    self.add(where, "F020", f"{st.name}: unknown action '{name}' ({hint})")
                    continue
                for ev in sorted(info.emits):
                    if not self.handled(st, ev):
                        self.add(where, "F021",
                                 f"{st.name}: action '{name}' can end with '{ev}', but the state has no 'on: {ev}'")
            for row in st.buttons:
                for button in row:
                    if not self.handled(st, button.event):
                        self.add(button.where, "F014",
                                 f"{st.name}: button '{button.label}' raises '{button.event}' but nothing handles it"
                                 + did_you_mean(button.event, self.handled_events(st)))
            for ev, alternatives in st.on.items():
                if ev not in raised and ev not in commands and ev not in global_events:
                    self.add(alternatives[0].where, "F014", f"{st.name}: 'on: {ev}' can never happen here (no "
                             "button, input, pick, action or command raises it)"
                             + did_you_mean(ev, [e for e in raised if e not in st.on]), Severity.WARNING)
            if st.pick and st.input and st.input.kind != "text":
                self.add(st.where, "F070", f"{st.name}: a list takes only a text input beside it (typed words "
                         "that are no item, e.g. a search)")
            start = self.states.get(self.built.bot.start) if self.built.bot else None
            if st.free_text and (st.input is not None or st.pick is not None or start is None or start.input is None):
                self.add(st.where, "F070", f"{st.name}: free_text is for a step without input or pick, and needs "
                         "an input at bot.start to take the text")
            shows_buttons = bool(self.rows(st)) or st.pick is not None
            if not st.on and not shows_buttons and st.input is None:
                self.add(st.where, "F013", f"{st.name}: no buttons, no input and no transitions: the user is stuck")
            # The engine's own events must lead somewhere, or typing or picking goes nowhere.
            if st.input and st.input.kind != "attachments" and not self.handled(st, INPUT_EVENT):
                self.add(st.where, "F013", f"{st.name}: valid input raises '{INPUT_EVENT}', but the state has "
                         f"no 'on: {INPUT_EVENT}': what the user types would lead nowhere")
            if st.pick and not self.handled(st, "chosen"):
                self.add(st.where, "F013", f"{st.name}: a pick raises 'chosen', but the state has no 'on: chosen'")
            # A state whose actions always end with an outcome passes straight through.
            infos = [self.registry.get(name) for name in st.enter]
            transient = any(info is not None and info.emits for info in infos)
            if not st.say and not transient:
                self.add(st.where, "F070", f"{st.name}: the state says nothing (add 'say')")
            if st.input:
                self.check_input(st)
            self.check_keyboard(st)
            labels: dict[str, str] = {}
            for row in st.buttons:
                for button in row:
                    key = normalize_text(button.label)
                    if key in labels and labels[key] != button.event:
                        self.add(button.where, "F040",
                                 f"{st.name}: two buttons read '{button.label}' but raise different events")
                    labels[key] = button.event

    def check_input(self, st: StateSpec) -> None:
        inp = st.input
        assert inp is not None
        optional = {"too_short": inp.min_length > 0, "no_letters": inp.min_letters > 0,
                    "too_long": inp.kind != "attachments" or bool(inp.text_slot)}
        needed = [e for e in ERRORS_BY_KIND[inp.kind] if optional.get(e, True)]
        for key in needed:
            if key not in inp.errors:
                self.add(st.where, "F070", f"{st.name}: input of kind {inp.kind} needs a text for errors.{key}")
        if inp.kind == "attachments":
            if not st.buttons:
                self.add(st.where, "F013", f"{st.name}: an attachments state needs a button to finish")
            if not inp.accepted:
                self.add(st.where, "F070", f"{st.name}: attachments input needs an 'accepted' text")
            if inp.text_slot and not inp.noted:
                self.add(st.where, "F070", f"{st.name}: text_slot needs a 'noted' text")
            if inp.ask_text and not self.handled(st, TYPED):
                self.add(st.where, "F013", f"{st.name}: text sent alone raises '{TYPED}' (ask_text), but the state "
                         f"has no 'on: {TYPED}'")
        if inp.files_slot and not any(
            o.input and o.input.kind == "attachments" and o.input.slot == inp.files_slot for o in self.states.values()
        ):
            self.add(st.where, "F070", f"{st.name}: files_slot '{inp.files_slot}' is not the slot of any "
                     "attachments input (its limits would be unknown)")

    def check_keyboard(self, st: StateSpec) -> None:
        rows = self.rows(st)
        n_rows = len(rows)
        n_buttons = sum(len(r) for r in rows)
        if st.pick and st.pick.source == "catalog" and self.built.catalog:
            # Every screen of the catalogue is known: the most rows any of them takes.
            most_rows, most_buttons = 0, 0
            for _, labels in self.catalog_screens():
                pages = [labels[i : i + st.pick.page_size] for i in range(0, len(labels), st.pick.page_size)]
                for page in pages:
                    paging = 1 if len(pages) > 1 else 0
                    most_rows = max(most_rows, len(pack(page, st.pick.columns)) + paging + 1)
                    most_buttons = max(most_buttons, len(page) + 2 * paging + 1)
            n_rows += most_rows
            n_buttons += most_buttons
        elif st.pick:
            # The page of items (one per row at worst: labels are templates), paging and Back.
            n_rows += st.pick.page_size + 2
            n_buttons += st.pick.page_size + 3
        max_rows, max_buttons = KEYBOARD_LIMITS[st.inline]
        if n_rows > max_rows or n_buttons > max_buttons:
            kind = "an inline" if st.inline else "a"
            self.add(st.where, "F050", f"{st.name}: keyboard may need {n_rows} rows and {n_buttons} buttons; "
                     f"VK allows {kind} keyboard {max_rows} rows and {max_buttons} buttons")
        for row in rows:
            if len(row) > MAX_PER_ROW:
                self.add(row[0].where, "F050", f"{st.name}: a row of {len(row)} buttons; VK allows {MAX_PER_ROW}")
            for button in row:
                self.check_button(button, st.name)

    def catalog_screens(self) -> list[tuple[Where, list[str]]]:
        """The catalogue's screens as the picker shows them: the groups, then each group's entries;
        each with its buttons' labels."""
        catalog = self.built.catalog
        if catalog is None:
            return []
        screens = [(catalog.groups[0].where, [shorten(g.button) for g in catalog.groups])]
        screens += [(g.where, [shorten(e.button) for e in g.entries]) for g in catalog.groups]
        return screens

    def check_catalog_labels(self) -> None:
        catalog = self.built.catalog
        if catalog is None:
            return
        shown = [(g.button, g.where) for g in catalog.groups]
        shown += [(e.button, e.where) for g in catalog.groups for e in g.entries]
        for button, where in shown:
            if len(button) > MAX_LABEL:
                self.add(where, "F051", f"catalogue: '{button}' is cut to '{shorten(button)}' on its button "
                         f"(VK allows {MAX_LABEL} characters); give it a shorter label:", Severity.WARNING)
        for where, labels in self.catalog_screens():
            seen: dict[str, str] = {}
            for label in labels:
                key = normalize_text(label)
                if key in seen:
                    self.add(where, "F053", f"catalogue: two buttons of one screen read '{label}'"
                             + (" once cut to fit" if label.endswith("…") else "") + "; give them labels that differ")
                seen[key] = label
        pick_sizes = [st.pick.page_size for st in self.states.values() if st.pick and st.pick.source == "catalog"]
        for where, labels in self.catalog_screens():
            for size in pick_sizes:
                if -(-len(labels) // size) > 2:
                    self.add(where, "F054", f"catalogue: a screen of {len(labels)} buttons takes "
                             f"{-(-len(labels) // size)} pages of {size}; split the group or show more at once",
                             Severity.WARNING)
                    break

    def check_button(self, button: ButtonSpec, owner: str) -> None:
        if len(button.label) > MAX_LABEL:
            self.add(button.where, "F051",
                     f"{owner}: label '{button.label}' has {len(button.label)} characters; VK allows {MAX_LABEL}")
        size = len(Button(button.label, button.event).payload.encode())
        if size > MAX_PAYLOAD:
            self.add(button.where, "F052", f"{owner}: payload of '{button.label}' is {size} bytes; VK allows 255")

    # ------------------------------------------------------------------ reachability

    def check_reachability(self) -> None:
        bot = self.built.bot
        if bot is None:
            return
        roots = [bot.start, *(t.to for alts in bot.global_on.values() for t in alts)]
        roots += [t.then for alts in bot.global_on.values() for t in alts if t.then]
        roots += [bot.resume] if bot.resume else []
        seen: set[str] = set()
        todo = [r for r in roots if r in self.states]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for t in (t for alts in self.states[name].on.values() for t in alts):
                for nxt in (t.to, t.then, t.otherwise, *(alt.to for alt in t.otherwise_when)):
                    if nxt and nxt in self.states and nxt not in seen:
                        todo.append(nxt)
        for name, st in self.states.items():
            if name not in seen:
                # An error, not a warning: a reload must not strand a step nobody can reach.
                self.add(st.where, "F012", f"{name}: no transition leads here")

    # ------------------------------------------------------------------ templates

    def known_slots(self) -> dict[str, Shape]:
        if self._known is not None:
            return self._known
        known: dict[str, Shape] = dict(BUILTIN_SLOTS)
        lists: dict[str, Shape] = {}
        for info in self.registry.all():
            for slot, shape in info.writes.items():
                known[slot] = _merge(known.get(slot), shape)
                if shape.is_list:
                    lists[slot] = shape
        for pattern in self.built.bot.patterns if self.built.bot else ():
            known.setdefault(pattern.slot, VALUE)
        for st in self.states.values():
            if st.input:
                inp = st.input
                if inp.kind == "attachments":
                    known[inp.slot] = Shape(FILE_FIELDS, is_list=True)
                    lists[inp.slot] = known[inp.slot]
                    if inp.text_slot:
                        known.setdefault(inp.text_slot, VALUE)
                    if inp.ask_text:
                        known.setdefault(TYPED, VALUE)
                else:
                    known.setdefault(inp.slot, VALUE)
                    if inp.files_slot:
                        known[inp.files_slot] = Shape(FILE_FIELDS, is_list=True)
            for alternatives in st.on.values():
                for t in alternatives:
                    for slot in t.set:
                        known.setdefault(slot, VALUE)
        for st in self.states.values():
            if st.pick:
                if st.pick.source == "catalog":
                    picked = CATALOG_ITEM
                else:
                    item = lists.get(st.pick.source)
                    if item is None:
                        self.add(st.where, "F070", f"{st.name}: picks from '{st.pick.source}', "
                                 "which no action or input fills with a list")
                    picked = Shape(item.fields if item else frozenset())
                known[st.pick.slot] = _merge(known.get(st.pick.slot), picked)
        self._lists = lists
        self._known = known
        return known

    def check_templates(self) -> None:
        slots = self.known_slots()
        refs = [(dotted, where, slots) for dotted, where in self.built.slot_refs]
        refs += [(dotted, where, {**slots, **self.item_vars(scope), **SCOPE_VARS.get(scope, {})})
                 for dotted, scope, where in self.built.scoped_refs]
        for dotted, where, names in refs:
            head, _, tail = dotted.partition(".")
            known = names.get(head)
            field = tail.split(".")[0]
            if known is None:
                self.add(where, "F030", f"unknown slot '{dotted}'{did_you_mean(head, names)}")
            elif field and known.fields and field not in known.fields:
                self.add(where, "F030", _no_field(head, field, known))
        not_lists: set[str] = set()
        for use in self.built.uses:
            scope = self.scope(use, slots)
            each = use.scope[5:] if use.scope.startswith("each:") else ""
            if each and each.partition(".")[0] in slots and each not in self._lists and each not in not_lists:
                not_lists.add(each)
                self.add(use.where, "F031", f"each: needs a list, and '{each}' is not one")
            for ref in use.template.refs:
                root, *rest = ref.path
                shape = scope.get(root)
                if shape is None:
                    self.add(use.place(ref), "F030", f"unknown slot '{'.'.join(ref.path)}'"
                             f"{did_you_mean(root, scope)} in text '{_around(use.template.source, ref.offset)}'")
                elif rest and shape.fields and rest[0] not in shape.fields:
                    self.add(use.place(ref), "F030", _no_field(root, rest[0], shape)
                             + f" in text '{_around(use.template.source, ref.offset)}'")
                elif ref.filter in ("count", "names") and not shape.is_list:
                    self.add(use.where, "F031", f"filter '{ref.filter}' needs a list, and '{root}' is not one")

    def check_drafts(self) -> None:
        """Flows' `draft:` lists, and `forget_draft` where there is a draft to forget."""
        written = self.known_slots()
        owner: dict[str, tuple[str, Where]] = {}
        for flow in self.built.flows.values():
            for slot, where in zip(flow.draft, flow.draft_where, strict=True):
                if slot not in written:
                    self.add(where, "F030", f"flow {flow.name}: draft slot '{slot}' is written by nothing (no input, "
                             "pick, set or action fills it)", Severity.WARNING)
                if slot in owner:
                    other, at = owner[slot]
                    self.add(where, "F040", f"flow {flow.name}: slot '{slot}' is already in the draft of flow "
                             f"{other} ({at.path}:{at.line}); a slot belongs to one flow's draft")
                else:
                    owner[slot] = (flow.name, where)
        for st, t in self.transitions():
            if not t.forget_draft:
                continue
            if st is None:
                self.add(t.where, "F070", "forget_draft in bot.global: a global event forgets every draft already")
            elif not self.built.flows[st.name.partition(".")[0]].draft:
                self.add(t.where, "F070", f"{st.name}: forget_draft, but flow {st.name.partition('.')[0]} has no "
                         "'draft:' list", Severity.WARNING)

    def item_vars(self, scope: str) -> dict[str, Shape]:
        """The fields of an `each:` list's items, as data in the inner say."""
        if not scope.startswith("each:"):
            return {}
        return {f: VALUE for f in self._lists.get(scope[5:], Shape()).fields}

    def scope(self, use: TemplateUse, slots: Mapping[str, Shape]) -> Mapping[str, Shape]:
        if use.scope.startswith("each:"):
            return {**slots, **self.item_vars(use.scope)}
        if use.scope.startswith("item:"):
            source = use.scope[5:]
            item = CATALOG_ITEM if source == "catalog" else self._lists.get(source, Shape())
            return {**{f: VALUE for f in item.fields}, "n": VALUE}
        if use.scope in ("mail", "notice", "move"):
            return SCOPE_VARS[use.scope]
        if use.scope in ("input", "message"):
            return {**slots, **SCOPE_VARS[use.scope]}
        return slots

    # ------------------------------------------------------------------ catalogue and settings

    def check_catalog(self) -> None:
        if self.built.catalog is None:
            return
        seen: dict[str, Where] = {}
        for group in self.built.catalog.groups:
            for ident, where in [(f"group {group.id}", group.where),
                                 *((f"entry {e.id}", e.where) for e in group.entries)]:
                if ident in seen:
                    self.add(where, "F040", f"catalogue {ident} is already used at line {seen[ident].line}")
                seen[ident] = where
            for entry in group.entries:
                m = entry.mapping
                missing = []
                if not m.table:
                    missing.append("table")
                if not (m.service or m.category or m.subcategory):
                    missing.append("service, category or subcategory")
                if missing:
                    self.add(entry.where, "F060", f"catalogue entry '{entry.name}' has no SimpleOne "
                             f"{' and no '.join(missing)} (set it on the entry, its group or catalog.defaults)")

    def check_settings(self) -> None:
        bot, tickets = self.built.bot, self.built.tickets
        if bot:
            for row in bot.footer:
                for button in row:
                    self.check_button(button, "footer")
                    if button.event not in bot.global_on:
                        self.add(button.where, "F014", f"footer button '{button.label}' raises "
                                 f"'{button.event}', which is not in bot.global"
                                 + did_you_mean(button.event, bot.global_on))
            for name, rows in bot.notice_buttons.items():
                for row in rows:
                    for button in row:
                        self.check_button(button, f"notice {name}")
                        if button.event not in bot.global_on:
                            self.add(button.where, "F014", f"button '{button.label}' of notice {name} raises "
                                     f"'{button.event}', which is not in bot.global (a notice's button is "
                                     "pressed at any step)" + did_you_mean(button.event, bot.global_on))
                if sum(len(r) for r in rows) > 10 or len(rows) > 6:
                    self.add(None, "F050", f"notice {name}: {sum(len(r) for r in rows)} buttons in {len(rows)} rows; "
                             "a message's inline keyboard takes at most 10 buttons in 6 rows")
            for pattern in bot.patterns:
                if pattern.event not in bot.global_on:
                    self.add(pattern.where, "F014", f"pattern '{pattern.regex.pattern}' raises '{pattern.event}', "
                             "which is not in bot.global (a pattern works at every step)"
                             + did_you_mean(pattern.event, bot.global_on))
            for ev in set(bot.commands.values()):
                local = any(ev in st.on or ev in self.raised_events(st) for st in self.states.values())
                if ev not in bot.global_on and not local:
                    self.add(bot.where, "F014", f"command event '{ev}' is handled nowhere", Severity.WARNING)
        if tickets and not known_zone(tickets.time_zone):
            self.add(tickets.where, "F070", f"simpleone.time_zone '{tickets.time_zone}' is not a known time zone "
                     "(an IANA name such as Europe/Moscow)")
        if tickets and self.built.catalog:
            for table, owner, where in self.built.catalog_tables:
                if table in tickets.tables:
                    continue
                known = ", ".join(tickets.tables) or "none"
                guess = nearest(table, tickets.tables)
                if guess:
                    self.add(where, "F070", f"catalogue {owner}: table '{table}' is not one of the ticket tables "
                             f"({known}); the name may be misspelt: did you mean {guess}?")
                else:
                    self.add(where, "F070", f"catalogue {owner}: table '{table}' is not one of the ticket tables "
                             f"({known}); if it is a new table, add it to ticket_tables in simpleone.yaml too "
                             "(or users would not see these tickets)")
            for table in tickets.tables:
                # SimpleOne's own labels are shown when it can be asked; without any in the flows
                # users would read raw codes while it cannot.
                if not any(key in labels for key in (table, "default")
                           for labels in (tickets.status_labels, tickets.status_fallback)):
                    self.add(tickets.where, "F070", f"no status_labels or status_fallback for table '{table}'",
                             Severity.WARNING)


def _merge(a: Shape | None, b: Shape) -> Shape:
    if a is None:
        return b
    return Shape(a.fields | b.fields, a.is_list or b.is_list)


def _no_field(head: str, field: str, shape: Shape) -> str:
    guess = nearest(field, shape.fields)
    hint = f"did you mean {head}.{guess}? " if guess else ""
    return f"'{head}' has no field '{field}' ({hint}it has: {', '.join(sorted(shape.fields))})"


def _around(text: str, offset: int, width: int = 25) -> str:
    """The text on both sides of a placeholder, on one line: what to look for in the file."""
    end = text.find("}", offset) + 1 or len(text)
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", end) % (len(text) + 1)
    start, stop = max(line_start, offset - width), min(line_end, end + width)
    before = " ".join(text[start:offset].split()) + (" " if text[start:offset][-1:].isspace() else "")
    after = (" " if text[end:stop][:1].isspace() else "") + " ".join(text[end:stop].split())
    return ("…" if start > line_start else "") + (before + text[offset:end] + after).strip() + (
        "…" if stop < line_end else "")


def lint(built: Built, registry: ActionRegistry, origin: str = "flows") -> list[Finding]:
    return Linter(built, registry, origin).run()
