"""What flowlint says, word for word: a support lead reads these lines, not the code behind them.

Each case makes one mistake a lead makes (a typo most of all) and expects the exact line, with the
place to look and, where a known name is near, the one that was meant.
"""

from __future__ import annotations

from pathlib import Path

from engine.load import load_flow_set


def edit(flows: Path, name: str, old: str, new: str) -> int:
    """Replace old by new in one flow file; returns the 1-based line of the edit."""
    path = flows / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{old!r} not in {name}"
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return line


def lines(flows: Path, code: str) -> list[str]:
    result = load_flow_set([flows])
    return [str(f).removeprefix(str(flows) + "/") for f in result.findings if f.code == code]


# ---------------------------------------------------------------- F070: a misspelt ticket table


def test_an_entry_mapped_to_an_unknown_table_is_shown_at_the_entry_with_the_table_meant(flows: Path) -> None:
    line = edit(flows, "catalog.yaml", "      map: {table: itsm_request, category: development_requests}",
                "      map: {table: itsm_reqest, category: development_requests}")
    assert lines(flows, "F070") == [
        f"catalog.yaml:{line}:20: F070 catalogue group 'development_requests': table 'itsm_reqest' is not one of the "
        "ticket tables (itsm_incident, itsm_request); the name may be misspelt: did you mean itsm_request?"]


def test_an_entry_s_own_table_is_named_by_its_id(flows: Path) -> None:
    line = edit(flows, "catalog.yaml", "        - id: ranepa_site\n",
                "        - id: ranepa_site\n          map: {table: itsm_incidnet}\n") + 1
    assert lines(flows, "F070") == [
        f"catalog.yaml:{line}:24: F070 catalogue entry 'ranepa_site': table 'itsm_incidnet' is not one of the "
        "ticket tables (itsm_incident, itsm_request); the name may be misspelt: did you mean itsm_incident?"]


def test_a_table_like_no_known_one_is_to_be_added_to_ticket_tables(flows: Path) -> None:
    line = edit(flows, "catalog.yaml", "    table: itsm_incident\n", "    table: hr_case\n")
    assert lines(flows, "F070") == [
        f"catalog.yaml:{line}:12: F070 catalogue defaults: table 'hr_case' is not one of the ticket tables "
        "(itsm_incident, itsm_request); if it is a new table, add it to ticket_tables in simpleone.yaml too "
        "(or users would not see these tickets)"]


# ---------------------------------------------------------------- F030: a placeholder inside a block text


def test_an_unknown_slot_in_a_literal_block_points_at_the_placeholder_itself(flows: Path) -> None:
    line = edit(flows, "bot.yaml", "      Код действует {minutes} мин.", "      Код действует {minuts} мин.")
    assert lines(flows, "F030") == [
        f"bot.yaml:{line}:21: F030 unknown slot 'minuts' (did you mean minutes?) in text "
        "'Код действует {minuts} мин. Никому его не сообщ…'"]


def test_an_unknown_slot_in_a_folded_block_points_at_its_line_and_quotes_around_it(flows: Path) -> None:
    line = edit(flows, "create_ticket.yaml", "      Вы можете создать заявку заново",
                "      Вы можете {servce.name} создать заявку заново")
    assert lines(flows, "F030") == [
        f"create_ticket.yaml:{line}:17: F030 unknown slot 'servce.name' (did you mean service?) in text "
        "'…та разберутся. Вы можете {servce.name} создать заявку заново, и…'"]


def test_a_missing_field_in_a_block_names_the_field_meant(flows: Path) -> None:
    line = edit(flows, "auth.yaml", "      Почта {auth.verified} подтверждена",
                "      Почта {auth.verifed} подтверждена")
    assert lines(flows, "F030") == [
        f"auth.yaml:{line}:13: F030 'auth' has no field 'verifed' (did you mean auth.verified? it has: "
        "attempts_left, domains, email, has_code, minutes, verified, wait_minutes, wait_seconds) in text "
        "'Почта {auth.verifed} подтверждена, но в систе…'"]


def test_the_same_placeholder_written_twice_is_pointed_at_twice(flows: Path) -> None:
    line = edit(flows, "bot.yaml", "      Код действует {minutes} мин.", "      Код {minuts} действует {minuts} мин.")
    assert [x.split(": F030")[0] for x in lines(flows, "F030")] == [f"bot.yaml:{line}:11", f"bot.yaml:{line}:30"]


# ---------------------------------------------------------------- "did you mean": states, events, actions, slots


def test_unknown_state_suggests_the_nearest_state_of_that_flow(flows: Path) -> None:
    line = edit(flows, "create_ticket.yaml", "      done: {to: confirm,", "      done: {to: confrim,")
    assert lines(flows, "F010") == [
        f"create_ticket.yaml:{line}:13: F010 unknown state 'confrim' in flow 'create_ticket' (did you mean confirm?)"]


def test_unknown_flow_suggests_the_nearest_flow(flows: Path) -> None:
    line = edit(flows, "my_tickets.yaml", "add: {to: add_to_ticket.compose,", "add: {to: add_to_tiket.compose,")
    found = lines(flows, "F011")
    assert len(found) == 1 and found[0].startswith(f"my_tickets.yaml:{line}:")
    assert found[0].endswith("F011 unknown flow 'add_to_tiket' in target 'add_to_tiket.compose' "
                             "(did you mean add_to_ticket?)")


def test_unhandled_button_event_suggests_the_handled_one(flows: Path) -> None:
    line = edit(flows, "main.yaml", '{label: "Помощь", event: help}', '{label: "Помощь", event: helpp}')
    found = [x for x in lines(flows, "F014") if "warning" not in x]
    assert found == [f"main.yaml:{line}:10: F014 main.menu: button 'Помощь' raises 'helpp' but nothing handles it "
                     "(did you mean help?)"]


def test_unknown_action_suggests_the_nearest_action(flows: Path) -> None:
    line = edit(flows, "main.yaml", "    enter: [auth.sign_out]\n", "    enter: [auth.sing_out]\n")
    assert lines(flows, "F020") == [
        f"main.yaml:{line}:13: F020 main.sign_out: unknown action 'auth.sing_out' (did you mean auth.sign_out?)"]


def test_unknown_slot_in_a_condition_suggests_the_nearest_slot(flows: Path) -> None:
    line = edit(flows, "create_ticket.yaml", "      drop_files: {to: attach, clear: [files]}\n",
                "      drop_files: {to: attach, clear: [filez]}\n")
    found = lines(flows, "F030")
    assert found == [f"create_ticket.yaml:{line}:40: F030 unknown slot 'filez' (did you mean files?)"]


# ---------------------------------------------------------------- F002: the schema in plain words


def test_unknown_key_in_a_state_names_the_state_and_the_key_meant(flows: Path) -> None:
    line = edit(flows, "create_ticket.yaml", "  describe:\n    say: |", "  describe:\n    sya: |") + 1
    assert lines(flows, "F002") == [
        f"create_ticket.yaml:{line}:5: F002 unknown key 'sya' in state 'describe': did you mean say? "
        "(allowed: say, enter, input, pick, buttons, footer, free_text, on, inline)"]


def test_a_wrong_type_says_what_is_wanted_and_what_was_written(flows: Path) -> None:
    line = edit(flows, "create_ticket.yaml", "      slot: description\n",
                "      slot: description\n      max_length: десять\n") + 1
    assert lines(flows, "F002") == [
        f"create_ticket.yaml:{line}:19: F002 'max_length' must be a whole number, got 'десять' "
        "(in state 'describe', input)"]


def test_a_value_not_in_the_list_suggests_the_one_meant(flows: Path) -> None:
    line = edit(flows, "create_ticket.yaml", "      kind: text\n      slot: description\n",
                "      kind: txt\n      slot: description\n")
    assert lines(flows, "F002") == [
        f"create_ticket.yaml:{line}:13: F002 'kind' must be one of text, email, code, attachments, got 'txt' "
        "(did you mean text?) (in state 'describe', input)"]


def test_a_button_s_unknown_key_names_its_row_and_place(flows: Path) -> None:
    line = edit(flows, "main.yaml", '{label: "Помощь", event: help}', '{lable: "Помощь", event: help}')
    found = lines(flows, "F002")
    assert len(found) == 1 and found[0].startswith(f"main.yaml:{line}:")
    assert found[0].split(": F002 ")[1] == (
        "unknown key 'lable' in state 'menu', buttons, row 3, button 1: did you mean label? "
        "(allowed: label, event, color, when, unless)")


def test_a_missing_key_of_a_catalogue_entry_names_the_entry(flows: Path) -> None:
    line = edit(flows, "catalog.yaml", '          name: "Сайт ranepa.ru"\n', "") - 1
    found = lines(flows, "F002")
    assert found == [f"catalog.yaml:{line}:11: F002 missing 'name' in group 'websites', entry 'ranepa_site' "
                     "(it must be given)"], found


def test_a_conversation_test_s_misspelt_keys_are_named_by_test_and_step(tmp_path: Path) -> None:
    from engine.convtest import load_conversations

    path = tmp_path / "mine.yaml"
    path.write_text("tests:\n  - name: typos\n    steps:\n      - send: Помощь\n        expcet: {says: Бот}\n"
                    "      - atach: [{name: a.pdf}]\n      - expect: {says: 1}\n", encoding="utf-8")
    _, findings = load_conversations([path])
    allowed = ("(allowed: send, press, code, attach, sticker, payload, show, simpleone, text, wait_minutes, use, with, "
               "expect)")
    assert [str(f).removeprefix(str(tmp_path) + "/") for f in findings] == [
        f"mine.yaml:5:9: F002 unknown key 'expcet' in test 1, step 1: did you mean expect? {allowed}",
        f"mine.yaml:6:9: F002 unknown key 'atach' in test 1, step 2: did you mean attach? {allowed}",
        "mine.yaml:7:9: F002 test 1, step 3 needs one of the keys send, press, code, attach, sticker, payload, "
        "show, simpleone, wait_minutes, use",
        "mine.yaml:7:24: F002 'says' must be text or a list, got 1 (in test 1, step 3, expect)",
    ]
