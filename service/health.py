"""``/healthz``, ``/readyz`` and ``/metrics``: what load balancers and Prometheus ask.

* ``GET /healthz``: 200 ``ok`` while the process serves requests (liveness: restart me if not).
* ``GET /readyz``: 200 ``{"database": "ok", "worker": ...}`` when the database answers a read
  and, in a process that runs the task runner, the runner's loop beat recently; else 503 with
  the same body saying which part failed (readiness: send me no traffic until it passes).
  ``worker`` is ``ok``, ``stale``, ``starting`` (no beat yet) or ``not running here`` for a
  web-only process, which stays ready on the database alone.
* ``GET /metrics``: :class:`service.metrics.Metrics` in the Prometheus text format. Open by
  default, on the assumption that it is reached only from the private network; with
  ``PIXHOOK_METRICS_TOKEN`` set it wants ``Authorization: Bearer <token>``.

None of them touches PixVerse, and none says more than ``ok``/``failed`` about an error (the
details go to the log), since the probes are usually unauthenticated.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from service.metrics import CONTENT_TYPE, Metrics
from service.settings import Settings
from service.store import Store
from service.worker import POLL_INTERVAL_SECONDS

logger = logging.getLogger(__name__)

#: A runner whose loop has not beaten for this long is stale. Its loop beats at least once a
#: poll interval; the margin covers a slow store write or a busy event loop.
HEARTBEAT_STALE_SECONDS: Final = 3 * POLL_INTERVAL_SECONDS + 7.0


class Heartbeat(Protocol):
    """What readiness reads from a task runner (:class:`service.worker.TaskRunner`)."""

    @property
    def heartbeat_at(self) -> float | None: ...


class HealthAPI:
    """The probe and metrics routes; ``routes()`` gives them to the app.

    :param runner: the process's task runner, or ``None`` where none runs (``pixhook web``).
    :param metrics: what ``/metrics`` shows; ``None`` leaves ``/metrics`` out.
    :param stale_after: seconds without a runner heartbeat before ``/readyz`` fails.
    """

    def __init__(self, store: Store, settings: Settings, *, metrics: Metrics | None = None,
                 runner: Heartbeat | None = None,
                 stale_after: float = HEARTBEAT_STALE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._runner = runner
        self._stale_after = stale_after
        self._clock = clock

    def routes(self) -> list[Route]:
        routes = [Route("/healthz", self.healthz, methods=["GET", "HEAD"]),
                  Route("/readyz", self.readyz, methods=["GET", "HEAD"])]
        if self._metrics is not None:
            routes.append(Route("/metrics", self.metrics, methods=["GET"]))
        return routes

    def app(self) -> Starlette:
        """A tiny app with only these routes: for a process that serves nothing else (a
        ``pixhook worker`` that should still be scraped and probed)."""
        return Starlette(routes=self.routes())

    async def healthz(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> JSONResponse:
        checks = {"database": await self._database(), "worker": self._worker()}
        ready = checks["database"] == "ok" and checks["worker"] in ("ok", "not running here")
        return JSONResponse(checks, status_code=200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        assert self._metrics is not None  # routes() mounts this only with metrics
        if not self._authorised(request):
            return PlainTextResponse("missing or wrong bearer token", status_code=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        try:
            await self._metrics.collect(self._store)
        except Exception:
            # Counters are still worth a scrape; the store gauges are left out.
            logger.exception("reading the store for /metrics failed",
                             extra={"action": "metrics"})
        return Response(self._metrics.render(), media_type=CONTENT_TYPE)

    async def _database(self) -> str:
        try:
            await self._store.next_task_due()
        except Exception:
            logger.exception("readiness: the database read failed", extra={"action": "readyz"})
            return "failed"
        return "ok"

    def _worker(self) -> str:
        if self._runner is None:
            return "not running here"
        beat = self._runner.heartbeat_at
        if beat is None:
            return "starting"
        return "ok" if self._clock() - beat <= self._stale_after else "stale"

    def _authorised(self, request: Request) -> bool:
        expected = self._settings.metrics_token
        if not expected:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  expected.encode())
