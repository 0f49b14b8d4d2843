"""The pixhook web app: wiring only.

``create_app()`` builds the Starlette app; its lifespan opens the store, the PixVerse client
and the shared HTTP client and, unless told not to, runs the submitter, the reconciler and the
task runner in the background (the embedded "serve" mode). ``uvicorn service.app:app`` serves
it with settings from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service import store as store_module
from service.api import JobsAPI, TasksAPI
from service.media import MediaLinks
from service.pixverse.client import PixVerseClient
from service.receiver import WebhookReceiver
from service.reconciler import Reconciler
from service.registry import HandlerSet
from service.settings import Settings
from service.store import Store
from service.submission import Submitter
from service.worker import TaskRunner

# httpx logs every request's full URL at INFO; handler URLs can be secrets (a Slack webhook URL
# is a credential, callback URLs may carry tokens), so its requests are never logged.
logging.getLogger("httpx").setLevel(logging.WARNING)

#: Timeouts of the HTTP client handlers share (a handler may pass its own per request).
HANDLER_HTTP_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)

WEBHOOK_PATH = "/webhooks/pixverse"


@dataclasses.dataclass
class Services:
    """What the app's routes and background loops share; on ``app.state.services``."""

    settings: Settings
    store: Store
    client: PixVerseClient
    submitter: Submitter
    reconciler: Reconciler
    receiver: WebhookReceiver
    handlers: HandlerSet
    runner: TaskRunner
    http: httpx.AsyncClient


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               client: PixVerseClient | None = None, handlers: HandlerSet | None = None,
               run_background: bool = True) -> Starlette:
    """Build the app. Everything not passed is made from ``settings`` (or the environment);
    ``handlers`` defaults to the ones ``PIXHOOK_HANDLERS`` names."""
    settings = settings or Settings.load()
    store = store or store_module.connect(settings.database_url)
    client = client or PixVerseClient(settings.pixverse_api_key or "unset",
                                      base_url=settings.pixverse_base_url)
    handlers = handlers if handlers is not None else HandlerSet.from_settings(settings)
    http = httpx.AsyncClient(timeout=HANDLER_HTTP_TIMEOUT,
                             headers={"user-agent": "pixhook"})
    submitter = Submitter(store, client, settings, tasks_for=handlers.plan)
    services = Services(
        settings=settings, store=store, client=client, submitter=submitter,
        reconciler=Reconciler(store, client, settings, tasks_for=handlers.plan),
        receiver=WebhookReceiver(store, settings, tasks_for=handlers.plan),
        handlers=handlers, http=http,
        runner=TaskRunner(store, handlers, settings, http=http, submit=submitter.submit),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        stop = asyncio.Event()
        await services.store.open()
        loops = []
        if run_background:
            loops = [asyncio.create_task(services.submitter.run(stop)),
                     asyncio.create_task(services.reconciler.run(stop)),
                     asyncio.create_task(services.runner.run(stop))]
        try:
            yield {}
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
            await services.http.aclose()
            await services.client.aclose()
            await services.store.close()

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    jobs_api = JobsAPI(store, services.submitter, settings)
    tasks_api = TasksAPI(store, settings)
    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, services.receiver.endpoint, methods=["POST"]),
            *jobs_api.routes(),
            *tasks_api.routes(),
            *MediaLinks(settings, store).routes(),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn service.app:app`` builds the app on first access, from the environment.
    if name == "app":
        return create_app()
    raise AttributeError(name)
