"""PostgreSQL (psycopg 3, async, with a connection pool): pixhook across machines. The
connector, and :class:`PostgresStore` on top of it.

The logic is the store's own, shared with SQLite; what differs is how its guarantees hold when
several web and worker processes write at once. SQLite gets them from a single writer; here
each rests on a lock or a constraint (the statements are in ``sql/postgres.sql``):

* **A message is decided once.** A transition reads its job ``FOR UPDATE``; a second replica
  delivering the same event waits for the first to commit, then reads the new state and
  records a duplicate.
* **A nonce is claimed once.** ``INSERT ... ON CONFLICT DO NOTHING`` on its primary key: a
  concurrent claimer waits for the first transaction and inserts nothing if it committed (or
  takes the nonce if it rolled back, so a failed delivery can be retried).
* **A task runs in one place; an overdue job is polled by one reconciler.** Claims read due
  rows ``FOR UPDATE SKIP LOCKED``.
* **Named locks** (:meth:`PostgresTransaction.lock`) are transaction-scoped advisory locks:
  the in-flight count and the submission claims it allows are one step; a webhook's lookup of
  a video id and the submitter setting that id are ordered, so no orphan is missed.

Every operation runs in one transaction on one pooled connection (``READ COMMITTED``).

Waking workers: a transaction that queues or revives a task also runs ``NOTIFY
"pixhook_tasks:<schema>"``; the connector keeps one connection outside the pool that
``LISTEN``\\ s, so :meth:`~PostgresConnector.wait_for_tasks` returns as soon as any process
commits new work. Channels are per database, not per schema, hence the schema in the name. The
caller's timeout still bounds the wait if a notification is lost (the listener reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool

from service.store.base import TransitionObserver
from service.store.connector import Operation, Params, Row, Transaction
from service.store.errors import ConstraintError, StorageError, StoreClosedError
from service.store.records import TaskPlanner
from service.store.sql import queries
from service.store.store import Store

logger = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.AsyncConnection[DictRow]

DEFAULT_POOL_MIN_SIZE: Final = 1
DEFAULT_POOL_MAX_SIZE: Final = 10
#: How long :meth:`PostgresConnector.open` waits for the first connections, in seconds.
DEFAULT_OPEN_TIMEOUT_SECONDS: Final = 30.0
#: How long an operation waits for a free pooled connection, in seconds.
DEFAULT_POOL_TIMEOUT_SECONDS: Final = 30.0
#: The NOTIFY channel that says "tasks may be due", before ":<schema>" is added.
TASKS_CHANNEL: Final = "pixhook_tasks"
#: How long the listener waits before reconnecting after losing its connection, in seconds.
LISTEN_RETRY_SECONDS: Final = 1.0
#: At close, operations already under way get this long to finish, in seconds.
CLOSE_GRACE_SECONDS: Final = 10.0


def masked(conninfo: str) -> str:
    """The connection string without its password, for ``repr`` and logs."""
    parts = urllib.parse.urlsplit(conninfo)
    if parts.password is None:
        return conninfo
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def _configure(conn: Connection) -> None:
    # JSON columns come back as their text and go through the same json.loads as SQLite's.
    conn.adapters.register_loader("json", TextLoader)


class PostgresTransaction:
    """A :class:`~service.store.connector.Transaction` on a pooled connection."""

    def __init__(self, conn: Connection, notify: pgsql.Composed) -> None:
        self._conn = conn
        self._notify = notify
        self.notified = False

    async def fetch_all(self, sql: str, params: Params = {}) -> list[Row]:  # noqa: B006
        cursor = await self._conn.execute(sql, params)
        return await cursor.fetchall() if cursor.description else []

    async def fetch_one(self, sql: str, params: Params = {}) -> Row | None:  # noqa: B006
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Params = {}) -> int:  # noqa: B006
        return (await self._conn.execute(sql, params)).rowcount

    async def execute_script(self, script: str) -> None:
        if script.strip():
            await self._conn.execute(script.encode())  # bytes: a script with no parameters

    async def lock(self, name: str) -> None:
        await self._conn.execute(queries("postgres")["advisory_lock"], {"name": name})

    async def notify_tasks(self) -> None:
        if not self.notified:
            await self._conn.execute(self._notify)
            self.notified = True


class PostgresConnector:
    """A PostgreSQL database through a connection pool, and a listener for task wake-ups."""

    dialect: Final = "postgres"
    sql: Final = queries("postgres")

    def __init__(self, conninfo: str, *, min_size: int, max_size: int, open_timeout: float,
                 pool_timeout: float) -> None:
        if not 1 <= min_size <= max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, not {min_size}, {max_size}")
        self.conninfo = conninfo
        self.min_size, self.max_size = min_size, max_size
        self._open_timeout, self._pool_timeout = open_timeout, pool_timeout
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._channel = TASKS_CHANNEL  # ":<schema>" is added at open()
        #: Operations under way, so close() can let them finish.
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.tasks_ready = asyncio.Event()

    def _statement(self, verb: str) -> pgsql.Composed:
        return pgsql.SQL(verb + " {}").format(pgsql.Identifier(self._channel))

    async def open(self, setup: Operation[Any]) -> Any:
        if self._pool is not None:
            return []
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.conninfo, connection_class=psycopg.AsyncConnection[DictRow],
            kwargs={"row_factory": dict_row}, min_size=self.min_size, max_size=self.max_size,
            open=False, configure=_configure, timeout=self._pool_timeout, name="pixhook",
            # An empty query before each checkout: a connection the server dropped (restart,
            # failover, idle timeout) is replaced instead of failing the caller's operation.
            check=AsyncConnectionPool.check_connection,
        )
        try:
            await pool.open(wait=True, timeout=self._open_timeout)
            async with pool.connection() as conn:
                applied = await setup(PostgresTransaction(conn, self._statement("NOTIFY")))
                schema = await (await conn.execute(self.sql["current_schema"])).fetchone()
            self._channel = f"{TASKS_CHANNEL}:{schema['name'] if schema else 'public'}"
            listening = await self._connect_listener()
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"cannot open {masked(self.conninfo)}: {exc}") from exc
            raise
        self._pool = pool
        self._listener = asyncio.create_task(self._listen(listening), name="pixhook-listen")
        return applied

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), CLOSE_GRACE_SECONDS)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await pool.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[PostgresTransaction]:
        """One pooled connection in one transaction: committed if the block returns, rolled
        back if it raises. Driver errors come out as the store's own."""
        if self._pool is None:
            raise StoreClosedError("the store is not open")
        self._busy += 1
        self._idle.clear()
        try:
            async with self._pool.connection() as conn:
                tx = PostgresTransaction(conn, self._statement("NOTIFY"))
                yield tx
            if tx.notified:
                self.tasks_ready.set()
        except psycopg.IntegrityError as exc:
            raise ConstraintError(str(exc)) from exc
        except psycopg.Error as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def write(self, op: Operation[T]) -> T:
        async with self._transaction() as tx:
            return await op(tx)

    read = write  # READ COMMITTED: a read is a transaction like any other

    async def snapshot(self, op: Operation[T]) -> T:
        async def in_snapshot(tx: Transaction) -> T:
            await tx.execute(self.sql["begin_snapshot"])  # the transaction's first statement
            return await op(tx)

        return await self.write(in_snapshot)

    # -- waking workers ----------------------------------------------------------------------

    async def _connect_listener(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        try:
            await conn.execute(self._statement("LISTEN"))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Set the wake-up event on every notification; reconnect if the connection drops."""
        while True:
            try:
                async with conn:
                    async for _ in conn.notifies():
                        self.tasks_ready.set()
            except psycopg.Error as exc:
                logger.warning("lost the LISTEN connection (%s); reconnecting", exc,
                               extra={"action": "store_listen"})
            while True:
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                try:
                    conn = await self._connect_listener()
                except psycopg.Error as exc:
                    logger.warning("cannot LISTEN (%s); retrying", exc,
                                   extra={"action": "store_listen"})
                    continue
                # Notifications sent while nobody listened are gone: look once anyway.
                self.tasks_ready.set()
                break

    async def wait_for_tasks(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.tasks_ready.wait(), timeout)
        self.tasks_ready.clear()


class PostgresStore(Store):
    """The :class:`~service.store.Store` on a PostgreSQL database.

    >>> store = PostgresStore("postgresql://pixhook@db.internal/pixhook")   # doctest: +SKIP
    >>> async with store:                                                    # doctest: +SKIP
    ...     job = await store.create_job(kind="text_to_video", params={"prompt": "a cat"})

    :param conninfo: a libpq connection string or ``postgresql://`` URL. The tables live in
        the first schema of the connection's ``search_path`` (``options=-c search_path=...``).
    :param min_size: connections the pool keeps open; ``max_size``: the most it opens.
    :param clock: returns the time (epoch seconds) recorded as ``created_at`` and the like.
    """

    def __init__(self, conninfo: str, *, min_size: int = DEFAULT_POOL_MIN_SIZE,
                 max_size: int = DEFAULT_POOL_MAX_SIZE,
                 open_timeout: float = DEFAULT_OPEN_TIMEOUT_SECONDS,
                 pool_timeout: float = DEFAULT_POOL_TIMEOUT_SECONDS,
                 planner: TaskPlanner | None = None, observer: TransitionObserver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.connector = PostgresConnector(conninfo, min_size=min_size, max_size=max_size,
                                           open_timeout=open_timeout, pool_timeout=pool_timeout)
        super().__init__(self.connector, planner=planner, observer=observer, clock=clock)
        self.conninfo, self.min_size, self.max_size = conninfo, min_size, max_size

    def __repr__(self) -> str:
        return f"<PostgresStore {masked(self.conninfo)!r}>"
