"""Which label a ticket's state is shown with: the flows' override, SimpleOne's own, the fallback."""

from __future__ import annotations

from dataclasses import replace

from engine.flows.model import FlowSet


def test_override_then_the_systems_label_then_the_fallback_then_the_code(flow_set: FlowSet) -> None:
    tickets = replace(flow_set.tickets,
                      status_labels={"itsm_request": {"2": "Запрос в работе"}, "default": {"4": "На паузе"}},
                      status_fallback={"itsm_incident": {"7": "Завершена"}, "default": {"7": "Готово", "3": "Ждём"}})
    label = tickets.status_label
    assert label("itsm_request", "2", "В работе") == "Запрос в работе"  # the table's override
    assert label("itsm_incident", "4", "Отложен") == "На паузе"  # the default override
    assert label("itsm_incident", "2", "В работе") == "В работе"  # SimpleOne's own
    assert label("itsm_incident", "7", "") == "Завершена"  # SimpleOne gave none: the table's fallback
    assert label("itsm_request", "7", "  ") == "Готово"  # then the default fallback
    assert label("itsm_request", "99", "") == "99"  # nothing anywhere: the code


def test_the_shipped_flows_override_nothing_and_fall_back_on_every_seen_code(flow_set: FlowSet) -> None:
    assert flow_set.tickets.status_labels == {}
    assert {"-2", "0", "2", "3", "4", "7", "10"} <= set(flow_set.tickets.status_fallback["default"])
