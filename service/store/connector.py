"""The I/O boundary of the store: a connector runs operations in transactions; that is all.

The store's logic (:mod:`service.store.jobs`, :mod:`~service.store.ledger`,
:mod:`~service.store.deliveries`, :mod:`~service.store.queue`) is written once as operations:
``async def op(tx) -> result``, given a :class:`Transaction` and using SQL looked up by name
(:mod:`service.store.sql`). A :class:`Connector` is what each database does differently: how a
transaction is begun and committed, where it runs, how a lock is taken, how waiting workers
are woken, and how a batch of webhooks is written set-based (``write_webhooks``: the one
place the store hands a connector rows rather than statements). SQLite's
(:mod:`service.store.sqlite`) runs writes on one connection with group commit and reads on
threads; PostgreSQL's (:mod:`service.store.postgres`) a connection pool, advisory locks and
LISTEN/NOTIFY.

SQLite's calls do not wait on anything, so an operation given a SQLite transaction never
suspends: :func:`run_sync` drives it to the end in one step, inside the writer's batch or on a
reader thread, without an event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from service.store.sql import Dialect, Queries

if TYPE_CHECKING:
    from service.store.records import TaskPlanner, WebhookIngest
    from service.store.webhook_batch import Webhook

T = TypeVar("T")
Row = dict[str, Any]
Params = Mapping[str, Any]


class Transaction(Protocol):
    """One open transaction. Statements are dialect text from :class:`Queries`."""

    async def fetch_one(self, sql: str, params: Params = ...) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Params = ...) -> list[Row]: ...

    async def execute(self, sql: str, params: Params = ...) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def execute_script(self, script: str) -> None:
        """Run several statements without parameters (a migration)."""
        ...

    async def lock(self, name: str) -> None:
        """Hold a named lock until the transaction ends (a no-op where one writer holds the
        whole database, as on SQLite)."""
        ...

    async def notify_tasks(self) -> None:
        """Wake every process waiting for tasks once this transaction commits."""
        ...


#: An operation: the store's logic for one method, run in one transaction.
Operation = Callable[[Transaction], Awaitable[T]]


class Connector(Protocol):
    """One database, as the store uses it."""

    #: Set when this process committed tasks, or (PostgreSQL) heard that another did.
    tasks_ready: asyncio.Event

    @property
    def dialect(self) -> Dialect: ...

    @property
    def webhook_batches_in_flight(self) -> int | None:
        """How many webhook batches may be written at once (``None``: no limit of the
        batcher's own)."""
        ...

    @property
    def sql(self) -> Queries:
        """The dialect's statements by name."""
        ...

    async def open(self, setup: Operation[Any]) -> Any:
        """Connect, run ``setup`` (the migrations) in a write transaction of its own, and
        return what it returned."""
        ...

    async def close(self) -> None:
        """Let operations under way finish, then close every connection."""
        ...

    async def read(self, op: Operation[T]) -> T:
        """Run ``op`` in a transaction that writes nothing."""
        ...

    async def snapshot(self, op: Operation[T]) -> T:
        """Run ``op`` as :meth:`read` does, every statement seeing the same moment: for a view
        built from several statements (a job with its history and its tasks), which plain
        reads could each catch on either side of a commit."""
        ...

    async def write(self, op: Operation[T]) -> T:
        """Run ``op`` in a write transaction; return its result once committed."""
        ...

    async def wait_for_tasks(self, timeout: float) -> None:
        """Return when :meth:`Transaction.notify_tasks` committed anywhere, or after
        ``timeout`` seconds."""
        ...

    async def write_webhooks(self, webhooks: Sequence[Webhook], clock: Callable[[], float],
                             planner: TaskPlanner | None) -> list[WebhookIngest]:
        """Write a batch of verified webhooks in one transaction, set-based, as if one after
        another (:mod:`service.store.webhook_batch`); the results in order, once committed."""
        ...


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of an operation that never suspends (one on a SQLite transaction)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a store operation awaited something other than its SQLite transaction")
