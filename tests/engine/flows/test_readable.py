"""The map model leads read: steps by what they say, edges by the buttons that take them."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from engine.flows.map_svg import layout, render_svg
from engine.flows.model import FlowSet
from engine.flows.readable import BACK, FORWARD, readable_model

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def model(flow_set: FlowSet) -> dict[str, Any]:
    return readable_model(flow_set)


def _edge(flow: dict[str, Any], source: str, dest: str) -> dict[str, Any]:
    found = [e for e in flow["edges"] if e["from"] == source and e["to"] == dest]
    assert len(found) == 1, (source, dest, found)
    return found[0]


def test_the_model_is_plain_json(model: dict[str, Any]) -> None:
    assert json.loads(json.dumps(model, ensure_ascii=False)) == model


def test_create_tickets_main_path_is_a_chain_of_forward_edges_labelled_as_the_user_sees_them(
        model: dict[str, Any]) -> None:
    flow = model["flows"]["create_ticket"]
    chain = ["choose_service", "describe", "attach", "confirm", "submit"]
    assert flow["main_path"][:5] == [f"create_ticket.{s}" for s in chain]
    labels = [_edge(flow, f"create_ticket.{a}", f"create_ticket.{b}") for a, b in itertools.pairwise(chain)]
    assert all(e["kind"] == FORWARD for e in labels)
    assert [e["label"] for e in labels] == ["выбор из списка", "ввод текста", "«Готово» / «Без файлов»",
                                            "«Отправить»"]


def test_steps_are_named_by_what_they_say_or_do(model: dict[str, Any]) -> None:
    nodes = {n["id"]: n for n in model["flows"]["create_ticket"]["nodes"]}
    assert nodes["create_ticket.describe"]["title"].startswith("Опишите проблему")
    assert nodes["create_ticket.describe"]["kind"] == "ask"
    assert nodes["create_ticket.choose_service"]["kind"] == "pick"
    assert nodes["create_ticket.submit"]["title"] == "создание заявки"
    assert nodes["create_ticket.submit"]["kind"] == "action"
    assert nodes["create_ticket.created"]["title"].startswith("Заявка … создана")
    confirm = nodes["create_ticket.confirm"]
    assert confirm["file"].endswith("create_ticket.yaml") and confirm["line"] > 1
    assert ["Отправить"] in confirm["buttons"] and "Проверьте заявку:" in confirm["text"]
    assert nodes["create_ticket.suggest"]["title"] == "поиск услуги по словам"


def test_returns_and_going_back_are_back_edges(model: dict[str, Any]) -> None:
    flow = model["flows"]["create_ticket"]
    ret = _edge(flow, "create_ticket.describe", "create_ticket.confirm")  # ok: {to: return} after «Изменить описание»
    assert ret["kind"] == BACK and ret["label"] == "ввод текста"
    assert _edge(flow, "create_ticket.confirm", "create_ticket.describe")["kind"] == BACK
    assert _edge(flow, "create_ticket.describe", "create_ticket.choose_service")["label"] == "«Назад»"


def test_outcomes_are_plain_words_and_other_flows_are_stubs(model: dict[str, Any]) -> None:
    flow = model["flows"]["create_ticket"]
    stubs = {n["id"]: n for n in flow["nodes"] if n["stub"]}
    gate = "create_ticket>auth.gate>create_ticket.confirm"
    assert stubs[gate]["title"] == "проверка входа" and stubs[gate]["flow"] == "auth"
    assert _edge(flow, "create_ticket.submit", gate)["label"] == "нужен вход"
    assert _edge(flow, gate, "create_ticket.confirm")["label"] == "потом"


def test_no_edge_of_the_shipped_flows_is_labelled_with_an_event_name(model: dict[str, Any]) -> None:
    raw = [(e["from"], e["label"]) for flow in model["flows"].values() for e in flow["edges"]
           if set(e["label"].split(" / ")) & set(e["events"])]
    assert raw == []


def test_global_events_are_a_legend_not_edges_from_every_step(model: dict[str, Any]) -> None:
    legend = {item["to"]: item for item in model["global"]}
    assert "«Главное меню»" in legend["main.menu"]["labels"]
    assert legend["create_ticket.choose_service"]["labels"] == ["«Создать заявку»"]
    flow = model["flows"]["create_ticket"]
    into_menu = [e for e in flow["edges"] if e["to"].endswith(">main.menu")]
    assert len(into_menu) == 1  # only the catalogue's own «Назад», not one from every step


def test_svg_has_every_step_and_button_label_and_no_overlap(model: dict[str, Any]) -> None:
    for name, flow in model["flows"].items():
        root = ET.fromstring(render_svg(model, name))
        groups = {g.get("data-state"): g for g in root.iter(f"{SVG}g") if "node" in (g.get("class") or "")}
        states = {n["id"] for n in flow["nodes"] if not n["stub"]}
        assert states <= set(groups), name
        assert all(groups[s].get("data-file") and groups[s].get("data-line") for s in states)
        texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
        for node in flow["nodes"]:
            for row in node["buttons"]:
                for label in row:
                    edges = [e for e in flow["edges"] if e["from"] == node["id"] and f"«{label}»" in e["label"]]
                    assert not edges or f"«{label}»" in texts, (name, label)
        boxes = list(layout(flow).values())
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert (a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y), (a, b)


def test_the_whole_map_parses_and_keeps_the_main_path_on_one_row(model: dict[str, Any]) -> None:
    ET.fromstring(render_svg(model))
    flow = model["flows"]["create_ticket"]
    boxes = layout(flow)
    assert len({boxes[s].y for s in flow["main_path"]}) == 1
    xs = [boxes[s].x for s in flow["main_path"]]
    assert xs == sorted(xs)
