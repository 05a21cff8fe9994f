"""Metrics and health wired to the app: what a scrape and /readyz read, and `supportbot health`.

Readiness means the process can take events: its storage answers and a flow set is loaded.
SimpleOne is reported (its circuit breaker) but never makes the process unready: while it is
down the outbox keeps the tickets, and a load balancer that took the workers out would lose
the events instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

from adapters.web.metrics import PrometheusTelemetry, Readiness, Sample
from engine.ports import Storage
from supportbot.app import App, open_storage
from supportbot.config import Config, ConfigError

PROBE_SECONDS = 3.0  # a storage read that takes longer counts as unreachable
HEALTH_TIMEOUT = 5.0  # `supportbot health`: how long to wait for /readyz


def new_telemetry(config: Config) -> PrometheusTelemetry:
    return PrometheusTelemetry(active_window=config.session_idle)


async def outbox_figures(storage: Storage, now: float) -> tuple[int, int, float]:
    """Pending and failed outbox items, and how long the oldest pending one has waited."""
    async with asyncio.timeout(PROBE_SECONDS):
        summary = await storage.outbox_summary()  # counts only: cheap however deep the outbox
    oldest = now if summary.oldest_pending_at is None else summary.oldest_pending_at
    return summary.pending, summary.failed, max(0.0, now - oldest)


def _problem(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {PROBE_SECONDS:g} s"
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]  # one line, whatever the message


async def readiness(app: App) -> Readiness:
    checks: dict[str, Any] = {}
    reasons: list[str] = []
    try:
        pending, failed, oldest = await outbox_figures(app.storage, time.time())
        checks["storage"] = "ok"
        checks["outbox"] = {"pending": pending, "failed": failed, "oldest_pending_seconds": round(oldest, 1)}
    except Exception as exc:
        checks["storage"] = f"unreachable: {_problem(exc)}"
        reasons.append(f"storage unreachable ({_problem(exc)})")
    try:
        flows = app.flows.current
        checks["flows"] = {"version": flows.version, "steps": len(flows.states)}
    except RuntimeError:
        checks["flows"] = "not loaded"
        reasons.append("no flow set loaded")
    breaker = app.outbox.breaker
    checks["simpleone"] = {"breaker": breaker.state, "retry_in_seconds": round(breaker.retry_in(), 1)}
    return Readiness(not reasons, "; ".join(reasons) or "ok", checks)


async def sample(app: App) -> Sample:
    """The scrape-time figures; the outbox's are left out if the storage does not answer."""
    s = Sample(breaker=app.outbox.breaker.state, flows_reloads=app.flows.reloads,
               flows_refusals=app.flows.refusals)
    try:
        s.flows_version = app.flows.current.version
    except RuntimeError:
        pass
    try:
        s.outbox_pending, s.outbox_failed, s.outbox_oldest_age = await outbox_figures(app.storage, time.time())
    except Exception:
        pass  # /readyz names the problem; the gauges are absent rather than wrong
    return s


# ---------------------------------------------------------------------- `supportbot health`

def _ask(url: str) -> tuple[int, str]:
    try:
        with urlopen(url, timeout=HEALTH_TIMEOUT) as answer:
            return int(answer.status), answer.read().decode("utf-8", "replace")
    except HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _one_line(status: int, body: str) -> tuple[bool, str]:
    try:
        verdict = json.loads(body)
    except ValueError:
        return status == 200, f"HTTP {status}: {body.strip()[:200]}"
    if not isinstance(verdict, dict):
        return status == 200, f"HTTP {status}"
    breaker = verdict.get("simpleone", {}).get("breaker") if isinstance(verdict.get("simpleone"), dict) else None
    outbox = verdict.get("outbox") if isinstance(verdict.get("outbox"), dict) else {}
    extra = [f"SimpleOne breaker {breaker}"] if breaker else []
    if outbox:
        extra.append(f"outbox {outbox.get('pending')} pending")
    ready = status == 200 and verdict.get("ready") is True
    head = "ready" if ready else f"not ready: {verdict.get('reason', f'HTTP {status}')}"
    return ready, head + (f" ({', '.join(extra)})" if extra else "")


def _before_opening(config: Config) -> tuple[str, str]:
    """The flows' version, or the problem that stops a start before the database is opened
    (flows that do not load; a SQLite file that is not there, which opening would create)."""
    from engine.reload import FlowHolder

    try:
        version = FlowHolder([config.flows_dir]).load().version
    except Exception as exc:
        return "", f"flows do not load ({_problem(exc)})"
    if config.database_url.startswith("sqlite:"):
        from adapters.storage.sqlite import sqlite_path_from_url

        try:
            path = sqlite_path_from_url(config.database_url)
        except ValueError as exc:
            return version, f"SUPPORTBOT_DATABASE_URL: {exc}"
        if path != ":memory:" and not Path(path).is_file():
            return version, f"no database at {path} (SUPPORTBOT_DATABASE_URL)"
    return version, ""


async def _check_directly(config: Config) -> tuple[bool, str]:
    """No process to ask: what a start needs, checked here (the flows load, the database answers)."""
    version, problem = await asyncio.to_thread(_before_opening, config)
    if problem:
        return False, f"not ready: {problem}"
    try:
        storage = await open_storage(config.database_url, pool_size=1)
    except ConfigError as exc:
        return False, "not ready: " + "; ".join(exc.problems)
    try:
        pending, _, oldest = await outbox_figures(storage, time.time())
    except Exception as exc:
        return False, f"not ready: storage unreachable ({_problem(exc)})"
    finally:
        await storage.close()
    return True, (f"ok: database and flows checked directly (flows {version}, outbox {pending} pending, "
                  f"oldest {oldest:.0f} s); no running process was asked")


async def health_command(config: Config | None, url: str | None, out: TextIO) -> int:
    """0 and "ready …" if the process at url (its /readyz) is ready, or with no url if the
    configuration, flows and database are usable; else 1 and the reason, on one line."""
    if url is not None:
        try:
            status, body = await asyncio.to_thread(_ask, url)
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            out.write(f"not ready: nothing answers at {url} ({reason})\n")
            return 1
        ready, line = _one_line(status, body)
    elif config is None:
        return 1
    else:
        ready, line = await _check_directly(config)
    out.write(line + "\n")
    return 0 if ready else 1
