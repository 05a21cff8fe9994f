"""The flowlint command as support leads use it: output format, exit codes, graph, tests."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from supportbot.flowlint_cli import main

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "flows"
LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<code>F\d{3}) .+$")


def test_clean_flows_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(FLOWS)]) == 0
    assert capsys.readouterr().out == ""


def test_findings_exit_1_one_line_each(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = flows / "create_ticket.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("done: {to: confirm,", "done: {to: confrim,"),
                    encoding="utf-8")
    assert main(["check", str(flows)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(LINE.match(line) for line in lines), lines
    assert any("F010" in line and "confrim" in line for line in lines)


def test_json_format(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (flows / "bot.yaml").write_text("bot: {start: main.menu}\n", encoding="utf-8")
    assert main(["check", "--format", "json", str(flows)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data and {"path", "line", "col", "code", "severity", "message"} <= set(data[0])


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "/no/such/flows"]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["check", "--format", "xml"])
    assert info.value.code == 2


def test_junk_inputs_never_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.yaml").write_bytes(b"")
    (tmp_path / "junk.yaml").write_bytes(bytes(range(256)) * 100)
    (tmp_path / "big.yaml").write_bytes(b"a: b\n" * 2_200_000)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 4 and "Traceback" not in out


def test_graph_mermaid_and_dot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(FLOWS)]) == 0
    mermaid = capsys.readouterr().out
    assert "stateDiagram-v2" in mermaid
    assert re.search(r"any_state --> auth__gate: .*create", mermaid)
    assert re.search(r"any_state --> main__menu: .*menu", mermaid)
    assert main(["graph", "--format", "dot", str(FLOWS)]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph flows {") and '"create_ticket__confirm" -> "create_ticket__submit"' in dot


def test_shipped_conversations_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "--flows", str(FLOWS)]) == 0
    assert "0 failed" in capsys.readouterr().err


def test_a_flows_directory_given_to_test_runs_its_own_tests(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`flowlint test flows`, as `flowlint check flows` is typed: not 'tests is a required property'
    for each flow file."""
    assert main(["test", str(flows)]) == 0
    err = capsys.readouterr()
    assert "0 failed" in err.err and "F002" not in err.out


def test_a_failing_conversation_names_its_line(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (flows / "tests" / "mine.yaml").write_text(
        "tests:\n  - name: wrong expectation\n    steps:\n      - send: Помощь\n"
        "        expect:\n          says: Такого текста нет\n", encoding="utf-8")
    assert main(["test", "--flows", str(flows), str(flows / "tests" / "mine.yaml")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "mine.yaml:4:1: T001" in out and "Такого текста нет" in out


def test_a_malformed_conversation_file_is_a_finding(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (flows / "tests" / "bad.yaml").write_text("tests:\n  - name: x\n    steps:\n      - shout: hi\n",
                                              encoding="utf-8")
    assert main(["test", "--flows", str(flows), str(flows / "tests" / "bad.yaml")]) == 1
    assert "bad.yaml:4" in capsys.readouterr().out


GOLDEN = Path(__file__).resolve().parent / "golden" / "flowlint_test_failure.txt"
STALE = """\
tests:
  - name: a lead's expectations gone stale
    steps:
      - send: Начать
        expect:
          says: [Главное менюшка, Опишите проблемму]
          buttons: [Создать заявку, Мои заявкиi]
          no_buttons: [Помощь]
      - press: Создать заявку
        expect:
          not_says: корпоративной почте
      - press: Отправить
      - send: never reached
        expect:
          says: nothing
  - name: a refused ticket, expected to be taken
    signed_in: kuznetsov@ranepa.ru
    steps:
      - press: Создать заявку
      - send: "2"
      - send: "2"
      - send: Заблокирована учётная запись после смены пароля
      - press: Без файлов
      - simpleone: {reject_next: 1}
      - press: Отправить
        expect:
          says: Заявка создана
          tickets: 1
  - name: a refusal provoked on purpose passes quietly
    signed_in: kuznetsov@ranepa.ru
    steps:
      - press: Создать заявку
      - send: "2"
      - send: "2"
      - send: Заблокирована учётная запись после смены пароля
      - press: Без файлов
      - simpleone: {reject_next: 1}
      - press: Отправить
        expect:
          says: не приняла заявку
"""


def test_failure_output_matches_the_golden_file(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every failing step is told, with the whole reply and what differs; the bot's log is shown only
    under a failing test, and a passing test that provokes an error on purpose prints nothing.
    Regenerate with UPDATE_GOLDEN=1 after a deliberate change, and read the diff."""
    (flows / "tests" / "stale.yaml").write_text(STALE, encoding="utf-8")
    assert main(["test", "--flows", str(flows), str(flows / "tests" / "stale.yaml")]) == 1
    captured = capsys.readouterr()
    text = (captured.out + "--- stderr\n" + captured.err).replace(str(flows), "flows")
    text = re.sub(r"in \d+\.\d s$", "in N s", text, flags=re.MULTILINE)
    text = re.sub(r"outbox [0-9a-f]{16} ", "outbox <id> ", text)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")
