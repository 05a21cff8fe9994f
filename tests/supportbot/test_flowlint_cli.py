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


MERMAID_NODE = re.compile(r"^    (\w+)(?:\(\(|\(\[|\[\[|\{\{|[\[(>])\"")
MERMAID_EDGE = re.compile(r'^  (\w+) (?:-->|-\.->)\|"[^"]*"\| (\w+)$')


def mermaid_ids(text: str) -> tuple[set[str], set[str]]:
    """(declared nodes, nodes used by edges) of a flowchart flowlint drew; fails on other lines."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    declared, used = set(), set()
    for line in lines[1:]:
        if node := MERMAID_NODE.match(line):
            declared.add(node.group(1))
        elif edge := MERMAID_EDGE.match(line):
            used |= {edge.group(1), edge.group(2)}
        else:
            assert re.match(r'^  (subgraph \w+\["[^"]+"\]|end)$', line), line
    return declared, used


def test_graph_mermaid_reads_as_the_user_sees_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(FLOWS)]) == 0
    mermaid = capsys.readouterr().out
    declared, used = mermaid_ids(mermaid)
    assert used <= declared
    assert 'create_ticket__confirm -->|"«Отправить»"| create_ticket__submit' in mermaid
    assert 'create_ticket__describe("Опишите проблему' in mermaid
    # Events that work everywhere are one legend, not an edge from every step.
    assert "any_state" not in mermaid and '"«Главное меню»' in mermaid


def test_graph_dot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "--format", "dot", str(FLOWS)]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph flows {")
    assert '"create_ticket__confirm" -> "create_ticket__submit" [label="«Отправить»"];' in dot
    assert re.search(r'"create_ticket__describe" -> "create_ticket__choose_service" .*style=dashed', dot)


@pytest.mark.parametrize("how", [["--flow", "create_ticket", str(FLOWS)], [str(FLOWS / "create_ticket.yaml")]])
def test_graph_of_one_flow(how: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", *how]) == 0
    out = capsys.readouterr()
    declared, used = mermaid_ids(out.out)
    assert used <= declared and out.err == ""
    assert {d.split("_to_")[0].split("__")[0] for d in declared} == {"create_ticket"}
    assert "create_ticket__submit" in declared and '"↗ auth: проверка входа"' in out.out


def test_one_file_alone_is_drawn_with_other_flows_as_references(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Not F070 (no bot settings) or F011 (unknown flow 'main') for the flows that are not there."""
    alone = tmp_path / "create_ticket.yaml"
    alone.write_text((FLOWS / "create_ticket.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["graph", str(alone)]) == 0
    out = capsys.readouterr()
    declared, used = mermaid_ids(out.out)
    assert used <= declared and "F0" not in out.out + out.err
    assert 'create_ticket_to_main__menu>"↗ main: menu"]' in out.out
    assert main(["graph", "--format", "dot", str(alone)]) == 0
    assert '"create_ticket__confirm" -> "create_ticket__submit"' in capsys.readouterr().out


def test_graph_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import xml.etree.ElementTree as ET

    target = tmp_path / "map.svg"
    assert main(["graph", "--format", "svg", "-o", str(target), str(FLOWS / "create_ticket.yaml")]) == 0
    root = ET.fromstring(target.read_text(encoding="utf-8"))
    nodes = {g.get("data-state"): g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("data-state")}
    assert "create_ticket.describe" in nodes and nodes["create_ticket.describe"].get("data-stub") is None
    assert nodes["main.menu"].get("data-stub") == "true"  # the step of another flow it leads to


def test_an_unknown_flow_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "--flow", "nope", str(FLOWS)]) == 2
    assert "create_ticket" in capsys.readouterr().err


def test_the_readmes_diagram_is_what_flowlint_draws_now(capsys: pytest.CaptureFixture[str]) -> None:
    """flows/README.md's diagram is generated: after a change to the flows, run
    `flowlint graph --write-readme flows/README.md`."""
    assert main(["graph", "--check-readme", str(FLOWS / "README.md")]) == 0, capsys.readouterr().out
    text = (FLOWS / "README.md").read_text(encoding="utf-8")
    block = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    declared, used = mermaid_ids(block)
    assert used <= declared


def test_a_stale_readme_diagram_fails_and_is_rewritten(flows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = flows / "create_ticket.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace('"Отправить"', '"Отправить заявку"'), encoding="utf-8")
    readme = flows / "README.md"
    assert main(["graph", "--check-readme", str(readme)]) == 1
    assert "--write-readme" in capsys.readouterr().out
    assert main(["graph", "--write-readme", str(readme)]) == 0
    assert main(["graph", "--check-readme", str(readme)]) == 0
    assert "«Отправить заявку»" in readme.read_text(encoding="utf-8")


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
