"""``POST /api/reconcile``: one reconciler pass now, run by the service (what ``pixhook
reconcile`` asks for). The pass polls PixVerse about the jobs whose webhook is overdue, as the
worker's own passes do; it uses the service's database and PixVerse key, not the caller's.

Answers ``{"polled": n}``: the number of status calls made (0 with ``PIXHOOK_POLL_MODE=off`` or
nothing overdue). Passes are safe to run beside the worker's: overdue jobs are claimed, so two
passes never poll the same job at once.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.api import BearerGuard
from service.reconciler import Reconciler
from service.settings import Settings


class ReconcileAPI:
    """``POST /api/reconcile`` over the process's reconciler."""

    def __init__(self, reconciler: Reconciler, settings: Settings) -> None:
        self._reconciler = reconciler
        self._guard = BearerGuard(settings)

    def routes(self) -> list[Route]:
        return [Route("/api/reconcile", self._guard(self.reconcile), methods=["POST"])]

    async def reconcile(self, request: Request) -> JSONResponse:
        return JSONResponse({"polled": await self._reconciler.run_once()})
