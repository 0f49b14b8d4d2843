"""The store: pixhook's durable state, its logic written once over a connector.

:class:`Store` is assembled from its parts, each a module of its own: :class:`~service.store.
jobs.Jobs` (create, read, list, claims), :class:`~service.store.ledger.Ledger` (the one write
path for transitions), :class:`~service.store.deliveries.Deliveries` (the webhook log),
:class:`~service.store.queue.TaskQueue` (handler tasks), :class:`~service.store.sessions.
DashboardSessions` (dashboard logins) and :class:`~service.store.idempotency.IdempotencyKeys`
(jobs created once per ``Idempotency-Key``). None of them knows which database it runs on; the
connector does.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

from service.store.connector import Transaction
from service.store.deliveries import Deliveries
from service.store.idempotency import IdempotencyKeys
from service.store.jobs import Jobs
from service.store.queue import TaskQueue
from service.store.schema import migrate
from service.store.sessions import DashboardSessions

logger = logging.getLogger(__name__)


class Store(IdempotencyKeys, Jobs, Deliveries, TaskQueue, DashboardSessions):
    """Durable storage for jobs, their history, webhook deliveries and handler tasks.

    Every method is one transaction. Open the store before use (``await store.open()`` or
    ``async with store:``); ``open`` runs pending migrations. Build one with
    :func:`service.store.connect`, or as :class:`~service.store.sqlite.SQLiteStore` /
    :class:`~service.store.postgres.PostgresStore`.
    """

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
        await self._db.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
