"""Prometheus metrics and the health endpoints: the Telemetry port on prometheus_client, and
/metrics, /healthz and /readyz on an aiohttp app (the callback's, or `run`'s own port).

Each process keeps its own registry and is scraped on its own port; Prometheus tells the
workers apart by the target's `instance` label (docs/operations.md, "Metrics and health").
What lives in storage (the outbox's depth and age) is read when a scrape comes, so every
worker reports the shared figure: take max() of it across instances, sum() of the rest.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from engine.ports import telemetry as t

log = logging.getLogger(__name__)

# Seconds: a step is mostly storage round trips (milliseconds), up to the outbox's wait (5 s)
# when it creates a ticket; a SimpleOne call up to its timeout (30 s).
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CALL_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# What the flows and actions do, read as the figures the issue names.
TICKET_KIND = "ticket.create"  # the outbox kind that creates a ticket (engine/actions/ticket_items.py)
SIGN_IN_OUTCOMES: Mapping[tuple[str, str], str] = {
    ("auth.send_code", "sent"): "started",
    ("auth.bind", "bound"): "succeeded",  # the code was right and SimpleOne knows the address
    ("auth.verify_code", "wrong"): "failed",
    ("auth.verify_code", "expired"): "failed",
    ("auth.bind", "no_user"): "failed",  # a right code for an address SimpleOne does not know
    ("auth.verify_code", "locked"): "locked",
}
PROPOSALS_ACTION = ("catalog.suggest", "found")  # free text matched catalogue entries: shown
PROPOSALS_SLOT = "suggestions"  # the list catalog.suggest fills: a pick from it took a proposal
HINT_COUNTER = "hint_helped"  # `count: hint_helped` in flows/create_ticket.yaml
RATING_COUNTER = re.compile(r"rating_([1-5])")  # `count: rating_N` in flows/feedback.yaml
PEERS_KEPT = 100_000  # peers remembered for the active-sessions gauge (a bound on memory)


@dataclass(slots=True)
class Sample:
    """What a scrape reads besides the counters: from storage, the outbox worker and the flows.
    None: could not be read (the storage is down); the gauge is left out rather than made up."""

    outbox_pending: int | None = None
    outbox_failed: int | None = None
    outbox_oldest_age: float | None = None  # seconds the oldest pending item has waited (0: none)
    breaker: str = "closed"  # the SimpleOne circuit breaker: closed, open or half-open
    flows_version: str = ""
    flows_reloads: int = 0
    flows_refusals: int = 0


class PrometheusTelemetry:
    """The Telemetry port on a registry of its own (not the client's global one: tests and
    embedded uses get clean figures, and nothing else in the process leaks into /metrics)."""

    def __init__(self, *, active_window: float = 1800.0, clock: Callable[[], float] = time.monotonic) -> None:
        # No *_created series (a start time per counter): the bot has no use for them, and they
        # double what every scrape carries. A process-wide switch of the client's; nothing else uses it.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.active_window = active_window  # a session counts as active this long after a step
        self.clock = clock
        self.sample = Sample()
        self._peers: dict[str, float] = {}
        r = self.registry

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=r)

        self.received = counter("supportbot_events_received", "User events that reached the engine", ["channel"])
        self.handled = counter("supportbot_events_handled", "User events whose step was committed", ["channel"])
        self.deduplicated = counter("supportbot_events_deduplicated",
                                    "User events dropped as handled before (a channel's resend)", ["channel"])
        self.step = Histogram("supportbot_step_duration_seconds", "Time from a user event to its replies",
                              ["channel"], buckets=STEP_BUCKETS, registry=r)
        self.replies = counter("supportbot_replies_sent", "Messages the bot sent (answers and notices)", ["channel"])
        self.vk_errors = counter("supportbot_vk_errors", "Errors VK answered to the bot's calls, by code "
                                 "('transport': no answer)", ["code"])
        self.sign_ins = counter("supportbot_sign_ins", "Sign-ins: started (a code mailed), succeeded (signed in), "
                                "failed (a wrong or expired code, an address SimpleOne does not know), locked "
                                "(too many wrong codes)", ["outcome"])
        self.actions = counter("supportbot_action_outcomes", "Outcomes of the flows' actions in committed steps",
                               ["action", "outcome"])
        self.tickets_queued = counter("supportbot_tickets_queued", "Tickets submitted (queued for SimpleOne)")
        self.tickets_created = counter("supportbot_tickets_created", "Tickets SimpleOne created")
        self.tickets_failed = counter("supportbot_tickets_failed", "Tickets given up on (refused, or SimpleOne "
                                      "down past OUTBOX_GIVE_UP_HOURS)")
        self.outbox_queued = counter("supportbot_outbox_queued", "Outbox items committed, by kind", ["kind"])
        self.outbox_finished = counter("supportbot_outbox_finished", "Outbox items finished, by kind and state",
                                       ["kind", "state"])
        self.outbox_retries = counter("supportbot_outbox_retries", "Outbox attempts that failed and will be "
                                      "tried again", ["kind"])
        self.simpleone = Histogram("supportbot_simpleone_request_duration_seconds",
                                   "SimpleOne calls, by operation (retries within a call included)", ["operation"],
                                   buckets=CALL_BUCKETS, registry=r)
        self.simpleone_errors = counter("supportbot_simpleone_errors", "SimpleOne calls that failed, by operation "
                                        "and error (unavailable, rejected, timeout, error)", ["operation", "error"])
        self.notices = counter("supportbot_notices_sent", "Notices handed to VK, by kind (status, comment, "
                               "outbox: a number or failure told late)", ["kind"])
        self.proposals_shown = counter("supportbot_free_text_proposals_shown",
                                       "Free text that matched catalogue entries, which were proposed")
        self.proposals_picked = counter("supportbot_free_text_proposals_picked",
                                        "Proposed catalogue entries the user picked")
        self.picks = counter("supportbot_picks", "Items chosen from the flows' pick lists, by step", ["state"])
        self.hints = counter("supportbot_hints_helped", "Self-help hints that solved the problem (no ticket)")
        self.ratings = counter("supportbot_ratings", "Ratings of closed tickets, by value", ["value"])
        self.flow_counts = counter("supportbot_flow_counts", "The flows' `count:` counters", ["counter"])
        # Zeros from the start for what alerts and rates look at: a series that appears only with
        # its first event makes "nothing for 30 minutes" and increase() blind to the first one.
        for family in (self.received, self.handled, self.deduplicated, self.replies):
            family.labels(channel="vk")
        for outcome in ("started", "succeeded", "failed", "locked"):
            self.sign_ins.labels(outcome=outcome)
        ProcessCollector(registry=r)
        r.register(_Sampled(self))

    # ------------------------------------------------------------------ the port

    def count(self, name: str, amount: float = 1.0, /, **labels: str) -> None:
        try:
            self._count(name, amount, labels)
        except ValueError:  # a label missing or extra: a bug, but no reason to fail a step
            log.exception("metric %s with labels %s not counted", name, sorted(labels))

    def _count(self, name: str, amount: float, labels: Mapping[str, str]) -> None:
        if name == t.EVENTS_RECEIVED:
            self.received.labels(**labels).inc(amount)
        elif name == t.EVENTS_HANDLED:
            self.handled.labels(**labels).inc(amount)
        elif name == t.EVENTS_DEDUPLICATED:
            self.deduplicated.labels(**labels).inc(amount)
        elif name == t.REPLIES_SENT:
            self.replies.labels(**labels).inc(amount)
        elif name == t.CHANNEL_ERRORS:
            if labels.get("channel") == "vk":
                self.vk_errors.labels(code=labels["code"]).inc(amount)
        elif name == t.ACTION_OUTCOMES:
            key = (labels["action"], labels["outcome"])
            self.actions.labels(**labels).inc(amount)
            if key in SIGN_IN_OUTCOMES:
                self.sign_ins.labels(outcome=SIGN_IN_OUTCOMES[key]).inc(amount)
            elif key == PROPOSALS_ACTION:
                self.proposals_shown.inc(amount)
        elif name == t.PICKS:
            self.picks.labels(state=labels["state"]).inc(amount)
            if labels.get("source") == PROPOSALS_SLOT:
                self.proposals_picked.inc(amount)
        elif name == t.FLOW_COUNTS:
            counter = labels["counter"]
            self.flow_counts.labels(counter=counter).inc(amount)
            rating = RATING_COUNTER.fullmatch(counter)
            if counter == HINT_COUNTER:
                self.hints.inc(amount)
            elif rating:
                self.ratings.labels(value=rating.group(1)).inc(amount)
        elif name == t.OUTBOX_QUEUED:
            self.outbox_queued.labels(**labels).inc(amount)
            if labels["kind"] == TICKET_KIND:
                self.tickets_queued.inc(amount)
        elif name == t.OUTBOX_FINISHED:
            self.outbox_finished.labels(**labels).inc(amount)
            if labels["kind"] == TICKET_KIND:
                (self.tickets_created if labels["state"] == "done" else self.tickets_failed).inc(amount)
        elif name == t.OUTBOX_RETRIED:
            self.outbox_retries.labels(**labels).inc(amount)
        elif name == t.NOTICES_SENT:
            self.notices.labels(**labels).inc(amount)
        elif name == t.TICKET_SYSTEM_ERRORS:
            self.simpleone_errors.labels(**labels).inc(amount)

    def observe(self, name: str, seconds: float, /, **labels: str) -> None:
        try:
            if name == t.STEP_SECONDS:
                self.step.labels(**labels).observe(seconds)
            elif name == t.TICKET_SYSTEM_SECONDS:
                self.simpleone.labels(**labels).observe(seconds)
        except ValueError:
            log.exception("metric %s with labels %s not observed", name, sorted(labels))

    def active(self, peer: str) -> None:
        self._peers.pop(peer, None)  # re-inserted last: the dict stays in order of last step
        self._peers[peer] = self.clock()
        if len(self._peers) > PEERS_KEPT:
            del self._peers[next(iter(self._peers))]

    def active_sessions(self) -> int:
        """Peers that stepped within the window in this process (approximate: a session that
        ended a minute ago still counts; across workers a peer may be counted by each)."""
        cutoff = self.clock() - self.active_window
        while self._peers:
            oldest = next(iter(self._peers))
            if self._peers[oldest] >= cutoff:
                break
            del self._peers[oldest]
        return len(self._peers)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Sampled(Collector):
    """The scrape-time figures, from the last Sample (refreshed just before the scrape)."""

    def __init__(self, owner: PrometheusTelemetry) -> None:
        self.owner = owner

    def describe(self) -> list[Metric]:
        return []  # nothing to check names against up front; collect() says it all

    def collect(self) -> Iterable[Metric]:
        s = self.owner.sample
        yield GaugeMetricFamily("supportbot_active_sessions", "Peers that took a step within the idle timeout "
                                "(this process; approximate)", value=self.owner.active_sessions())
        depth = GaugeMetricFamily("supportbot_outbox_depth", "Outbox items not done (shared by all workers: "
                                  "take max across instances)", labels=["state"])
        if s.outbox_pending is not None:
            depth.add_metric(["pending"], s.outbox_pending)
        if s.outbox_failed is not None:
            depth.add_metric(["failed"], s.outbox_failed)
        yield depth
        if s.outbox_oldest_age is not None:
            yield GaugeMetricFamily("supportbot_outbox_oldest_age_seconds", "How long the oldest pending outbox "
                                    "item has waited (0: none waits)", value=s.outbox_oldest_age)
        yield GaugeMetricFamily("supportbot_simpleone_breaker_open", "1 while the SimpleOne circuit breaker is "
                                "open or half-open (SimpleOne failing; tickets wait in the outbox)",
                                value=0 if s.breaker == "closed" else 1)
        info = GaugeMetricFamily("supportbot_flows_info", "The running flow set (its version as a label)",
                                 labels=["version"])
        if s.flows_version:
            info.add_metric([s.flows_version], 1)
        yield info
        reloads = CounterMetricFamily("supportbot_flows_reloads", "Flow reloads (SIGHUP, FLOWS_WATCH): ok swapped "
                                      "a new set in, refused kept the old one", labels=["result"])
        reloads.add_metric(["ok"], s.flows_reloads)
        reloads.add_metric(["refused"], s.flows_refusals)
        yield reloads


# ---------------------------------------------------------------------- the endpoints

Check = Callable[[], Awaitable["Readiness"]]


@dataclass(slots=True)
class Readiness:
    """/readyz's answer: ready or not, the first reason it is not, and what was looked at."""

    ready: bool
    reason: str
    checks: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"ready": self.ready, "reason": self.reason, **self.checks}


def add_health_routes(app: web.Application, ready: Check, telemetry: PrometheusTelemetry | None = None,
                      refresh: Callable[[], Awaitable[Sample]] | None = None) -> None:
    """GET /healthz (the process answers), /readyz (it can serve: 200, else 503, a JSON body
    either way) and, with telemetry, /metrics (refresh: reads the scrape-time figures first)."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        verdict = await ready()
        return web.Response(status=200 if verdict.ready else 503, content_type="application/json",
                            text=json.dumps(verdict.body(), ensure_ascii=False) + "\n")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if telemetry is None:
        return

    async def metrics(request: web.Request) -> web.Response:
        if refresh is not None:
            telemetry.sample = await refresh()
        body = telemetry.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)


async def serve_health(host: str, port: int, ready: Check, telemetry: PrometheusTelemetry | None,
                       refresh: Callable[[], Awaitable[Sample]] | None = None) -> web.AppRunner:
    """The endpoints on a port of their own (`supportbot run --metrics-port`); cleanup() stops it."""
    app = web.Application()
    add_health_routes(app, ready, telemetry, refresh)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner

