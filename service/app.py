"""The pixhook web app: wiring only.

``create_app()`` builds the Starlette app on the parts :func:`service.services.build_services`
makes; its lifespan opens them and, unless told not to, runs the worker role (submitter,
reconciler, task runner) in the background: the embedded "serve" mode. ``uvicorn
service.app:app`` serves it with settings from the environment.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from service.api import JobsAPI, TasksAPI
from service.api_reconcile import ReconcileAPI
from service.dashboard import dashboard_routes
from service.event_stream import EventsAPI
from service.health import HealthAPI
from service.media import MediaLinks
from service.openapi import routes as openapi_routes
from service.pixverse.client import PixVerseClient
from service.registry import HandlerSet
from service.services import Services, build_services, running
from service.settings import Settings
from service.store import Store

__all__ = ["WEBHOOK_PATH", "Services", "create_app"]

WEBHOOK_PATH = "/webhooks/pixverse"


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               client: PixVerseClient | None = None, handlers: HandlerSet | None = None,
               run_background: bool = True) -> Starlette:
    """Build the web app. Everything not passed is made from ``settings`` (or the
    environment). With ``run_background`` (the default, ``pixhook serve``) the process also
    plays the worker role; ``pixhook web`` turns it off."""
    settings = settings or Settings.load()
    services = build_services(settings, store=store, client=client, handlers=handlers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with running(services, worker=run_background):
            yield {}

    jobs_api = JobsAPI(services.store, services.submitter, settings)
    tasks_api = TasksAPI(services.store, settings)
    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, services.receiver, methods=["POST"]),
            *jobs_api.routes(),
            *tasks_api.routes(),
            *ReconcileAPI(services.reconciler, settings).routes(),
            *EventsAPI(services.store, settings).routes(),
            *openapi_routes(),
            *MediaLinks(settings, services.store).routes(),
            *HealthAPI(services.store, settings, metrics=services.metrics,
                       runner=services.runner if run_background else None).routes(),
            *dashboard_routes(services),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn service.app:app`` builds the app on first access, from the environment, and
    # logs as ``pixhook serve`` does (pixhook's format and secret masking for its own lines).
    if name == "app":
        from service.logs import configure_logging

        settings = Settings.load()
        configure_logging(settings)
        return create_app(settings)
    raise AttributeError(name)
