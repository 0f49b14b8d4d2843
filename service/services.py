"""Wiring: build the parts one pixhook process shares, and run its background loops.

A process plays one or both roles:

* **web**: the webhook receiver, ``/api``, ``/media`` and the dashboard (:mod:`service.app`);
* **worker**: the submitter, the reconciler and the handler task runner (the loops here).

``pixhook serve`` (and ``uvicorn service.app:app``) runs both in one process, the embedded
default; ``pixhook web`` and ``pixhook worker`` split them, as the Procfile does. Everything a
role needs is built by :func:`build_services` either way, so the two never drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator
from typing import Final

import httpx

from service import store as store_module
from service.alerts import AlertMonitor
from service.heartbeat import HeartbeatLoop
from service.metrics import Metrics
from service.pixverse.client import PixVerseClient
from service.receiver import WebhookReceiver
from service.reconciler import Reconciler
from service.registry import HandlerSet
from service.retention import Pruner
from service.settings import Settings
from service.store import Store
from service.submission import Submitter
from service.worker import TaskRunner

logger = logging.getLogger(__name__)

# httpx logs every request's full URL at INFO; handler URLs can be secrets (a Slack webhook URL
# is a credential, callback URLs may carry tokens), so its requests are never logged.
logging.getLogger("httpx").setLevel(logging.WARNING)

#: Timeouts of the HTTP client handlers share (a handler may pass its own per request).
HANDLER_HTTP_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)


@dataclasses.dataclass
class Services:
    """What the routes and background loops of one process share."""

    settings: Settings
    store: Store
    client: PixVerseClient
    submitter: Submitter
    reconciler: Reconciler
    receiver: WebhookReceiver
    handlers: HandlerSet
    runner: TaskRunner
    http: httpx.AsyncClient
    metrics: Metrics
    alerts: AlertMonitor

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.http.aclose()
        await self.client.aclose()
        await self.store.close()

    async def run_worker(self, stop: asyncio.Event,
                         roles: tuple[str, ...] = ("worker",)) -> None:
        """Run the submitter, the reconciler and the task runner until ``stop`` is set, with
        the heartbeat that shows this worker (and its ``roles``) to every process, and the
        retention passes that keep the database bounded."""
        heartbeat = HeartbeatLoop(self.store, self.runner, roles=roles,
                                  stale_after=self.settings.worker_stale_after)
        loops = [asyncio.create_task(self.submitter.run(stop), name="submitter"),
                 asyncio.create_task(self.reconciler.run(stop), name="reconciler"),
                 asyncio.create_task(self.runner.run(stop), name="task-runner"),
                 asyncio.create_task(heartbeat.run(stop), name="heartbeat"),
                 asyncio.create_task(Pruner(self.store, self.settings).run(stop),
                                     name="retention")]
        try:
            await asyncio.gather(*loops)
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)


def build_services(settings: Settings, *, store: Store | None = None,
                   client: PixVerseClient | None = None,
                   handlers: HandlerSet | None = None,
                   metrics: Metrics | None = None) -> Services:
    """Build a process's parts; everything not passed is made from ``settings``. Nothing is
    opened yet (see :meth:`Services.open`)."""
    handlers = handlers if handlers is not None else HandlerSet.from_settings(settings)
    metrics = metrics or Metrics()
    # The planner and the metrics hear of every transition, whoever proposes it.
    if store is None:
        store = store_module.connect(settings.database_url, planner=handlers.plan,
                                     observer=metrics.record_transition)
    else:
        store.bind(planner=handlers.plan, observer=metrics.record_transition)
    client = client or PixVerseClient(
        settings.pixverse_api_key or "unset", base_url=settings.pixverse_base_url,
        timeout=httpx.Timeout(settings.pixverse_timeout,
                              connect=min(5.0, settings.pixverse_timeout)))
    http = httpx.AsyncClient(timeout=HANDLER_HTTP_TIMEOUT, headers={"user-agent": "pixhook"})
    submitter = Submitter(store, client, settings, metrics=metrics,
                          client_timeout=settings.pixverse_timeout)
    return Services(
        settings=settings, store=store, client=client, submitter=submitter,
        reconciler=Reconciler(store, client, settings, metrics=metrics),
        receiver=WebhookReceiver(store, settings, metrics=metrics),
        handlers=handlers, http=http, metrics=metrics,
        alerts=AlertMonitor(store, settings, metrics, http=http),
        runner=TaskRunner(store, handlers, settings, http=http, submit=submitter.submit,
                          metrics=metrics),
    )


@contextlib.asynccontextmanager
async def running(services: Services, *, worker: bool) -> AsyncIterator[Services]:
    """Open the services and, for the worker role, run its loops until the block ends."""
    stop = asyncio.Event()
    await services.open()
    loop = (asyncio.create_task(services.run_worker(stop, ("web", "worker")))
            if worker else None)
    alerts = asyncio.create_task(services.alerts.run(stop), name="alerts")
    try:
        yield services
    finally:
        stop.set()
        await asyncio.gather(alerts, return_exceptions=True)
        if loop is not None:
            await asyncio.gather(loop, return_exceptions=True)
        await services.close()


async def run_worker_process(settings: Settings, *, health_host: str = "0.0.0.0",
                             health_port: int | None = None) -> None:
    """``pixhook worker``: the worker role alone, until SIGINT or SIGTERM. With
    ``health_port`` it also serves ``/healthz``, ``/readyz`` and ``/metrics`` (the handler-run
    counters and latencies live in this process, so they are scraped here)."""
    from service.health import HealthAPI
    from service.serving import running_server

    services = build_services(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await services.open()
    logger.info("worker started: handlers %s", ", ".join(services.handlers.names) or "none",
                extra={"action": "worker"})
    try:
        async with contextlib.AsyncExitStack() as stack:
            if health_port is not None:
                health = HealthAPI(services.store, settings, metrics=services.metrics,
                                   runner=services.runner, role="worker")
                url = await stack.enter_async_context(
                    running_server(health.app(), host=health_host, port=health_port))
                logger.info("worker health and metrics on %s", url, extra={"action": "worker"})
            alerts = asyncio.create_task(services.alerts.run(stop), name="alerts")
            try:
                await services.run_worker(stop)
            finally:
                stop.set()
                await asyncio.gather(alerts, return_exceptions=True)
    finally:
        await services.close()
        logger.info("worker stopped", extra={"action": "worker"})
