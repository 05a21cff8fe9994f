"""The flows as a lead reads them: a map model shared by `flowlint graph` and the studio.

Pure data (JSON-serialisable dicts and lists). Per flow: its steps named by what they say
(the first words of `say`), edges labelled by the buttons or the input that take them rather
than by event names, `to: return` and backward edges marked "back" so that a layout can keep
the main path (start → … → end) a straight line, and steps of other flows as stub nodes.
Events that work on every step (bot.yaml `global`) are collected once, in `global`, instead of
being drawn from every node.

    {"start": "main.menu",
     "flows": {"create_ticket": {"name", "file", "line", "start", "main_path": [ids],
                                 "nodes": [node], "edges": [edge]}},
     "global": [{"labels": [...], "to": id, "title": "..."}]}

    node: {"id", "flow", "state", "title", "kind", "input", "file", "line", "text",
           "buttons": [[label]], "actions": [name], "stub": bool}
    edge: {"from", "to", "label", "kind": "forward" | "back", "events": [event]}
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from engine.flows.model import HERE, RETURN, BotSettings, FlowSet, FlowSpec, SayPart, StateSpec, TransitionSpec

# Kinds of step, as the map shows them.
ASK, PICK, BUTTONS, ACTION, END, STUB, RETURN_STUB = "ask", "pick", "buttons", "action", "end", "stub", "return"
FORWARD, BACK = "forward", "back"

TITLE_WORDS = 5
TITLE_CHARS = 34

# A step that only runs actions is named by what its action does.
ACTION_TITLES: dict[str, str] = {
    "auth.check": "проверка входа",
    "auth.refresh": "кто вошёл",
    "auth.send_code": "отправка кода на почту",
    "auth.verify_code": "проверка кода",
    "auth.bind": "поиск пользователя в SimpleOne",
    "auth.sign_out": "выход",
    "privacy.forget": "удаление данных пользователя",
    "catalog.suggest": "поиск услуги по словам",
    "tickets.create": "создание заявки",
    "tickets.list_mine": "список моих заявок",
    "tickets.list_closed": "список закрытых заявок",
    "tickets.find_number": "поиск заявки по номеру",
    "tickets.open": "открытие заявки",
    "tickets.add_comment": "отправка дополнения",
    "tickets.asked": "был ли вопрос специалиста",
    "tickets.take_as_answer": "текст — ответ специалисту",
    "tickets.conversation": "переписка по заявке",
    "tickets.conversation_earlier": "более ранняя переписка",
    "tickets.confirm": "подтверждение решения",
    "tickets.reopen": "возврат заявки в работу",
    "tickets.withdraw": "отзыв заявки",
    "tickets.rate": "оценка заявки",
}

# What an action's outcome (or a later event from SimpleOne) means, in plain words.
OUTCOME_LABELS: dict[str, str] = {
    "signed_in": "вход выполнен",
    "signed_out": "нужен вход",
    "not_signed_in": "вход не был выполнен",
    "sent": "код отправлен",
    "bad_domain": "чужая почта",
    "cooldown": "код недавно отправлен",
    "too_many": "слишком много попыток",
    "mail_failed": "письмо не ушло",
    "verified": "код верный",
    "wrong": "код неверный",
    "expired": "код устарел",
    "locked": "ввод заблокирован",
    "bound": "пользователь найден",
    "no_user": "пользователя нет в SimpleOne",
    "unavailable": "SimpleOne недоступна",
    "found": "найдено",
    "none": "ничего нет",
    "not_found": "не найдено",
    "queued": "принято",
    "added": "добавлено в заявку",
    "nothing": "менять нечего",
    "asked": "был вопрос специалиста",
    "closed": "заявка уже закрыта",
    "not_finished": "работа ещё не выполнена",
    "shown": "показано",
    "opened": "заявка открыта",
    "listed": "есть заявки",
    "empty": "заявок нет",
    "no_description": "нет описания",
    "service_gone": "услуги больше нет",
    "created": "заявка зарегистрирована",
    "rejected": "заявка не принята",
    "forgotten": "данные удалены",
    "busy": "заявка ещё в пути",
}

INPUT_LABELS: dict[str, str] = {"text": "ввод текста", "email": "ввод почты", "code": "ввод кода"}
PICK_LABEL = "выбор из списка"
TYPED_LABEL = "текст без файла"
THEN_LABEL = "потом"
RETURN_TITLE = "туда, откуда пришли"

_BRACES = re.compile(r"\{[^{}]*\}")
_LETTERS = re.compile(r"[^\W\d_]")


def readable_model(flow_set: FlowSet) -> dict[str, Any]:
    """The map of a whole, valid flow set."""
    return readable_model_of(flow_set.flows, flow_set.bot)


def readable_model_of(flows: Mapping[str, FlowSpec], bot: BotSettings | None = None) -> dict[str, Any]:
    """The map of some flows (one file drawn alone: steps of flows not given become stubs)."""
    return _Reader(flows, bot).model()


def title_of(st: StateSpec) -> str:
    """The first words a step says or asks; for a step that only acts, what its action does."""
    line = _first_line(st.say)
    if line:
        return _shorten(line)
    for name in reversed(st.enter):
        if name in ACTION_TITLES:
            return ACTION_TITLES[name]
    return st.name.split(".", 1)[1].replace("_", " ")


def _first_line(parts: tuple[SayPart, ...]) -> str:
    # What the step says when nothing is set yet: unconditional parts, then `unless` ones, then the rest.
    ranked = sorted(enumerate(parts), key=lambda p: (bool(p[1].when), bool(p[1].unless), p[0]))
    for _, part in ranked:
        for line in _part_text(part).splitlines():
            if len(_LETTERS.findall(_BRACES.sub("", line))) >= 3:
                return line.strip()
    return ""


def _part_text(part: SayPart) -> str:
    if part.each:
        return "\n".join(_part_text(p) for p in part.parts)
    return part.template.source


def _capital(word: str) -> str:
    return word[:1].upper() + word[1:]


def _shorten(line: str) -> str:
    words = _BRACES.sub("…", line).rstrip(".:").split()
    out = ""
    for i, word in enumerate(words):
        candidate = f"{out} {word}".strip()
        if i >= TITLE_WORDS or len(candidate) > TITLE_CHARS:
            return out.rstrip(",.:;—–- …") + "…"
        out = candidate
    return out


def full_text(parts: Iterable[SayPart]) -> str:
    return "\n".join(_part_text(p) for p in parts)


def kind_of(st: StateSpec) -> str:
    if st.pick is not None:
        return PICK
    if st.input is not None:
        return ASK
    if st.buttons:
        return BUTTONS
    if st.enter and not st.say:
        return ACTION
    return END if not st.on else BUTTONS


class _Reader:
    def __init__(self, flows: Mapping[str, FlowSpec], bot: BotSettings | None) -> None:
        self.flows = flows
        self.bot = bot
        self.states = {name: st for flow in flows.values() for name, st in flow.states.items()}
        self.global_on = bot.global_on if bot else {}
        # Calls that come back: (caller, event's transition) for every transition with a `then`.
        self.calls: list[tuple[str | None, TransitionSpec]] = []
        for name, st in self.states.items():
            for alternatives in st.on.values():
                self.calls.extend((name, t) for t in alternatives if t.then)
        for alternatives in self.global_on.values():
            self.calls.extend((None, t) for t in alternatives if t.then)

    # ------------------------------------------------------------------ model

    def model(self) -> dict[str, Any]:
        return {
            "start": self.bot.start if self.bot else "",
            "flows": {name: self.flow(spec) for name, spec in self.flows.items()},
            "global": self.legend(),
        }

    def title(self, state: str) -> str:
        st = self.states.get(state)
        return title_of(st) if st else state.split(".", 1)[-1]

    def node(self, st: StateSpec) -> dict[str, Any]:
        flow, state = st.name.split(".", 1)
        return {
            "id": st.name, "flow": flow, "state": state, "title": title_of(st), "kind": kind_of(st),
            "input": st.input.kind if st.input else (f"pick:{st.pick.source}" if st.pick else None),
            "file": st.where.path, "line": st.where.line, "text": full_text(st.say),
            "buttons": [[b.label for b in row] for row in st.buttons],
            "actions": list(st.enter), "stub": False,
        }

    def flow(self, spec: FlowSpec) -> dict[str, Any]:
        nodes = [self.node(st) for st in spec.states.values()]
        stubs: dict[str, dict[str, Any]] = {}
        edges: list[dict[str, Any]] = []

        def stub(target: str, then: str | None) -> str:
            key = f"{spec.name}>{target}" + (f">{then}" if then else "")
            if key not in stubs:
                target_st = self.states.get(target)
                title = RETURN_TITLE if target == RETURN else self.title(target)
                if then and then != HERE and then not in spec.states:
                    title += f" → {self.title(then)}"
                stubs[key] = {
                    "id": key, "flow": target.split(".", 1)[0], "state": target, "title": title,
                    "kind": RETURN_STUB if target == RETURN else STUB, "input": None,
                    "file": target_st.where.path if target_st else None,
                    "line": target_st.where.line if target_st else None,
                    "text": full_text(target_st.say) if target_st else "",
                    "buttons": [], "actions": [], "stub": True,
                }
            return key

        def add(source: str, dest: str, label: str, event: str, back: bool = False) -> None:
            for e in edges:
                if e["from"] == source and e["to"] == dest and e["back"] == back:
                    if label not in e["labels"]:
                        e["labels"].append(label)
                    if event not in e["events"]:
                        e["events"].append(event)
                    return
            edges.append({"from": source, "to": dest, "labels": [label], "events": [event], "back": back})

        def go(source: str, t: TransitionSpec, label: str, event: str) -> None:
            for dest in _destinations(t):
                if dest == RETURN:
                    self.returns(spec, source, label, event, add, stub)
                elif dest in spec.states:
                    add(source, dest, label, event)
                else:
                    add(source, stub(dest, t.then), label, event)
                    if t.then and t.then in spec.states:
                        add(stub(dest, t.then), t.then, THEN_LABEL, "then")
                    elif t.then == HERE:
                        add(stub(dest, t.then), source, THEN_LABEL, "then")

        for st in spec.states.values():
            labels = self.event_labels(st)
            for event, alternatives in st.on.items():
                label = labels.get(event) or OUTCOME_LABELS.get(event) or self.typed_label(event) or event
                for t in alternatives:
                    go(st.name, t, label, event)
            # Buttons of this step whose events work everywhere (the main menu's «Создать заявку»).
            for row in st.buttons:
                for button in row:
                    if button.event not in st.on:
                        for t in self.global_on.get(button.event, ()):
                            go(st.name, t, f"«{button.label}»", button.event)

        all_nodes = nodes + list(stubs.values())
        main_path = self.main_path(spec)
        _mark_back(spec.start, main_path, all_nodes, edges)
        for e in edges:
            e["label"] = " / ".join(e.pop("labels"))
            e["kind"] = BACK if e.pop("back") else e.get("kind", FORWARD)
        return {"name": spec.name, "file": spec.where.path, "line": spec.where.line, "start": spec.start,
                "main_path": main_path, "nodes": all_nodes, "edges": edges}

    def returns(self, spec: FlowSpec, source: str, label: str, event: str, add: Any, stub: Any) -> None:
        """`to: return` from source: back to the steps of this flow its callers named in `then`,
        and to a 'where they came from' stub for callers elsewhere."""
        targets: list[str] = []
        elsewhere = False
        for caller, t in self.calls:
            if t.to != source:
                continue
            then = caller if t.then == HERE else t.then
            if caller is not None and then is not None and caller in spec.states and then in spec.states:
                if then not in targets:
                    targets.append(then)
            else:
                elsewhere = True
        for target in targets:
            add(source, target, label, event, True)
        if elsewhere or not targets:
            add(source, stub(RETURN, None), label, event, True)

    def typed_label(self, event: str) -> str:
        """A global event handled by the step itself: the command typed for it («Назад»)."""
        words = [word for word, ev in self.bot.commands.items() if ev == event] if self.bot else []
        return f"«{_capital(words[0])}»" if words else ""

    def event_labels(self, st: StateSpec) -> dict[str, str]:
        """What raises each event in this step, as the user sees it."""
        labels: dict[str, list[str]] = {}
        for row in st.buttons:
            for button in row:
                labels.setdefault(button.event, [])
                if f"«{button.label}»" not in labels[button.event]:
                    labels[button.event].append(f"«{button.label}»")
        out = {event: " / ".join(names) for event, names in labels.items()}
        if st.input is not None:
            if st.input.kind == "attachments":
                if st.input.ask_text:
                    out.setdefault("typed", TYPED_LABEL)
            else:
                out.setdefault("ok", INPUT_LABELS.get(st.input.kind, INPUT_LABELS["text"]))
        if st.pick is not None:
            out.setdefault("chosen", PICK_LABEL)
            out.setdefault("back", f"«{self.bot.pick_labels.back}»" if self.bot else "«Назад»")
        return out

    def main_path(self, spec: FlowSpec) -> list[str]:
        """From the start, the step each step leads to when all goes well: an input's usual
        answer, else the first positive or primary button, else its first outcome."""
        path = [spec.start]
        while True:
            st = spec.states[path[-1]]
            nxt = next((d for d in self.preferred(st) if d in spec.states and d not in path), None)
            if nxt is None:
                return path
            path.append(nxt)

    def preferred(self, st: StateSpec) -> list[str]:
        out: list[str] = []
        events: list[str] = []
        if st.pick is not None:
            events.append("chosen")
        if st.input is not None and st.input.kind != "attachments":
            events.append("ok")
        rank = {"positive": 0, "primary": 1}
        buttons = sorted((b for row in st.buttons for b in row), key=lambda b: rank.get(b.color or "", 2))
        events += [b.event for b in buttons]
        events += list(st.on)
        for event in events:
            alternatives = st.on.get(event, ())
            plain = [t for t in alternatives if not t.when and not t.unless] or list(alternatives)
            for t in plain[-1:]:
                fallback = t.otherwise if t.to == RETURN else t.to
                if fallback:
                    out.append(fallback)
        return out

    # ------------------------------------------------------------------ legend

    def legend(self) -> list[dict[str, Any]]:
        """Events that work on every step, grouped by where they lead."""
        if self.bot is None:
            return []
        labels: dict[str, list[str]] = {event: [] for event in self.global_on}
        rows = [*self.bot.footer, *(row for rows in self.bot.notice_buttons.values() for row in rows)]
        # A step's own buttons, where the step leaves their event to the global one.
        buttons = [b for row in rows for b in row]
        buttons += [b for st in self.states.values() for row in st.buttons for b in row if b.event not in st.on]
        for button in buttons:
            if button.event in labels and f"«{button.label}»" not in labels[button.event]:
                labels[button.event].append(f"«{button.label}»")
        for event, found in labels.items():
            if not found and self.typed_label(event):
                found.append(self.typed_label(event))
        groups: dict[str, dict[str, Any]] = {}
        for event, alternatives in self.global_on.items():
            for t in alternatives[:1]:
                dest = t.then if t.then and t.then != HERE else t.to
                title = self.title(dest)
                if t.then and t.then != HERE:
                    title = f"{self.title(t.to)} → {title}"
                group = groups.setdefault(dest + "|" + title, {"to": dest, "title": title, "labels": [],
                                                              "events": []})
                group["labels"] += [label for label in labels[event] if label not in group["labels"]]
                group["events"].append(event)
        return list(groups.values())


def _destinations(t: TransitionSpec) -> list[str]:
    out = [t.to] + [o.to for o in t.otherwise_when]
    if t.otherwise:
        out.append(t.otherwise)
    return list(dict.fromkeys(out))


def _mark_back(start: str, main_path: list[str], nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> None:
    """Edges that close a cycle (found depth first from the start, along the main path first)
    become "back", so that the forward ones form layers with the main path straight."""
    out: dict[str, list[dict[str, Any]]] = {n["id"]: [] for n in nodes}
    for e in edges:
        if not e["back"]:
            out[e["from"]].append(e)
    following = dict(itertools.pairwise(main_path))
    for source, found in out.items():
        found.sort(key=lambda e: e["to"] != following.get(source))
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str) -> None:
        state[node] = 1
        for e in out[node]:
            seen = state.get(e["to"])
            if seen == 1:
                e["back"] = True
            elif seen is None:
                visit(e["to"])
        state[node] = 2

    for root in [start, *(n["id"] for n in nodes)]:
        if root not in state:
            visit(root)
