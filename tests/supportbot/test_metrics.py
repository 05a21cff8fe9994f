"""Metrics and health: /metrics scraped over HTTP from a real `supportbot serve` and `run` while a
user talks to the bot through the fake VK, parsed with prometheus_client's own parser; /readyz
with the database gone and with SimpleOne down; `supportbot health`'s exit codes."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from adapters.web.metrics import PrometheusTelemetry, add_health_routes
from emulators.simpleone.server import RunningEmulator
from emulators.vk.server import RunningVkEmulator
from engine.ports import Incoming
from supportbot.app import App, build_app
from supportbot.config import load_config
from supportbot.health import readiness, sample
from tests.http_served import served
from tests.postgres_db import scratch_database
from tests.supportbot.test_vk_processes import dialogue
from tests.vk_processes import ROOT, Mailbox, bot_env, free_port, start, start_serve, step, stop

# Every metric docs/operations.md lists (families: a counter's samples end in _total).
DOCUMENTED = (
    "supportbot_events_received", "supportbot_events_handled", "supportbot_events_deduplicated",
    "supportbot_step_duration_seconds", "supportbot_replies_sent", "supportbot_vk_errors",
    "supportbot_sign_ins", "supportbot_action_outcomes", "supportbot_tickets_queued", "supportbot_tickets_created",
    "supportbot_tickets_failed", "supportbot_outbox_queued", "supportbot_outbox_finished",
    "supportbot_outbox_retries", "supportbot_outbox_depth", "supportbot_outbox_oldest_age_seconds",
    "supportbot_simpleone_request_duration_seconds", "supportbot_simpleone_errors",
    "supportbot_simpleone_breaker_open", "supportbot_notices_sent", "supportbot_free_text_proposals_shown",
    "supportbot_free_text_proposals_picked", "supportbot_picks", "supportbot_hints_helped", "supportbot_ratings",
    "supportbot_flow_counts", "supportbot_active_sessions", "supportbot_flows_info", "supportbot_flows_reloads",
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> tuple[set[str], Samples]:
    """GET /metrics, parsed: the families' names and every sample's value by name and labels."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        text = await answer.text()
    families = list(text_string_to_metric_families(text))
    values = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    return {f.name for f in families}, values


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def get_json(port: int, path: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as answer:
        return answer.status, json.loads(await answer.text())


def test_the_operations_guide_lists_every_metric() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    dashboard = (ROOT / "docs" / "grafana-dashboard.json").read_text(encoding="utf-8")
    json.loads(dashboard)
    assert [name for name in DOCUMENTED if f"`{name}" not in guide] == []
    # The dashboard and the alerts are built on metrics that exist.
    used = set(re.findall(r"supportbot_[a-z_]+", dashboard + (ROOT / "docs" / "alerts.yml").read_text()))
    known = {n for name in DOCUMENTED for n in (name, name + "_total", name + "_bucket", name + "_count",
                                                name + "_sum")}
    assert used - known == set()


def test_only_the_adapter_imports_the_metrics_client() -> None:
    from tests.test_architecture import imports_of, project_modules

    modules = project_modules()
    users = sorted({i.importer for name, path in modules.items() if not name.startswith("tests")
                    for i in imports_of(name, path, modules) if i.imported == "prometheus_client"})
    assert users == ["adapters.web.metrics"]


async def test_serve_metrics_move_as_a_conversation_runs(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    env = bot_env(tmp_path, vk, simpleone, smtp_port)
    args, proc = await start_serve(vk, env, tmp_path)
    port = int(args[args.index("--port") + 1])
    try:
        names, before = await scrape(port)
        assert [n for n in DOCUMENTED if n not in names] == []
        assert value(before, "supportbot_events_received_total", channel="vk") == 0
        assert value(before, "supportbot_outbox_depth", state="pending") == 0
        assert value(before, "supportbot_simpleone_breaker_open") == 0

        vk.duplicate_deliveries(1)  # the first event comes twice: one is dropped
        user = vk.user(61)
        assert "Заявка INC0000001 создана" in await dialogue(user, box, "metrics@ranepa.ru")
        names, after = await scrape(port)
        assert [n for n in DOCUMENTED if n not in names] == []

        received = value(after, "supportbot_events_received_total", channel="vk")
        assert received >= 8  # the dialogue's eight messages
        assert value(after, "supportbot_events_handled_total", channel="vk") == received
        assert value(after, "supportbot_events_deduplicated_total", channel="vk") >= 1
        assert value(after, "supportbot_step_duration_seconds_count", channel="vk") == received
        assert value(after, "supportbot_replies_sent_total", channel="vk") >= received
        assert value(after, "supportbot_sign_ins_total", outcome="started") == 1
        assert value(after, "supportbot_sign_ins_total", outcome="succeeded") == 1
        assert value(after, "supportbot_tickets_queued_total") == 1
        assert value(after, "supportbot_tickets_created_total") == 1
        assert value(after, "supportbot_tickets_failed_total") == 0
        assert value(after, "supportbot_outbox_finished_total", kind="ticket.create", state="done") == 1
        assert value(after, "supportbot_simpleone_request_duration_seconds_count", operation="create_ticket") == 1
        assert value(after, "supportbot_simpleone_request_duration_seconds_count", operation="find_person") >= 1
        assert sum(v for (name, _), v in after.items() if name == "supportbot_picks_total") >= 1
        assert value(after, "supportbot_active_sessions") == 1
        assert value(after, "supportbot_outbox_depth", state="pending") == 0
        assert value(after, "supportbot_outbox_oldest_age_seconds") == 0
        assert value(after, "process_resident_memory_bytes") > 0
        (version,) = [dict(labels)["version"] for (name, labels) in after if name == "supportbot_flows_info"]
        assert version

        status, ready = await get_json(port, "/readyz")
        assert status == 200 and ready["ready"] is True and ready["storage"] == "ok", ready
        assert ready["simpleone"] == {"breaker": "closed", "retry_in_seconds": 0.0}
        assert ready["flows"] == {"version": version, "steps": ready["flows"]["steps"]}  # type: ignore[index]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as answer:
            assert answer.status == 200 and await answer.text() == "ok\n"
        health = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "supportbot.cli", "health", "--port", str(port), env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await health.communicate()
        assert health.returncode == 0, err.decode()
        assert out.decode().startswith("ready (SimpleOne breaker closed, outbox 0 pending)"), out.decode()
    finally:
        err_text = await stop(proc)
    assert proc.returncode == 0, err_text
    assert "Traceback" not in err_text


async def test_run_serves_metrics_and_health_on_its_metrics_port(
        tmp_path: Path, vk: RunningVkEmulator, simpleone: RunningEmulator, mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    port = free_port()
    env = {**bot_env(tmp_path, vk, simpleone, smtp_port), "METRICS_PORT": str(port)}
    proc = await start(["run"], env, tmp_path)
    try:
        await vk.poller_waiting(within=20)
        user = vk.user(62)
        assert "Главное меню" in await step(user, "say", "Начать")
        # Free text in the menu: sign in first, then the catalogue entries it means are proposed.
        await step(user, "say", "Не работает телефон в кабинете 110")
        await step(user, "say", "proposals@ranepa.ru")
        assert "Вот что подходит" in await step(user, "say", await box.code())
        _, samples = await scrape(port)
        assert value(samples, "supportbot_free_text_proposals_shown_total") == 1
        assert value(samples, "supportbot_free_text_proposals_picked_total") == 0
        await step(user, "say", "1")
        _, samples = await scrape(port)
        assert value(samples, "supportbot_events_handled_total", channel="vk") == 5
        assert value(samples, "supportbot_free_text_proposals_picked_total") == 1
        assert value(samples, "supportbot_picks_total", state="create_ticket.suggested") == 1
        status, ready = await get_json(port, "/readyz")
        assert status == 200 and ready["ready"] is True, ready
        # With METRICS_PORT in its environment, `supportbot health` asks that port.
        assert await run_health(env, tmp_path) == (0, "ready (SimpleOne breaker closed, outbox 0 pending)")
    finally:
        err = await stop(proc)
    assert proc.returncode == 0, err
    code, line = await run_health(env, tmp_path)
    assert code == 1 and line.startswith(f"not ready: nothing answers at http://127.0.0.1:{port}/readyz"), line


async def run_health(env: Mapping[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supportbot.cli", "health", *args, env=dict(env), cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    lines = out.decode().splitlines()
    assert len(lines) == 1, (out.decode(), err.decode())
    return proc.returncode, lines[0]


# ---------------------------------------------------------------------- in process

@asynccontextmanager
async def app_with_endpoints(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[App, int]]:
    """The bot's app (SimpleOne emulated in process) with its health and metrics routes served."""
    config = load_config({"SUPPORTBOT_DATABASE_URL": database_url, "SPOOL_DIR": str(tmp_path / "spool"),
                          "FLOWS_DIR": str(ROOT / "flows")}, env_file=None)
    telemetry = PrometheusTelemetry()
    app = await build_app(config, terminal=io.StringIO(), allow_emulator=True, telemetry=telemetry)
    web_app = web.Application()
    add_health_routes(web_app, partial(readiness, app), telemetry, partial(sample, app))
    try:
        async with served(web_app) as port:
            yield app, port
    finally:
        await app.close()


async def test_readiness_fails_with_the_reason_when_the_sqlite_storage_is_gone(tmp_path: Path) -> None:
    async with app_with_endpoints(tmp_path, f"sqlite:///{tmp_path / 'bot.db'}") as (app, port):
        await app.engine.handle("console:r", Incoming(text="Помощь"))
        status, ready = await get_json(port, "/readyz")
        assert status == 200 and ready["reason"] == "ok", ready
        await app.storage.close()
        status, ready = await get_json(port, "/readyz")
        assert status == 503 and ready["ready"] is False
        assert ready["reason"] == "storage unreachable (StorageClosed: SQLite storage is closed)", ready
        assert ready["simpleone"] == {"breaker": "closed", "retry_in_seconds": 0.0}
        code, line = await run_health({**_plain_env(), "PYTHONPATH": str(ROOT)}, tmp_path, "--port", str(port))
        assert (code, line) == (1, "not ready: storage unreachable (StorageClosed: SQLite storage is closed) "
                                   "(SimpleOne breaker closed)")
        # The scrape still answers, without the figures it could not read.
        names, samples = await scrape(port)
        assert "supportbot_outbox_oldest_age_seconds" not in names
        assert value(samples, "supportbot_events_handled_total", channel="console") == 1


async def test_readiness_fails_when_the_postgresql_database_is_dropped(tmp_path: Path) -> None:
    from emulators.scratch_postgres import drop_database
    from tests.postgres_db import postgres_admin_url

    async with scratch_database() as dsn, app_with_endpoints(tmp_path, dsn) as (_, port):
        status, ready = await get_json(port, "/readyz")
        assert status == 200, ready
        await drop_database(postgres_admin_url(), dsn)
        status, ready = await get_json(port, "/readyz")
        assert status == 503 and str(ready["reason"]).startswith("storage unreachable ("), ready
        assert ready["storage"] != "ok"


async def test_a_simpleone_outage_is_reported_but_the_bot_stays_ready(tmp_path: Path) -> None:
    async with app_with_endpoints(tmp_path, f"sqlite:///{tmp_path / 'bot.db'}") as (app, port):
        assert app.emulator is not None
        await app.emulator.close()  # SimpleOne is gone
        # What the outbox worker's failed attempts do to the breaker, without waiting out its backoffs.
        for _ in range(app.outbox.policy.breaker_threshold):
            app.outbox.breaker.failure()
        status, ready = await get_json(port, "/readyz")
        assert status == 200 and ready["ready"] is True, ready
        simpleone = ready["simpleone"]
        assert isinstance(simpleone, dict) and simpleone["breaker"] == "open" and simpleone["retry_in_seconds"] > 0
        _, samples = await scrape(port)
        assert value(samples, "supportbot_simpleone_breaker_open") == 1


def _plain_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTBOT_", "SIMPLEONE_", "SMTP_", "VK_",
                                                                    "METRICS_"))}


async def test_health_without_a_process_checks_the_database_and_flows_itself(tmp_path: Path) -> None:
    env = {**_plain_env(), "PYTHONPATH": str(ROOT), "FLOWS_DIR": str(ROOT / "flows"),
           "SUPPORTBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}
    code, line = await run_health(env, tmp_path)
    assert (code, line) == (1, f"not ready: no database at {tmp_path / 'bot.db'} (SUPPORTBOT_DATABASE_URL)")
    assert not (tmp_path / "bot.db").exists()  # the check made none
    migrate = await asyncio.create_subprocess_exec(sys.executable, "-m", "supportbot.cli", "migrate", env=env,
                                                   cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL)
    assert await migrate.wait() == 0
    code, line = await run_health(env, tmp_path)
    assert code == 0 and line.startswith("ok: database and flows checked directly (flows "), line
    code, line = await run_health({**env, "FLOWS_DIR": str(tmp_path)}, tmp_path)
    assert code == 1 and line.startswith("not ready: flows do not load"), line
    code, line = await run_health({**env, "AUTH_MAX_ATTEMPTS": "many"}, tmp_path)
    assert (code, line) == (1, "not ready: AUTH_MAX_ATTEMPTS must be a whole number from 1 to 100, got 'many'")
    code, line = await run_health(env, tmp_path, "--port", str(free_port()))
    assert code == 1 and line.startswith("not ready: nothing answers at http://127.0.0.1:"), line


@pytest.mark.parametrize("args", [["--port", "0"], ["--url", "ftp://x/readyz"], ["--port", "1", "--url", "http://x"]])
async def test_health_refuses_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supportbot.cli", "health", *args, env={**_plain_env(), "PYTHONPATH": str(ROOT)},
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 2 and "error:" in err.decode(), err.decode()


async def test_flow_reloads_and_the_flows_counters_are_scraped(tmp_path: Path) -> None:
    from engine.ports.telemetry import FLOW_COUNTS

    async with app_with_endpoints(tmp_path, f"sqlite:///{tmp_path / 'bot.db'}") as (app, port):
        assert (await app.flows.reload()).flow_set is not None
        # What committed steps with `count: rating_5` and `count: hint_helped` report (flows/feedback.yaml,
        # flows/create_ticket.yaml).
        for counter in ("rating_5", "rating_5", "rating_2", "hint_helped", "withdrawn"):
            app.engine.services.telemetry.count(FLOW_COUNTS, counter=counter)
        _, samples = await scrape(port)
    assert value(samples, "supportbot_flows_reloads_total", result="ok") == 1
    assert value(samples, "supportbot_flows_reloads_total", result="refused") == 0
    assert value(samples, "supportbot_ratings_total", value="5") == 2
    assert value(samples, "supportbot_ratings_total", value="2") == 1
    assert value(samples, "supportbot_hints_helped_total") == 1
    assert value(samples, "supportbot_flow_counts_total", counter="withdrawn") == 1
