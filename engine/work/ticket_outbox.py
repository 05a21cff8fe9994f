"""The outbox worker for ticket work, wired to the engine's services.

Apart from the executors (engine/work/ticket_work.py) because it knows the services of the actions,
and the actions know the executors' work kinds: in one module the two would import each other.
"""

from __future__ import annotations

from engine.actions.context import Services
from engine.flows.source import FlowSource
from engine.work.notices import outbox_notices
from engine.work.outbox import OutboxPolicy, OutboxWorker
from engine.work.ticket_moves import move_executors
from engine.work.ticket_work import ticket_executors

__all__ = ["ticket_outbox"]


def ticket_outbox(services: Services, flows: FlowSource, policy: OutboxPolicy | None = None) -> OutboxWorker:
    """The outbox worker for ticket work, wired to the services and made their outbox queue
    (the caller runs `worker.run()` as a task)."""
    executors = {**ticket_executors(services.tickets, services.spool, services.clock,
                                    journal=lambda: flows.current.tickets.journal),
                 **move_executors(services.tickets)}
    worker = OutboxWorker(services.storage, executors, outbox_notices(flows, services.clock), policy,
                          clock=services.clock, telemetry=services.telemetry)
    services.outbox = worker
    return worker
