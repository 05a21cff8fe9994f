"""Each kind of mistake a support lead can make is reported with its code and line."""

from __future__ import annotations

from pathlib import Path

from engine.flows.findings import Severity
from engine.load import load_flow_set

FLOWS = Path(__file__).resolve().parents[3] / "flows"


def edit(flows: Path, name: str, old: str, new: str) -> int:
    """Replace old by new in one flow file; returns the 1-based line of the edit."""
    path = flows / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{old!r} not in {name}"
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return line


def codes(flows: Path) -> list[tuple[str, str, int]]:
    result = load_flow_set([flows])
    return [(Path(f.path).name, f.code, f.line) for f in result.findings]


def test_the_shipped_flows_are_clean() -> None:
    result = load_flow_set([FLOWS])
    assert result.findings == []
    assert result.flow_set is not None


def test_yaml_syntax_error(flows: Path) -> None:
    line = edit(flows, "main.yaml", "    footer: false\n", "    footer: false: true\n")
    assert codes(flows) == [("main.yaml", "F001", line)]


def test_schema_violation_points_at_the_key(flows: Path) -> None:
    line = edit(flows, "main.yaml", "    footer: false\n", "    footer: false\n    colour: red\n")
    found = codes(flows)
    assert ("main.yaml", "F002", line + 1) in found, found


def test_unknown_target_state_and_flow(flows: Path) -> None:
    line = edit(flows, "create_ticket.yaml", "      done: {to: confirm,", "      done: {to: confrim,")
    line2 = edit(flows, "my_tickets.yaml", "add: {to: add_to_ticket.compose", "add: {to: add_to_tiket.compose")
    found = codes(flows)
    assert ("create_ticket.yaml", "F010", line) in found
    assert ("my_tickets.yaml", "F011", line2) in found


def test_unreachable_state_is_an_error(flows: Path) -> None:
    flows.joinpath("main.yaml").write_text(
        flows.joinpath("main.yaml").read_text(encoding="utf-8")
        + "\n  orphan:\n    say: никто сюда не попадёт\n    buttons:\n      - [{label: Меню, event: menu}]\n",
        encoding="utf-8")
    result = load_flow_set([flows])
    orphan = [f for f in result.findings if f.code == "F012"]
    assert len(orphan) == 1 and orphan[0].severity is Severity.ERROR
    assert result.flow_set is None  # a reload would refuse it


def test_state_with_no_way_out(flows: Path) -> None:
    line = edit(flows, "main.yaml", "  help:\n", "  stuck:\n    say: тупик\n    footer: false\n  help:\n")
    edit(flows, "bot.yaml", "    menu: main.menu\n", "    menu: main.menu\n    stuck: main.stuck\n")
    assert ("main.yaml", "F013", line) in codes(flows)


def test_button_nobody_handles(flows: Path) -> None:
    line = edit(flows, "main.yaml", '{label: "Помощь", event: help}', '{label: "Помощь", event: helpp}')
    assert ("main.yaml", "F014", line) in codes(flows)


def test_unknown_action_and_unhandled_outcome(flows: Path) -> None:
    line = edit(flows, "main.yaml", "    enter: [auth.sign_out]\n", "    enter: [auth.sing_out]\n")
    edit(flows, "auth.yaml", "      wrong:\n", "      wrongg:\n")
    line2 = edit(flows, "auth.yaml", "    enter: [auth.verify_code]\n", "    enter: [auth.verify_code]\n")
    found = codes(flows)
    assert ("main.yaml", "F020", line) in found, found
    assert ("auth.yaml", "F021", line2) in found, found


def test_input_and_pick_outcomes_must_lead_somewhere(flows: Path) -> None:
    line = edit(flows, "auth.yaml", "    on:\n      ok: send_code\n", "    on:\n      xok: send_code\n")
    line2 = edit(flows, "create_ticket.yaml", "      chosen:\n        # Back to the check screen",
                 "      xchosen:\n        # Back to the check screen")
    found = codes(flows)
    ask_email = ("auth.yaml", "F013", line - 8)
    assert any(c[:2] == ask_email[:2] and "'ok'" in msg for c, msg in _messages(flows)), found
    assert any(c[:2] == ("create_ticket.yaml", "F013") and "'chosen'" in msg for c, msg in _messages(flows)), found
    assert line2


def _messages(flows: Path) -> list[tuple[tuple[str, str, int], str]]:
    result = load_flow_set([flows])
    return [((Path(f.path).name, f.code, f.line), f.message) for f in result.findings]


def test_conditions_and_cleared_slots_are_checked(flows: Path) -> None:
    line = edit(flows, "main.yaml", "event: sign_out, when: user.email}", "event: sign_out, when: user.emial}")
    line2 = edit(flows, "create_ticket.yaml", "drop_files: {to: attach, clear: [files]}",
                 "drop_files: {to: attach, clear: [fiels]}")
    found = codes(flows)
    assert ("main.yaml", "F030", line) in found and ("create_ticket.yaml", "F030", line2) in found, found


def test_unknown_slot_and_broken_template(flows: Path) -> None:
    line = edit(flows, "create_ticket.yaml", '"Услуга: {service.name}"', '"Услуга: {servce.name}"')
    line2 = edit(flows, "my_tickets.yaml", '"Открытых заявок у вас нет."', '"Открытых {заявок у вас нет."')
    line3 = edit(flows, "create_ticket.yaml", '"Категория: {service.group}"', '"Категория: {service.grup}"')
    found = codes(flows)
    assert ("create_ticket.yaml", "F030", line) in found
    assert ("create_ticket.yaml", "F030", line3) in found
    assert ("my_tickets.yaml", "F031", line2) in found


def test_each_is_checked_over_the_list_and_its_items_fields(flows: Path) -> None:
    """`each:` names a list; its inner say may name the items' fields and the slots, nothing else."""
    line = edit(flows, "my_tickets.yaml", '"{date} — Вы: {text|short:300}"', '"{dat} — Вы: {text|short:300}"')
    line2 = edit(flows, "my_tickets.yaml", "            unless: mine\n", "            unless: mien\n")
    found = codes(flows)
    assert ("my_tickets.yaml", "F030", line) in found and ("my_tickets.yaml", "F030", line2) in found, found
    assert len(found) == 2, found


def test_each_over_what_is_not_a_list(flows: Path) -> None:
    line = edit(flows, "my_tickets.yaml", "      - each: talk\n", "      - each: talk_more\n")
    found = _messages(flows)
    assert any(where[1] == "F031" and where[2] > line and "not one" in message for where, message in found), found
    line2 = edit(flows, "my_tickets.yaml", "      - each: talk_more\n", "      - each: tlak\n")
    assert ("my_tickets.yaml", "F030", line2) in codes(flows)


def test_each_inside_each_is_refused(flows: Path) -> None:
    inner = "          - text: \"{date} — Вы: {text|short:300}\"\n"
    line = edit(flows, "my_tickets.yaml", inner, "          - each: talk\n            say: \"{date}\"\n" + inner)
    found = codes(flows)
    # The schema points at the say that holds it.
    assert [(name, code) for name, code, at in found] == [("my_tickets.yaml", "F002")] and found[0][2] < line, found


def test_duplicate_state_flow_and_catalogue_ids(flows: Path) -> None:
    text = flows.joinpath("main.yaml").read_text(encoding="utf-8")
    flows.joinpath("main_copy.yaml").write_text(text, encoding="utf-8")
    line = edit(flows, "catalog.yaml", "- id: pyrus\n", "- id: directum\n")
    line2 = edit(flows, "main.yaml", "  sign_out:\n", "  help:\n    say: x\n  sign_out:\n")
    found = codes(flows)
    assert any(c[:2] == ("main_copy.yaml", "F040") for c in found), found
    assert ("catalog.yaml", "F040", line) in found
    assert ("main.yaml", "F040", line2) in found


def test_keyboards_over_vk_limits(flows: Path) -> None:
    many = "".join(f"      - [{{label: Кнопка {i}, event: menu}}]\n" for i in range(10))
    first_row = ('      - [{label: "Создать заявку", event: create, color: primary}, {label: "Назад", event: back}]\n'
                 '      - [{label: "Удалить мои данные", event: forget_me}]\n')
    tail = "    on:\n      back: {to: return, else: menu}"
    edit(flows, "main.yaml", "    buttons:\n" + first_row + tail, "    buttons:\n" + many + first_row + tail)
    help_line = edit(flows, "main.yaml", "  help:\n", "  help:\n")  # the state whose buttons grew
    long_label = "Очень длинная подпись кнопки, которая не влезет в ВК"
    line2 = edit(flows, "my_tickets.yaml", '{label: "К списку", event: back}',
                 f'{{label: "{long_label}", event: back}}')
    long_event = "e" * 260
    line3 = edit(flows, "auth.yaml", '{label: "Повторить", event: retry, color: primary}',
                 f'{{label: "Повторить", event: {long_event}, color: primary}}')
    edit(flows, "auth.yaml", "      retry: bind", f"      {long_event}: bind")
    found = codes(flows)
    assert ("main.yaml", "F050", help_line) in found, found
    assert ("my_tickets.yaml", "F051", line2) in found
    assert ("auth.yaml", "F052", line3) in found


def test_inline_keyboards_have_stricter_limits(flows: Path) -> None:
    edit(flows, "add_to_ticket.yaml", "  done:\n", "  done:\n    inline: true\n")
    assert codes(flows) == []  # 2 rows, 3 buttons with the footer: fine inline
    rows = "".join(f"      - [{{label: Кнопка {i}, event: menu}}]\n" for i in range(6))
    line = edit(flows, "my_tickets.yaml", "  empty:\n",
                "  crowded:\n    inline: true\n    say: много кнопок\n    buttons:\n" + rows + "  empty:\n")
    found = codes(flows)
    # 6 own rows and the footer: 7 rows, over the inline limit of 6 (a regular keyboard takes 10).
    assert ("my_tickets.yaml", "F050", line) in found, found


def test_catalogue_entry_without_mapping(flows: Path) -> None:
    edit(flows, "catalog.yaml", "      map: {category: websites}\n", "")
    line = edit(flows, "catalog.yaml", "- id: ranepa_site\n", "- id: ranepa_site\n")
    edit(flows, "catalog.yaml", "          map: {subcategory: ranepa_site}\n", "")
    found = codes(flows)
    assert ("catalog.yaml", "F060", line) in found


def test_missing_settings_file(flows: Path) -> None:
    (flows / "bot.yaml").unlink()
    result = load_flow_set([flows])
    assert result.flow_set is None
    assert any(f.code == "F070" and "bot" in f.message for f in result.findings)


def test_input_without_its_error_texts(flows: Path) -> None:
    edit(flows, "auth.yaml", '        bad_code: "Код — это 6 цифр из письма, например 123456."\n', "")
    assert any(c[:2] == ("auth.yaml", "F070") for c in codes(flows))


def test_the_journal_comes_from_simpleone_yaml_with_the_bot_s_tail() -> None:
    result = load_flow_set([FLOWS])
    assert result.flow_set is not None
    journal = result.flow_set.tickets.journal
    assert (journal.public, journal.internal, journal.table) == (
        "additional_comments", "work_notes", "sys_activity_feed_item")
    assert journal.bot_tail == "(добавлено через бот ВКонтакте)"  # the end of `comment:`


def test_a_journal_whose_public_field_is_the_internal_one_is_refused(flows: Path) -> None:
    edit(flows, "simpleone.yaml", "    public: additional_comments\n", "    public: work_notes\n")
    line = edit(flows, "simpleone.yaml", "    internal: work_notes\n", "    internal: work_notes\n")
    assert ("simpleone.yaml", "F070", line) in codes(flows)
    assert load_flow_set([flows]).flow_set is None


def test_custom_journal_names_and_no_tail_without_a_fixed_comment_end(flows: Path) -> None:
    edit(flows, "simpleone.yaml", "    public: additional_comments\n", "    public: u_public_notes\n")
    edit(flows, "simpleone.yaml", "    (добавлено через бот ВКонтакте)\n", "    {user.email}\n")
    result = load_flow_set([flows])
    assert result.flow_set is not None, result.findings
    journal = result.flow_set.tickets.journal
    assert journal.public == "u_public_notes" and journal.bot_tail == ""


def test_drafts_name_slots_something_writes_each_in_one_flow(flows: Path) -> None:
    line = edit(flows, "feedback.yaml", "draft: [rating, reason]", "draft: [rating, reason, raeson, comment]")
    result = load_flow_set([flows])
    found = [(Path(f.path).name, f.code, f.line, f.severity) for f in result.findings]
    assert ("feedback.yaml", "F030", line, Severity.WARNING) in found  # raeson: written by nothing
    assert ("feedback.yaml", "F040", line, Severity.ERROR) in found  # comment: add_to_ticket's already
    assert any("'raeson' is written by nothing" in f.message for f in result.findings)


def test_a_draft_is_a_list_of_slot_names(flows: Path) -> None:
    line = edit(flows, "feedback.yaml", "draft: [rating, reason]", "draft: {rating: keep}")
    assert ("feedback.yaml", "F002", line) in codes(flows)


def test_forget_draft_needs_a_draft_and_a_flow(flows: Path) -> None:
    line = edit(flows, "bot.yaml", "    menu: main.menu\n", "    menu: {to: main.menu, forget_draft: true}\n")
    line2 = edit(flows, "my_tickets.yaml", "      closed: closed\n", "      closed: {to: closed, forget_draft: true}\n")
    result = load_flow_set([flows])
    found = [(Path(f.path).name, f.code, f.line, f.severity) for f in result.findings]
    assert ("bot.yaml", "F070", line, Severity.ERROR) in found
    assert ("my_tickets.yaml", "F070", line2, Severity.WARNING) in found
