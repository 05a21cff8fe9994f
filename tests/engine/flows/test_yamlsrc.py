from __future__ import annotations

from pathlib import Path

from engine.flows.yamlsrc import MAX_FILE_BYTES, load_yaml_file, parse_yaml


def test_positions_of_values_and_keys() -> None:
    doc, findings = parse_yaml("flow: main\nstates:\n  menu:\n    say: hi\n", "f.yaml")
    assert doc is not None and not findings
    assert doc.pos(("states", "menu", "say")) == (4, 10)
    assert doc.pos(("states", "menu"), key=True) == (3, 3)
    # A path below what exists reports its nearest ancestor.
    assert doc.pos(("states", "menu", "say", "x", 1)) == (4, 10)


def test_yes_no_on_off_stay_words_but_true_false_are_booleans() -> None:
    doc, _ = parse_yaml("a: yes\nb: no\non: off\nc: true\nd: 5\ne: null\n", "f.yaml")
    assert doc is not None
    assert doc.data == {"a": "yes", "b": "no", "on": "off", "c": True, "d": 5, "e": None}


def test_duplicate_keys_are_findings_with_both_lines() -> None:
    doc, findings = parse_yaml("states:\n  menu: 1\n  help: 2\n  menu: 3\n", "f.yaml")
    assert doc is not None
    assert [(f.code, f.line) for f in findings] == [("F040", 4)]
    assert "first at line 2" in findings[0].message
    assert doc.data["states"]["menu"] == 1


def test_syntax_error_has_a_position() -> None:
    _, findings = parse_yaml("a: [1, 2\nb: 3\n", "f.yaml")
    assert findings[0].code == "F001" and findings[0].line >= 2


def test_empty_binary_non_utf8_and_huge_files(tmp_path: Path) -> None:
    cases = {
        "empty.yaml": b"",
        "binary.yaml": bytes(range(256)) * 10,
        "latin1.yaml": "name: caf\xe9\n".encode("latin-1"),
        "huge.yaml": b"a: " + b"x" * (MAX_FILE_BYTES + 1),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        doc, findings = load_yaml_file(tmp_path / name)
        assert doc is None and len(findings) == 1, name
        assert findings[0].code in ("F001", "F003")


def test_deep_nesting_and_alias_bombs_are_refused_quickly() -> None:
    deep = "a: " + "[" * 5000 + "]" * 5000
    _, findings = parse_yaml(deep, "deep.yaml")
    assert findings and findings[0].code in ("F001", "F003")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join(f"*{chr(97 + i)}" for _ in range(9)) + "]\n" for i in range(9)
    )
    _, findings = parse_yaml(bomb, "bomb.yaml")
    assert [f.code for f in findings] == ["F003"]


def test_merge_keys_are_refused_not_misread() -> None:
    _, findings = parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n", "f.yaml")
    assert findings and findings[0].code == "F003" and findings[0].line == 3


def _said(text: str) -> list[str]:
    return [str(f) for f in parse_yaml(text, "f.yaml")[1]]


def test_a_misindented_key_is_told_to_be_checked_against_the_line_above() -> None:
    assert _said("states:\n  menu:\n    say: hi\n      footer: false\n") == [
        "f.yaml:4:13: F001 YAML syntax error: mapping values are not allowed in this context; "
        "check this line's indentation against the line above"]
    assert _said("states:\n  menu:\n    say: hi\n  footer: false\n buttons: []\n") == [
        "f.yaml:5:2: F001 YAML syntax error: did not find expected key; "
        "check this line's indentation against the line above (keys of one level start in one column)"]


def test_a_colon_in_an_unquoted_text_is_told_to_be_quoted() -> None:
    assert _said("states:\n  menu:\n    say: Время работы: 9-18\n") == [
        "f.yaml:3:22: F001 YAML syntax error: mapping values are not allowed in this context; a text that "
        "contains ': ' must be put in quotes, e.g. say: \"Время: 10:00\"; or check this line's indentation "
        "against the line above"]


def test_a_tab_in_the_indentation_is_named() -> None:
    assert _said("states:\n\tmenu:\n    say: hi\n") == [
        "f.yaml:2:1: F001 YAML syntax error: found character that cannot start any token; "
        "YAML does not allow tabs for indentation: use spaces"]
    assert _said("states:\n  menu: 1\n  \thelp: 2\n")[0].endswith("use spaces")
