"""Fixtures of the engine tests: a small flow with guarded transitions, added to a copy of the shipped flows."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.flows.model import FlowSet
from engine.load import load_flow_set

ZZ = """flow: zz
start: a
states:
  a:
    say: "A"
    buttons:
      - [{label: "Дальше", event: go}, {label: "Отмена", event: cancel}]
    on:
      go:
        - {to: b, when: user.email}
        - c
      cancel: {to: c, when: description}
  b:
    say: "B"
    enter: [auth.check]
    on:
      signed_in: {to: c, when: description}
      signed_out: c
  c:
    say: "C"
    buttons:
      - [{label: "Снова", event: again}]
    on:
      again: a
"""


@pytest.fixture
def zz(flows: Path) -> FlowSet:
    """The shipped flows with flow zz (guarded alternatives, a guarded outcome) added."""
    (flows / "zz.yaml").write_text(ZZ, encoding="utf-8")
    bot = flows / "bot.yaml"
    text = bot.read_text(encoding="utf-8")
    bot.write_text(text.replace("    menu: main.menu\n", "    menu: main.menu\n    zz: zz.a\n"), encoding="utf-8")
    result = load_flow_set([flows])
    assert result.errors == [], result.errors
    assert result.flow_set is not None
    return result.flow_set
