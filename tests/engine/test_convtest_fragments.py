"""Conversation tests share steps: `fragments:` (in a file, or in _fragments.yaml for all) and
`use: NAME` with `with:` values for their {placeholders}."""

from __future__ import annotations

from pathlib import Path

from engine.convtest import load_conversations

SHARED = """fragments:
  draft:
    - press: Создать заявку
    - send: "{group}"
    - send: "{text}"
      expect: {says: Прикрепите}
  sent:
    - use: draft
      with: {group: "{group}", text: "{text}"}
    - press: Отправить
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_use_step_is_replaced_by_the_fragments_steps_filled_in(tmp_path: Path) -> None:
    write(tmp_path, "_fragments.yaml", SHARED)
    path = write(tmp_path, "t.yaml", """tests:
  - name: one
    steps:
      - send: Начать
      - use: sent
        with: {group: 5, text: "Не приходят письма"}
        expect: {says: создана, tickets: 1}
      - press: Мои заявки
""")
    # The file alone: _fragments.yaml beside it is read too.
    tests, findings = load_conversations([path])
    assert findings == []
    [test] = tests
    assert [s.data for s in test.steps] == [
        {"send": "Начать"},
        {"press": "Создать заявку"},
        {"send": 5},  # a number stays a number
        {"send": "Не приходят письма", "expect": {"says": "Прикрепите"}},
        {"press": "Отправить", "expect": {"says": "создана", "tickets": 1}},  # the use step's expect, last
        {"press": "Мои заявки"},
    ]
    # Each fragment step points at the `use:` line of the test, and says where it is written.
    assert [s.line for s in test.steps] == [4, 5, 5, 5, 5, 8]
    assert test.steps[3].origin == f"fragment draft, {tmp_path / '_fragments.yaml'}:5"


def test_a_files_own_fragments_serve_that_file(tmp_path: Path) -> None:
    write(tmp_path, "t.yaml", """fragments:
  hello: [{send: Привет}]
tests:
  - name: one
    steps: [{use: hello}]
""")
    write(tmp_path, "u.yaml", "tests:\n  - name: two\n    steps: [{use: hello}]\n")
    tests, findings = load_conversations([tmp_path])
    assert [t.name for t in tests] == ["one", "two"]
    assert [(Path(f.path).name, f.line, f.code) for f in findings] == [("u.yaml", 3, "T002")]


def test_an_unknown_fragment_is_a_finding_with_a_suggestion(tmp_path: Path) -> None:
    write(tmp_path, "_fragments.yaml", SHARED)
    write(tmp_path, "t.yaml", """tests:
  - name: one
    steps:
      - send: Начать
      - use: sentt
        with: {group: 5, text: x}
""")
    _, findings = load_conversations([tmp_path])
    [finding] = findings
    assert (Path(finding.path).name, finding.line, finding.code) == ("t.yaml", 5, "T002")
    assert "unknown fragment 'sentt'; did you mean 'sent'?" in finding.message


def test_placeholders_must_be_given_and_only_those(tmp_path: Path) -> None:
    write(tmp_path, "_fragments.yaml", SHARED)
    write(tmp_path, "t.yaml", """tests:
  - name: one
    steps:
      - use: sent
        with: {group: 5}
      - use: sent
        with: {group: 5, text: x, email: a@b.c}
""")
    _, findings = load_conversations([tmp_path])
    assert [(f.line, f.code) for f in findings] == [(4, "T002"), (6, "T002")]
    assert "needs with: text" in findings[0].message and "no placeholder email" in findings[1].message


def test_fragments_that_use_each_other_in_a_circle_are_a_finding(tmp_path: Path) -> None:
    write(tmp_path, "t.yaml", """fragments:
  a: [{use: b}]
  b: [{use: a}]
tests:
  - name: one
    steps: [{use: a}]
""")
    _, findings = load_conversations([tmp_path])
    assert len(findings) == 1 and "uses itself" in findings[0].message


def test_a_use_step_takes_no_action_of_its_own(tmp_path: Path) -> None:
    write(tmp_path, "_fragments.yaml", SHARED)
    write(tmp_path, "t.yaml", "tests:\n  - name: one\n    steps:\n      - use: sent\n        send: Привет\n")
    _, findings = load_conversations([tmp_path])
    assert [(Path(f.path).name, f.code) for f in findings] == [("t.yaml", "F002")]


def test_a_fragments_name_is_defined_once(tmp_path: Path) -> None:
    write(tmp_path, "_fragments.yaml", SHARED)
    write(tmp_path, "t.yaml", "fragments:\n  draft: [{send: x}]\ntests:\n  - name: one\n    steps: [{send: y}]\n")
    _, findings = load_conversations([tmp_path])
    assert [(Path(f.path).name, f.line, f.code) for f in findings] == [("t.yaml", 2, "F040")]
    assert "already defined in" in findings[0].message
