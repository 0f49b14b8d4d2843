"""The store: pixhook's durable state, its logic written once over a connector.

:class:`Store` is assembled from its parts, each a module of its own and each written once
(``service/store/__init__.py`` draws them all): jobs, the ledger (the one write path for
transitions), webhooks (batched), deliveries, the task queue, idempotency keys, dashboard
sessions, the operator's tools, the event log, worker heartbeats, retention and alerts. None of
them knows which database it runs on; the connector does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from service.store import records
from service.store.alerts import Alerts
from service.store.base import TransitionObserver
from service.store.connector import Connector, Transaction
from service.store.deliveries import Deliveries
from service.store.event_log import EventLog
from service.store.idempotency import IdempotencyKeys
from service.store.jobs import Jobs
from service.store.operator import OperatorTools
from service.store.queue import TaskQueue
from service.store.records import JobHistory, TaskPlanner
from service.store.retention import Retention
from service.store.schema import migrate
from service.store.sessions import DashboardSessions
from service.store.webhook_batch import WebhookBatcher, Webhooks
from service.store.workers import Workers
from service.store.writer import DEFAULT_MAX_BATCH

logger = logging.getLogger(__name__)


class Store(IdempotencyKeys, Jobs, Webhooks, Deliveries, TaskQueue, DashboardSessions,
            OperatorTools, EventLog, Workers, Retention, Alerts):
    """Durable storage for jobs, their history, webhook deliveries and handler tasks.

    Every method is one transaction. Open the store before use (``await store.open()`` or
    ``async with store:``); ``open`` runs pending migrations. Build one with
    :func:`service.store.connect`, or as :class:`~service.store.sqlite.SQLiteStore` /
    :class:`~service.store.postgres.PostgresStore`.
    """

    def __init__(self, connector: Connector, *, planner: TaskPlanner | None = None,
                 observer: TransitionObserver | None = None,
                 clock: Callable[[], float] = time.time,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        super().__init__(connector, planner=planner, observer=observer, clock=clock)
        self._batches = WebhookBatcher(
            connector.write_webhooks, tasks_ready=connector.tasks_ready, max_batch=max_batch,
            max_in_flight=connector.webhook_batches_in_flight, clock=clock,
            planner=lambda: self._planner)

    async def job_history(self, job_id: str, *, unapplied_limit: int = 50,
                          tasks_limit: int = 1000) -> JobHistory | None:
        """The job, its transitions, unapplied webhooks and tasks, read at one moment: a
        handler records its result on the job before its task succeeds, and a transition
        moves the job and writes its row together, so separate reads could show a finished
        task beside a job without its video, or a state without the row that set it."""
        transitions = self._transitions(job_id)
        unapplied = self._unapplied_webhooks(job_id, unapplied_limit)
        tasks = self._tasks(job_id=job_id, limit=tasks_limit)

        async def op(tx: Transaction) -> JobHistory | None:
            row = await tx.fetch_one(self._sql["get_job"], {"id": job_id})
            if row is None:
                return None
            return JobHistory(records.job(row), await transitions(tx), await unapplied(tx),
                              await tasks(tx))

        return await self._db.snapshot(op)

    async def open(self) -> None:
        """Connect and migrate; a no-op when already open."""
        async def setup(tx: Transaction) -> list[str]:
            return await migrate(tx, self._sql)

        applied = await self._db.open(setup)
        if applied:
            logger.info("migrated %r: %s", self, ", ".join(applied),
                        extra={"action": "store_migrated"})

    async def close(self) -> None:
        """Let operations under way finish, then close every connection."""
        # Webhooks already handed in are written first, as any operation under way is.
        await self._batches.drain()
        await self._db.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
