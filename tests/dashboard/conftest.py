"""The dashboard on a running service (simulator + pixhook on real uvicorn).

``dashboard_service`` runs :meth:`Stack.service`'s app with the dashboard added, unless
``create_app`` already wires it in (then it changes nothing), and yields a ``Browser``: an
httpx client with its own cookie jar that can log in through the form.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette

from service.app import create_app
from service.dashboard import dashboard_routes
from service.dashboard.ratelimit import LoginLimiter
from service.registry import HandlerSet
from service.simulator.config import DEFAULT_API_KEY
from tests.core.conftest import (  # noqa: F401 - store fixtures, for the session store tests
    backend,
    clock,
    db_path,
    postgres_schema,
    postgres_server,
    raw,
    store,
)
from tests.service.conftest import API_TOKEN, T2V, Stack, stack
from tests.support.servers import running_server

__all__ = ["API_TOKEN", "T2V", "Browser", "Stack", "dashboard_app", "dashboard_service",
           "login_limiter", "stack"]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def dashboard_app(stack: Stack, handler_set: HandlerSet | None = None, *,
                  run_background: bool = True, **overrides: Any) -> Starlette:
    settings = dataclasses.replace(stack.settings, **overrides)
    app = create_app(settings, handlers=handler_set, run_background=run_background)
    if not any(getattr(route, "name", None) == "dashboard:jobs" for route in app.routes):
        app.router.routes.extend(dashboard_routes(app.state.services))
    return app


def login_limiter(app: Starlette) -> LoginLimiter:
    """The failed-login counter behind an app's ``POST /login`` (to give it a test clock)."""
    route = next(route for route in app.routes
                 if getattr(route, "name", None) == "dashboard:login")
    limiter: LoginLimiter = route.endpoint.__wrapped__.__self__.login_limiter  # type: ignore
    return limiter


@dataclasses.dataclass
class Browser:
    """A cookie-keeping client on the service, like a browser without JavaScript."""

    client: httpx.AsyncClient
    app: Starlette

    @staticmethod
    def csrf(html: str) -> str:
        match = _CSRF.search(html)
        assert match, "no CSRF field on the page"
        return match.group(1)

    async def login(self, token: str = API_TOKEN, next_path: str = "/") -> httpx.Response:
        form = await self.client.get("/login", params={"next": next_path})
        return await self.client.post("/login", data={
            "token": token, "next": next_path, "csrf": self.csrf(form.text)})


@contextlib.asynccontextmanager
async def dashboard_service(stack: Stack, handler_set: HandlerSet | None = None, *,
                            run_background: bool = True,
                            **overrides: Any) -> AsyncIterator[Browser]:
    """Like ``stack.service()``, with the dashboard; yields a logged-out :class:`Browser`."""
    app = dashboard_app(stack, handler_set, run_background=run_background, **overrides)
    async with running_server(app, port=stack.port) as url:
        stack.port = int(url.rsplit(":", 1)[1])
        stack.service_url = url
        stack.sim.accounts[DEFAULT_API_KEY].webhook_url = f"{url}/webhooks/pixverse"
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield Browser(client, app)
