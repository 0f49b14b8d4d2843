"""``/healthz``, ``/readyz`` and ``/metrics``: what load balancers and Prometheus ask.

* ``GET /healthz``: 200 ``ok`` while the process serves requests (liveness: restart me if not).
* ``GET /readyz``: 200 ``{"database": "ok", "worker": "ok", "settings": "ok"}`` when the
  database answers a read, some worker beat recently (the heartbeat rows every worker writes,
  :mod:`service.heartbeat`; in ``pixhook serve`` the process's own task runner counts too),
  and no setting the process's role needs is missing (:mod:`service.startup`); else 503
  with the same body saying which part failed and a ``reason`` line (readiness: send me no
  traffic until it passes). ``worker`` is ``ok``, ``starting`` (this process's runner has not
  beaten yet), ``stale`` (the newest beat is too old) or ``none`` (no worker is running).
  A web process without workers is not ready: webhooks would be accepted and nothing run.
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
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from service.metrics import CONTENT_TYPE, Metrics
from service.settings import Settings
from service.startup import Role, missing
from service.store import Store

logger = logging.getLogger(__name__)

class Heartbeat(Protocol):
    """What readiness reads from a task runner (:class:`service.worker.TaskRunner`)."""

    @property
    def heartbeat_at(self) -> float | None: ...


class HealthAPI:
    """The probe and metrics routes; ``routes()`` gives them to the app.

    :param runner: the process's task runner, or ``None`` where none runs (``pixhook web``).
    :param metrics: what ``/metrics`` shows; ``None`` leaves ``/metrics`` out.
    :param stale_after: seconds without a worker heartbeat before ``/readyz`` fails
        (default ``PIXHOOK_WORKER_STALE_AFTER``).
    :param role: whose required settings are checked (default ``serve`` with a runner,
        ``web`` without).
    """

    def __init__(self, store: Store, settings: Settings, *, metrics: Metrics | None = None,
                 runner: Heartbeat | None = None, stale_after: float | None = None,
                 role: Role | None = None, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._runner = runner
        self._stale_after = settings.worker_stale_after if stale_after is None else stale_after
        self._role: Role = role or ("serve" if runner is not None else "web")
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
        database = await self._database()
        worker, why_not = await self._worker(database == "ok")
        lacking = missing(self._settings, self._role)
        body = {"database": database, "worker": worker,
                "settings": "missing " + ", ".join(line.split()[0] for line in lacking)
                if lacking else "ok"}
        reasons = ([] if database == "ok" else ["the database does not answer"]) \
            + ([why_not] if why_not else []) + lacking
        if reasons:
            body["reason"] = "; ".join(reasons)
        return JSONResponse(body, status_code=503 if reasons else 200)

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

    async def _worker(self, database_ok: bool) -> tuple[str, str | None]:
        """The worker check and, when it fails, why."""
        now = self._clock()
        own = None if self._runner is None else self._runner.heartbeat_at
        if own is not None and now - own <= self._stale_after:
            return "ok", None
        newest = None
        if database_ok:
            try:
                newest = await self._store.newest_worker_beat()
            except Exception:
                logger.exception("readiness: reading worker heartbeats failed",
                                 extra={"action": "readyz"})
        if newest is not None and now - newest <= self._stale_after:
            return "ok", None
        if self._runner is not None and own is None and newest is None:
            return "starting", "this process's worker has not started yet"
        if newest is None and own is None:
            return "none", "no worker is running (start `pixhook worker`)"
        last = max(t for t in (own, newest) if t is not None)
        return "stale", (f"no worker has beaten for {now - last:.0f} s (stale after "
                         f"{self._stale_after:g} s): frozen, overloaded or gone")

    def _authorised(self, request: Request) -> bool:
        expected = self._settings.metrics_token
        if not expected:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  expected.encode())
