"""Turn schema-valid YAML documents into the typed flow model.

Targets are qualified here ("describe" in flow create_ticket becomes "create_ticket.describe"),
templates are parsed, and every template use is remembered with its position and scope so that
the linter can check the slots it names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.flows import templates
from engine.flows.findings import Finding, Severity
from engine.flows.model import (
    HERE,
    RETURN,
    Alternatives,
    BotSettings,
    ButtonSpec,
    Catalog,
    CatalogEntry,
    CatalogGroup,
    FlowSpec,
    InputSpec,
    PickLabels,
    PickSpec,
    SayPart,
    StateSpec,
    TicketMapping,
    TicketMove,
    TicketSettings,
    TransitionSpec,
    TypedPattern,
    Where,
    condition,
)
from engine.flows.templates import Ref, Template
from engine.flows.text import normalize_text
from engine.flows.yamlsrc import JsonPath, YamlDoc
from engine.ports.tickets import DEFAULT_PEOPLE_TABLES, Journal


@dataclass(frozen=True, slots=True)
class TemplateUse:
    template: Template
    where: Where
    scope: str  # "slots" | "item:<list source>" | "mail" | "input" | "message" | "ticket"
    raw: str = ""  # the text as written in the file (quotes or block indicator included), from where

    def place(self, ref: Ref) -> Where:
        """Where a placeholder is written: its own line and column, also inside a block text."""
        source = self.template.source
        end = source.find("}", ref.offset) + 1
        written = source[ref.offset:end]
        nth = source.count(written, 0, ref.offset)
        at = -1
        for _ in range(nth + 1):
            at = self.raw.find(written, at + 1)
            if at < 0:
                return self.where
        line = self.where.line + self.raw.count("\n", 0, at)
        newline = self.raw.rfind("\n", 0, at)
        col = self.where.col + at if newline < 0 else at - newline
        return Where(self.where.path, line, col)


@dataclass(slots=True)
class Built:
    flows: dict[str, FlowSpec] = field(default_factory=dict)
    catalog: Catalog | None = None
    bot: BotSettings | None = None
    tickets: TicketSettings | None = None
    uses: list[TemplateUse] = field(default_factory=list)
    # Slot names used outside templates (when/unless conditions, clear lists), for the linter.
    slot_refs: list[tuple[str, Where]] = field(default_factory=list)
    # Conditions of texts said with values of their own (an input's {count}, {left}…): (name, scope, where).
    scoped_refs: list[tuple[str, str, Where]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # Every `table:` the catalogue writes, with whose it is ("entry 'wifi'") and where, for the linter.
    catalog_tables: list[tuple[str, str, Where]] = field(default_factory=list)
    # Where each kind of settings file was first seen, to report a second one.
    seen_kinds: dict[str, Where] = field(default_factory=dict)


def flow_set_version(texts: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, text in sorted(texts):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class _DocBuilder:
    def __init__(self, doc: YamlDoc, out: Built) -> None:
        self.doc = doc
        self.out = out

    def where(self, path: JsonPath, *, key: bool = False) -> Where:
        line, col = self.doc.pos(path, key=key)
        return Where(self.doc.path, line, col)

    def error(self, path: JsonPath, code: str, message: str, *, key: bool = False) -> None:
        w = self.where(path, key=key)
        self.out.findings.append(Finding(w.path, w.line, w.col, code, message, Severity.ERROR))

    def template(self, source: str, path: JsonPath, scope: str) -> Template:
        try:
            tpl = templates.parse(source)
        except templates.TemplateError as exc:
            self.error(path, "F031", f"{exc} (at character {exc.offset + 1})")
            return templates.parse(source.replace("{", "{{").replace("}", "}}"))
        self.out.uses.append(TemplateUse(tpl, self.where(path), scope, self.doc.raw(path)[0]))
        return tpl

    def say(self, value: Any, path: JsonPath, scope: str = "slots") -> tuple[SayPart, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return (SayPart(self.template(value, path, scope)),)
        parts: list[SayPart] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                parts.append(SayPart(self.template(item, (*path, i), scope)))
            elif "each" in item:
                parts.append(self.say_each(item, (*path, i), scope))
            else:
                for key in ("when", "unless"):
                    where = self.where((*path, i, key)) if key in item else None
                    for name in condition(item.get(key)):
                        assert where is not None
                        if scope == "slots":
                            self.out.slot_refs.append((name, where))
                        else:
                            self.out.scoped_refs.append((name, scope, where))
                parts.append(SayPart(self.template(item["text"], (*path, i, "text"), scope),
                                     condition(item.get("when")), condition(item.get("unless"))))
        return tuple(parts)

    def say_each(self, item: dict[str, Any], path: JsonPath, scope: str) -> SayPart:
        """`{each: <list slot>, say: …}`: the inner say over the slots and each item's fields."""
        name = str(item["each"])
        for key in ("each", "when", "unless"):
            for ref in condition(item.get(key)):
                if scope == "slots":
                    self.out.slot_refs.append((ref, self.where((*path, key))))
                else:
                    self.out.scoped_refs.append((ref, scope, self.where((*path, key))))
        if scope != "slots":
            self.error((*path, "each"), "F070", "each: works only in the say of a transition or of a step "
                       "without input (and not inside another each)")
        return SayPart(templates.parse(""), condition(item.get("when")), condition(item.get("unless")),
                       each=name, parts=self.say(item["say"], (*path, "say"), f"each:{name}"))

    def buttons(self, rows: Any, path: JsonPath) -> tuple[tuple[ButtonSpec, ...], ...]:
        for r, row in enumerate(rows or []):
            for c, b in enumerate(row):
                for key in ("when", "unless"):
                    for name in condition(b.get(key)):
                        self.out.slot_refs.append((name, self.where((*path, r, c, key))))
        return tuple(
            tuple(
                ButtonSpec(b["label"], b["event"], b.get("color"), condition(b.get("when")), condition(b.get("unless")),
                           self.where((*path, r, c)))
                for c, b in enumerate(row)
            )
            for r, row in enumerate(rows or [])
        )

    def target(self, flow: str | None, value: str) -> str:
        if value == RETURN or "." in value or flow is None:
            return value
        return f"{flow}.{value}"

    def alternatives(self, flow: str | None, event: str, value: Any, path: JsonPath) -> Alternatives:
        """One transition, or a list of guarded ones tried in order."""
        if isinstance(value, list):
            return tuple(self.transition(flow, event, v, (*path, i)) for i, v in enumerate(value))
        return (self.transition(flow, event, value, path),)

    def transition(self, flow: str | None, event: str, value: Any, path: JsonPath) -> TransitionSpec:
        if isinstance(value, str):
            return TransitionSpec(event, self.target(flow, value), where=self.where(path))
        for i, name in enumerate(value.get("clear", [])):
            self.out.slot_refs.append((name, self.where((*path, "clear", i))))
        for target, source in value.get("append", {}).items():
            self.out.slot_refs.append((target, self.where((*path, "append", target), key=True)))
            self.out.slot_refs.append((source, self.where((*path, "append", target))))
        for key in ("when", "unless"):
            for name in condition(value.get(key)):
                self.out.slot_refs.append((name, self.where((*path, key))))
        otherwise, otherwise_when = self.otherwise(flow, event, value.get("else"), (*path, "else"))
        return TransitionSpec(
            event=event,
            to=self.target(flow, value["to"]),
            say=self.say(value.get("say"), (*path, "say")),
            then=(HERE if value.get("then") == HERE else self.target(flow, value["then"])) if "then" in value else None,
            otherwise=otherwise,
            otherwise_when=otherwise_when,
            set=dict(value.get("set", {})),
            clear=tuple(value.get("clear", [])),
            append=dict(value.get("append", {})),
            count=value.get("count"),
            forget_draft=bool(value.get("forget_draft", False)),
            when=condition(value.get("when")),
            unless=condition(value.get("unless")),
            where=self.where(path),
        )

    def otherwise(self, flow: str | None, event: str, value: Any,
                  path: JsonPath) -> tuple[str | None, tuple[TransitionSpec, ...]]:
        """A return's 'else': one state, or guarded alternatives closed by a plain state."""
        if value is None or isinstance(value, str):
            return (None if value is None else self.target(flow, value)), ()
        items = [self.transition(flow, event, v, (*path, i)) for i, v in enumerate(value)]
        last = items[-1]
        if last.when or last.unless or isinstance(value[-1], dict):
            self.error((*path, len(items) - 1), "F070", "a list 'else' ends with a plain state, taken when no "
                       "guarded one before it is")
        for item, raw in zip(items[:-1], value[:-1], strict=True):
            if not (item.when or item.unless):
                self.error((*path, value.index(raw)), "F015", f"'else' item to {item.to} has no 'when' or 'unless': "
                           "the items after it are never taken")
        return last.to, tuple(items[:-1])

    # ------------------------------------------------------------------ per kind

    def flow(self, data: dict[str, Any]) -> None:
        name = data["flow"]
        if name in self.out.flows:
            first = self.out.flows[name].where
            self.error(("flow",), "F040", f"flow '{name}' is already defined in {first.path}:{first.line}")
            return
        states: dict[str, StateSpec] = {}
        for sname, sdata in data["states"].items():
            qname = f"{name}.{sname}"
            path: JsonPath = ("states", sname)
            states[qname] = self.state(name, qname, sdata, path)
        draft = tuple(data.get("draft", ()))
        self.out.flows[name] = FlowSpec(name, f"{name}.{data['start']}", states, self.where(("flow",)), draft,
                                        tuple(self.where(("draft", i)) for i in range(len(draft))))

    def state(self, flow: str, qname: str, data: dict[str, Any], path: JsonPath) -> StateSpec:
        inp = self.input(data["input"], (*path, "input")) if "input" in data else None
        pick = self.pick(data["pick"], (*path, "pick")) if "pick" in data else None
        return StateSpec(
            name=qname,
            # A state that takes input may show its limits ({max_files}…) in its text.
            say=self.say(data.get("say"), (*path, "say"), "input" if inp else "slots"),
            enter=tuple(data.get("enter", [])),
            enter_where=tuple(self.where((*path, "enter", i)) for i in range(len(data.get("enter", [])))),
            input=inp,
            pick=pick,
            buttons=self.buttons(data.get("buttons"), (*path, "buttons")),
            footer=bool(data.get("footer", True)),
            inline=bool(data.get("inline", False)),
            on={ev: self.alternatives(flow, ev, t, (*path, "on", ev)) for ev, t in (data.get("on") or {}).items()},
            where=self.where(path, key=True),
            free_text=bool(data.get("free_text", False)),
        )

    def input(self, data: dict[str, Any], path: JsonPath) -> InputSpec:
        errors = {k: self.template(v, (*path, "errors", k), "input") for k, v in data.get("errors", {}).items()}
        spec = InputSpec(
            kind=data["kind"],
            slot=data["slot"],
            min_length=int(data.get("min_length", 0)),
            min_letters=int(data.get("min_letters", 0)),
            max_length=int(data.get("max_length", 4000)),
            max_files=int(data.get("max_files", 5)),
            max_file_mb=float(data.get("max_file_mb", 10)),
            extensions=tuple(e.lower() for e in data.get("extensions", [])),
            text_slot=data.get("text_slot"),
            ask_text=bool(data.get("ask_text", False)),
            files_slot=data.get("files_slot"),
            commands=bool(data.get("commands", True)),
            accepted=self.say(data.get("accepted"), (*path, "accepted"), "input"),
            noted=self.say(data.get("noted"), (*path, "noted"), "input"),
            errors=errors,
        )
        if spec.min_length > spec.max_length:
            self.error(path, "F070", f"min_length {spec.min_length} is greater than max_length {spec.max_length}")
        if spec.ask_text and not spec.text_slot:
            self.error((*path, "ask_text"), "F070", "ask_text needs a text_slot (where the text goes if it is added)")
        if spec.text_slot and spec.kind != "attachments":
            self.error((*path, "text_slot"), "F070", "text_slot is only for kind: attachments")
        if spec.files_slot and spec.kind != "text":
            self.error((*path, "files_slot"), "F070", "files_slot is only for kind: text")
        return spec

    def pick(self, data: dict[str, Any], path: JsonPath) -> PickSpec:
        source = data["from"]
        scope = f"item:{source}"
        label = self.template(data["label"], (*path, "label"), scope) if "label" in data else None
        line = self.template(data["line"], (*path, "line"), scope) if "line" in data else None
        if source != "catalog" and (label is None or line is None):
            self.error(path, "F070", f"a pick from the list '{source}' needs 'label' and 'line' templates")
        return PickSpec(source, data["slot"], label, line, int(data.get("page_size", 6)), int(data.get("columns", 1)))

    def catalog(self, doc: dict[str, Any]) -> None:
        data = doc["catalog"]
        base = _mapping(data.get("defaults"))
        self.catalog_table(data.get("defaults"), ("catalog", "defaults"), "defaults")
        groups: list[CatalogGroup] = []
        for gi, g in enumerate(data["groups"]):
            self.catalog_table(g.get("map"), ("catalog", "groups", gi, "map"), f"group '{g['id']}'")
            for ei, e in enumerate(g["entries"]):
                self.catalog_table(e.get("map"), ("catalog", "groups", gi, "entries", ei, "map"), f"entry '{e['id']}'")
            gmap = _mapping(g.get("map")).over(base)
            entries = tuple(
                CatalogEntry(e["id"], e["name"], g["id"], g["name"], _mapping(e.get("map")).over(gmap),
                             self.where(("catalog", "groups", gi, "entries", ei)), e.get("label", ""),
                             tuple(e.get("keywords", ())), e.get("hint"), g.get("label", ""),
                             tuple(g.get("keywords", ())))
                for ei, e in enumerate(g["entries"])
            )
            groups.append(CatalogGroup(g["id"], g["name"], entries, self.where(("catalog", "groups", gi)),
                                       g.get("label", ""), tuple(g.get("keywords", ()))))
        self.out.catalog = Catalog(tuple(groups), tuple((data.get("search") or {}).get("ignore", ())))

    def catalog_table(self, data: Any, path: JsonPath, owner: str) -> None:
        if isinstance(data, dict) and data.get("table"):
            self.out.catalog_tables.append((str(data["table"]), owner, self.where((*path, "table"))))

    def bot(self, data: dict[str, Any]) -> None:
        b = data["bot"]
        path: JsonPath = ("bot",)
        commands: dict[str, str] = {}
        for word, event in (b.get("commands") or {}).items():
            key = normalize_text(word)
            if not key:
                self.error((*path, "commands", word), "F070", f"command '{word}' has no letters or digits", key=True)
            elif key in commands and commands[key] != event:
                self.error((*path, "commands", word), "F040",
                           f"command '{word}' is the same typed text as another command", key=True)
            else:
                commands[key] = event
        patterns: list[TypedPattern] = []
        for i, item in enumerate(b.get("patterns") or []):
            try:
                regex = re.compile(item["match"], re.IGNORECASE)
            except re.error as exc:
                self.error((*path, "patterns", i, "match"), "F070", f"pattern '{item['match']}' is not a regular "
                           f"expression: {exc}")
                continue
            patterns.append(TypedPattern(regex, item["slot"], item["event"], self.where((*path, "patterns", i))))
        mail = b["mail"]
        self.out.bot = BotSettings(
            start=b["start"],
            footer=self.buttons(b.get("footer"), (*path, "footer")),
            global_on={ev: self.alternatives(None, ev, t, (*path, "global", ev))
                       for ev, t in (b.get("global") or {}).items()},
            commands=commands,
            pick_labels=PickLabels(**b["pick_labels"]),
            messages={k: self.template(v, (*path, "messages", k), "message") for k, v in b["messages"].items()},
            notices={k: self.template(v, (*path, "notices", k), "notice") for k, v in b["notices"].items()},
            mail_subject=self.template(mail["code_subject"], (*path, "mail", "code_subject"), "mail"),
            mail_body=self.template(mail["code_body"], (*path, "mail", "code_body"), "mail"),
            where=self.where(path, key=True),
            patterns=tuple(patterns),
            resume=b.get("resume"),
            notice_buttons={k: self.buttons(v, (*path, "notice_buttons", k))
                            for k, v in (b.get("notice_buttons") or {}).items()},
        )

    def simpleone(self, data: dict[str, Any]) -> None:
        s = data["simpleone"]
        path: JsonPath = ("simpleone",)
        comment = self.template(s["comment"], (*path, "comment"), "ticket") if "comment" in s else None
        self.out.tickets = TicketSettings(
            tables=tuple(s["ticket_tables"]),
            time_zone=str(s.get("time_zone", "Europe/Moscow")),
            finished_states=frozenset(str(c) for c in s.get("finished_states", ())),
            comment_field=s["comment_field"],
            subject=self.template(s["subject"], (*path, "subject"), "ticket"),
            subject_max_length=int(s.get("subject_max_length", 160)),
            description=self.template(s["description"], (*path, "description"), "ticket"),
            comment=comment,
            list_limit=int(s.get("list_limit", 50)),
            status_labels={t: {str(k): v for k, v in m.items()} for t, m in s.get("status_labels", {}).items()},
            where=self.where(path, key=True),
            people_tables=tuple(s.get("people_tables", DEFAULT_PEOPLE_TABLES)),
            status_fallback={t: {str(k): v for k, v in m.items()} for t, m in s.get("status_fallback", {}).items()},
            journal=self.journal(s.get("journal") or {}, (*path, "journal"), comment),
            waiting_states=frozenset(str(c) for c in s.get("waiting_states", ())),
            moves={name: TicketMove({str(t): str(c) for t, c in (m.get("state") or {}).items()},
                                    self.template(m["comment"], (*path, "moves", name, "comment"), "move")
                                    if m.get("comment") else None, str(m.get("field", "")))
                   for name, m in (s.get("moves") or {}).items()},
        )

    def journal(self, j: dict[str, Any], path: JsonPath, comment: Template | None) -> Journal:
        """`simpleone.journal`, with the end of the comment template as the bot's own tail."""
        default = Journal()
        journal = Journal(public=j.get("public", default.public), internal=j.get("internal", default.internal),
                          table=j.get("table", default.table), bot_tail=_literal_tail(comment))
        if journal.public == journal.internal:
            self.error((*path, "internal"), "F070", f"journal: public and internal are both '{journal.public}': "
                       "work notes would reach users")
        return journal


_MIN_TAIL = 8


def _literal_tail(template: Template | None) -> str:
    """The fixed text a template ends with (after its last placeholder), stripped; "" if none or
    if it is too short to tell the bot's comments from an agent's (a full stop would match most)."""
    if template is None or not template.parts or not isinstance(template.parts[-1], str):
        return ""
    tail = template.parts[-1].strip()
    return tail if len(tail) >= _MIN_TAIL and sum(c.isalnum() for c in tail) >= _MIN_TAIL // 2 else ""


def _mapping(data: Any) -> TicketMapping:
    if not data:
        return TicketMapping()
    return TicketMapping(
        table=data.get("table"),
        service=data.get("service"),
        category=data.get("category"),
        subcategory=data.get("subcategory"),
        contact_type=data.get("contact_type"),
        fields=dict(data.get("fields", {})),
    )


def build(docs: Sequence[tuple[str, YamlDoc]]) -> Built:
    """docs: (kind, document) pairs that passed the schema."""
    out = Built()
    for kind, doc in docs:
        builder = _DocBuilder(doc, out)
        if kind != "flow":
            if kind in out.seen_kinds:
                first = out.seen_kinds[kind]
                builder.error((kind,), "F040", f"'{kind}' is already defined in {first.path}:{first.line}", key=True)
                continue
            out.seen_kinds[kind] = builder.where((kind,), key=True)
        getattr(builder, kind)(doc.data)
    return out
