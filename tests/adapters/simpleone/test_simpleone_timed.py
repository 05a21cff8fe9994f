"""SimpleOne's calls timed and their failures counted by operation, read back from the
Prometheus adapter's exposition (the real client against the emulator, faults switched on)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.simpleone.client import SimpleOneClient
from adapters.simpleone.timed import OPERATIONS, timed_ticket_system
from adapters.web.metrics import PrometheusTelemetry
from emulators.simpleone.server import RunningEmulator
from engine.ports import TicketSystemRejected, TicketSystemUnavailable

INCIDENT = "itsm_incident"


def samples(telemetry: PrometheusTelemetry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = telemetry.exposition().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


async def test_calls_are_timed_and_failures_counted_by_operation(client: SimpleOneClient,
                                                                 emulator: RunningEmulator) -> None:
    telemetry = PrometheusTelemetry()
    tickets = timed_ticket_system(client, telemetry)
    caller = emulator.state.add_user("timed@ranepa.ru", "T", "U")
    fields = {"subject": "S", "description": "D", "caller": caller}
    assert (await tickets.create_ticket(INCIDENT, fields)).number == "INC0000001"
    emulator.faults.fail_next(1, status=400, method="POST")
    with pytest.raises(TicketSystemRejected):
        await tickets.create_ticket(INCIDENT, fields)
    emulator.faults.fail_next(1, status=503, method="POST")
    with pytest.raises(TicketSystemUnavailable):
        await tickets.create_ticket(INCIDENT, fields)
    assert await tickets.find_person("timed@ranepa.ru") is not None

    seen = samples(telemetry)
    create = frozenset({("operation", "create_ticket")})
    assert seen[("supportbot_simpleone_request_duration_seconds_count", create)] == 3
    assert seen[("supportbot_simpleone_errors_total", create | {("error", "rejected")})] == 1
    assert seen[("supportbot_simpleone_errors_total", create | {("error", "unavailable")})] == 1
    assert seen[("supportbot_simpleone_request_duration_seconds_count",
                 frozenset({("operation", "find_person")}))] == 1


def test_the_operations_are_the_ports_calls() -> None:
    assert {"create_ticket", "find_person", "get_tickets", "add_comment", "upload_files"} <= OPERATIONS
    assert "close" not in OPERATIONS
