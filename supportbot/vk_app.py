"""The VK channel wired to the app: `supportbot run` (long poll) and `supportbot serve` (callback)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web

from adapters.simpleone.events import EVENTS_PATH, add_events_route
from adapters.vk.api import FatalVkError, VkApi, VkApiError, VkError
from adapters.vk.attachments import AttachmentFetcher
from adapters.vk.bot import VkBot
from adapters.vk.callback import make_callback_app, resume_pending
from adapters.vk.connection_guard import ConnectionGuard, connection_limit, descriptor_limit
from adapters.vk.delivery import DeliveryLog, resend_unsent
from adapters.vk.longpoll import DEFAULT_WAIT, LongPoller
from adapters.vk.notices import run_notices
from adapters.vk.sender import VkSender
from adapters.web.metrics import PrometheusTelemetry, add_health_routes, serve_health
from engine.ports import Storage
from engine.work.leases import JobLease
from supportbot.app import App
from supportbot.config import ConfigError, VkSettings
from supportbot.health import readiness, sample

log = logging.getLogger(__name__)

DRAIN_SECONDS = 30.0  # on shutdown, how long events in hand may take to finish
ORPHAN_SWEEP_SECONDS = 5.0
# Older than anything a live worker holds: an event waits in hand at most about its step, the
# outcome wait and the handover (well under a minute); replies are marked sent within a second.
ORPHAN_AGE_SECONDS = 60.0


@dataclass(slots=True)
class VkChannel:
    session: aiohttp.ClientSession
    api: VkApi
    bot: VkBot
    delivery: DeliveryLog
    notices: asyncio.Task[None] | None = None
    recovery: asyncio.Task[None] | None = None

    async def drain(self) -> None:
        """Let the events in hand finish (within DRAIN_SECONDS)."""
        try:
            await asyncio.wait_for(self.bot.dispatcher.drain(), DRAIN_SECONDS)
        except TimeoutError:
            log.warning("events still in hand after %.0f s are cut short; they are handled after the "
                        "restart (long poll resumes before them, callbacks stay in the inbox)", DRAIN_SECONDS)
            await self.bot.dispatcher.cancel()

    async def close(self) -> None:
        await self.drain()  # at once if already drained or cancelled
        tasks = [t for t in (self.notices, self.recovery) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.delivery.close()
        await self.session.close()


def open_channel(app: App, vk: VkSettings) -> VkChannel:
    assert vk.group_id is not None
    session = aiohttp.ClientSession(headers={"User-Agent": "supportbot"})
    api = VkApi(session, vk.tokens, api_url=vk.api_url, version=vk.api_version, rate=vk.rate_limit)
    delivery = DeliveryLog(app.storage)
    bot = VkBot(app.engine.handle, app.engine.message, api, VkSender(api, telemetry=app.telemetry),
                AttachmentFetcher(session, max_bytes=vk.max_file_bytes,
                                  extra_origins=(vk.api_url,)),
                group_id=vk.group_id, concurrency=vk.concurrency, delivery=delivery)
    return VkChannel(session, api, bot, delivery)


async def check_community(api: VkApi, group_id: int) -> None:
    """Ask VK who the token belongs to before serving: a wrong token or id stops the start
    with a clear message instead of failing every later call."""
    try:
        answer = await api.call("groups.getById", {"group_id": group_id})
    except VkApiError as exc:
        raise ConfigError([f"VK_TOKEN / VK_GROUP_ID: VK refused them ({exc})"]) from None
    except VkError as exc:
        log.warning("could not reach VK to check the community (%s); going on", exc)
        return
    listed = answer.get("groups") if isinstance(answer, dict) else answer
    groups: list[dict[str, Any]] = [g for g in listed if isinstance(g, dict)] if isinstance(listed, list) else []
    names = {g.get("id"): str(g.get("name") or "") for g in groups}
    if group_id not in names:
        raise ConfigError([f"VK_GROUP_ID: the token belongs to community {list(names)}, not {group_id}"])
    log.info("serving VK community %d (%s)", group_id, names[group_id])


async def start_channel(app: App, vk: VkSettings) -> VkChannel:
    """The channel, checked against VK and with the answers a stop left unconfirmed sent."""
    channel = open_channel(app, vk)
    assert vk.group_id is not None
    try:
        await check_community(channel.api, vk.group_id)
        # What processes that are gone (this one's predecessor killed a moment ago among them)
        # committed and never sent goes out now; other live workers' answers are theirs to send.
        await resend_unsent(app.storage, channel.bot.sender, channel.delivery, gone_only=True)
        channel.notices = asyncio.create_task(run_notices(app.storage, channel.bot.sender))
        channel.recovery = asyncio.create_task(recover_orphans(app.storage, channel.bot, channel.delivery))
    except BaseException:
        await channel.close()
        raise
    return channel


async def recover_orphans(storage: Storage, bot: VkBot, delivery: DeliveryLog, *, every: float = ORPHAN_SWEEP_SECONDS,
                          older_than: float = ORPHAN_AGE_SECONDS) -> None:
    """What a worker that died left behind, taken up by one of the living (a lease) without
    waiting for it to restart: answers it committed but never sent and callbacks it answered
    "ok" but never handled; at the next sweep if the storage knows it is gone, else once they
    are older than anything a live worker has in hand. The engine's dedupe and VK's random_id
    make a race with a live worker harmless."""
    lease = JobLease(storage, "vk:orphans", ttl=2 * every)
    try:
        while True:
            await asyncio.sleep(every)
            try:
                if await lease.hold():
                    cutoff = time.time() - older_than
                    await resend_unsent(storage, bot.sender, delivery, gone_only=True)
                    await resend_unsent(storage, bot.sender, delivery, handled_before=cutoff)
                    await resume_pending(bot, storage, gone_only=True)
                    await resume_pending(bot, storage, received_before=cutoff)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taking up what a stopped worker left failed; trying again")
    finally:
        await lease.release()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_longpoll(app: App, vk: VkSettings, telemetry: PrometheusTelemetry | None = None,
                       metrics_port: int | None = None) -> None:
    """metrics_port: /metrics (with telemetry), /healthz and /readyz served there, on
    config.metrics_host."""
    health: web.AppRunner | None = None
    if metrics_port is not None:
        host = app.config.metrics_host
        try:
            health = await serve_health(host, metrics_port, partial(readiness, app), telemetry, partial(sample, app))
        except OSError as exc:
            problem = f"--metrics-port / METRICS_PORT: cannot listen on {host}:{metrics_port} ({exc})"
            raise ConfigError([problem]) from None
        log.info("metrics and health on http://%s:%d/metrics, /healthz, /readyz", host, metrics_port)
    try:
        await _run_longpoll(app, vk)
    finally:
        if health is not None:
            await health.cleanup()


async def _run_longpoll(app: App, vk: VkSettings) -> None:
    channel = await start_channel(app, vk)
    assert vk.group_id is not None
    # Several workers in long-poll mode: one polls (a lease renewed before each request, which
    # waits up to DEFAULT_WAIT s); if it dies, another resumes from the saved ts when the lease
    # runs out.
    lease = JobLease(app.storage, f"vk:{vk.group_id}:longpoll", ttl=DEFAULT_WAIT + 20)
    poller = LongPoller(channel.api, app.storage, channel.bot, group_id=vk.group_id, lease=lease)
    stop = _stop_on_signals()
    log.info("long poll for community %d started", vk.group_id)
    polling = asyncio.create_task(poller.run())
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if polling in done:
            try:
                polling.result()  # a crash of the poller is the process's failure
            except FatalVkError as exc:
                raise ConfigError([str(exc)]) from None
    finally:
        polling.cancel()
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        await channel.drain()
        await poller.save_now()  # the ts past everything handled while draining
        await channel.close()
        log.info("long poll stopped")


async def serve_callback(app: App, vk: VkSettings, host: str, port: int, path: str,
                         telemetry: PrometheusTelemetry | None = None) -> None:
    channel = await start_channel(app, vk)
    assert vk.group_id is not None and vk.callback_secret and vk.confirmation_code
    descriptors = descriptor_limit()
    guard = ConnectionGuard(limit=connection_limit(descriptors))
    web_app = make_callback_app(channel.bot, app.storage, group_id=vk.group_id, secret=vk.callback_secret,
                                confirmation=vk.confirmation_code, path=path, guard=guard, telemetry=app.telemetry)
    # Beside the callback: a proxy in front forwards only the callback's path (docs/operations.md).
    add_health_routes(web_app, partial(readiness, app), telemetry, partial(sample, app))
    push = app.config.simpleone_webhook_secret
    if push:
        # SimpleOne's business rule says a ticket changed: the status watcher looks at it now.
        add_events_route(web_app, app.storage, app.flows, secret=push)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    assert runner.server is not None  # set up
    stop = _stop_on_signals()
    try:
        await resume_pending(channel.bot, app.storage, gone_only=True)
        await guard.listen(runner.server, host, port)
        log.info("callback endpoint for community %d listening on http://%s:%d%s (at most %d connections at "
                 "once; open-file limit %d)", vk.group_id, host, port, path, guard.limit, descriptors)
        if push:
            log.info("SimpleOne events taken at http://%s:%d%s", host, port, EVENTS_PATH)
        await stop.wait()
    finally:
        await guard.close()  # stop taking events first, then finish those in hand
        await runner.cleanup()
        await channel.close()
        log.info("callback endpoint stopped")
