"""The pixhook web app: wiring only.

``create_app()`` builds the Starlette app; its lifespan opens the store and the PixVerse
client and, unless told not to, runs the submitter and the reconciler in the background
(the embedded "serve" mode). ``uvicorn service.app:app`` serves it with settings from the
environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service import store as store_module
from service.api import JobsAPI
from service.pixverse.client import PixVerseClient
from service.receiver import WebhookReceiver
from service.reconciler import Reconciler
from service.settings import Settings
from service.store import Store, TaskPlanner
from service.submission import Submitter

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


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               client: PixVerseClient | None = None, tasks_for: TaskPlanner | None = None,
               run_background: bool = True) -> Starlette:
    """Build the app. Everything not passed is made from ``settings`` (or the environment)."""
    settings = settings or Settings.load()
    store = store or store_module.connect(settings.database_url)
    client = client or PixVerseClient(settings.pixverse_api_key or "unset",
                                      base_url=settings.pixverse_base_url)
    services = Services(
        settings=settings, store=store, client=client,
        submitter=Submitter(store, client, settings, tasks_for=tasks_for),
        reconciler=Reconciler(store, client, settings, tasks_for=tasks_for),
        receiver=WebhookReceiver(store, settings, tasks_for=tasks_for),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        stop = asyncio.Event()
        await services.store.open()
        loops = []
        if run_background:
            loops = [asyncio.create_task(services.submitter.run(stop)),
                     asyncio.create_task(services.reconciler.run(stop))]
        try:
            yield {}
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
            await services.client.aclose()
            await services.store.close()

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    api = JobsAPI(store, services.submitter, settings)
    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, services.receiver.endpoint, methods=["POST"]),
            *api.routes(),
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
