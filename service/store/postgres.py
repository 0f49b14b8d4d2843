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
import dataclasses
import functools
import hashlib
import logging
import re
import time
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql as pgsql
from psycopg.pq import ExecStatus
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool

from service.store import postgres_webhook_batch
from service.store.base import TransitionObserver
from service.store.connector import Operation, Params, Row, Transaction
from service.store.errors import ConstraintError, StorageError, StoreClosedError
from service.store.records import TaskPlanner, WebhookIngest
from service.store.sql import queries
from service.store.store import Store
from service.store.webhook_batch import Webhook

logger = logging.getLogger(__name__)

_TUPLES_OK: Final = ExecStatus.TUPLES_OK
#: A bound parameter in a statement of Queries (``%(name)s``).
_PLACEHOLDER: Final = re.compile(r"%\((\w+)\)s")

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


async def _reset(conn: Connection) -> None:
    """A connection going back to the pool: as every operation but the webhook batch's
    expects it (psycopg begins its transactions)."""
    if conn.autocommit:
        await conn.set_autocommit(False)


class _Dropped(Exception):
    """The server had dropped the connection; nothing was committed."""


@functools.lru_cache(maxsize=64)
def _prepared(sql: str) -> tuple[str, str, str]:
    """A statement as ``(name, PREPARE ..., EXECUTE ...)``: the PREPARE with ``$n`` for each
    ``%(name)s``, the EXECUTE with the same placeholders, in that order, to be bound."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    body = _PLACEHOLDER.sub(number, sql).replace("%%", "%")
    name = "pixhook_" + hashlib.sha256(sql.encode()).hexdigest()[:16]
    arguments = ", ".join(f"%({argument})s" for argument in names)
    return name, f"PREPARE {name} AS {body}", f"EXECUTE {name}({arguments})" if names else (
        f"EXECUTE {name}")


@dataclasses.dataclass
class Prepared:
    """The statements one connection has prepared (:meth:`PostgresTransaction.run_together`).

    ``PREPARE`` is not transactional: in a query that fails, those before the failure ran and
    those after did not. And psycopg sends ``DEALLOCATE ALL`` when it rolls a transaction
    back on a connection where it prepared statements of its own. So after anything failed on
    the connection ``known`` is false, and the names are read back from the server before the
    connection runs a statement of ours again.
    """

    names: set[str] = dataclasses.field(default_factory=set)
    known: bool = True


class PostgresTransaction:
    """A :class:`~service.store.connector.Transaction` on a pooled connection.

    With ``explicit`` the connection is in autocommit mode and the transaction is begun by the
    first :meth:`run_together` (``BEGIN`` rides with its statements instead of costing a round
    trip of its own, as psycopg's implicit one does) and committed by the last one.
    """

    def __init__(self, conn: Connection, notify: pgsql.Composed, *, explicit: bool = False,
                 prepared: Prepared | None = None) -> None:
        self._conn = conn
        self._notify = notify
        self._explicit = explicit
        self._begun = False
        self._prepared = Prepared() if prepared is None else prepared
        self.notified = False
        #: COMMIT was sent: if the connection fails now, the outcome is unknown.
        self.commit_sent = False

    async def run_together(self, statements: Sequence[tuple[str, Params]], *,
                           notify: bool = False, commit: bool = False) -> list[list[Row]]:
        """Run ``statements`` in order in one round trip and return each one's rows; with
        ``notify``, :meth:`notify_tasks` after them; with ``commit``, end the transaction. A
        failing statement fails the rest.

        They go as one query of the simple protocol, each statement prepared once per
        connection (``PREPARE``, then ``EXECUTE`` with its parameters bound as literals by
        psycopg's client-side binding, which quotes every value). Measured, that costs this
        process less than half of what psycopg's pipeline mode does for the same statements
        (which pays an event-loop turn per message), and the database no planning after the
        first time. Each statement still reads a snapshot of its own (READ COMMITTED).
        """
        conn, prepared = self._conn, self._prepared
        if not prepared.known:
            listed = await conn.execute(b"SELECT name FROM pg_prepared_statements")
            prepared.names = {row["name"] for row in await listed.fetchall()}
            prepared.known = True
        literal = psycopg.AsyncClientCursor(conn)
        parts = []
        skip = []  # result sets that answer no statement of the caller's
        if self._explicit and not self._begun:
            parts.append("BEGIN")
            skip.append(True)
            self._begun = True
        for sql, params in statements:
            name, prepare, execute = _prepared(sql)
            if name not in prepared.names:
                parts.append(prepare)
                skip.append(True)
                prepared.names.add(name)
            parts.append(literal.mogrify(execute, params))
            skip.append(False)
        if notify and not self.notified:
            parts.append(self._notify.as_string(conn))
            self.notified = True
        if commit:
            parts.append("COMMIT")
            self.commit_sent = True
        cursor = conn.cursor()
        try:
            await cursor.execute(";\n".join(parts).encode())  # no parameters: one query
        except BaseException:
            prepared.known = False  # which PREPAREs ran is not known
            raise
        results: list[list[Row]] = []
        for skipped in skip:
            if not skipped:
                # The status, not .description, which makes a Column object per column.
                rows = cursor.pgresult is not None and cursor.pgresult.status == _TUPLES_OK
                results.append(await cursor.fetchall() if rows else [])
            cursor.nextset()
        return results

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
    #: Two webhook batches at a time per process: while one waits for the database, the
    #: next is verified and decided here, so the two cores work side by side; webhooks that
    #: arrive while both are under way make the next batch larger. Measured with batches
    #: that start once they stop growing (bench_ingest --postgres, wrk -c16, 3 rounds each
    #: at a 1-minute load of 0.5-1.2): one at a time 1,957-2,209/s, two 2,374-2,627/s
    #: (three or four: 2,441-2,547/s), with less CPU per webhook here and in the database.
    #: (Before batches lingered, at a load of 5-8, one and two gave the same rate.)
    webhook_batches_in_flight: Final = 2

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
        #: What each pooled connection has prepared (gone with the connection).
        self._prepared: weakref.WeakKeyDictionary[Connection, Prepared] = (
            weakref.WeakKeyDictionary())
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
        # No check per checkout (a round trip each time): an operation that finds its
        # connection dropped (restart, failover, idle timeout) is run again (_run).
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.conninfo, connection_class=psycopg.AsyncConnection[DictRow],
            kwargs={"row_factory": dict_row}, min_size=self.min_size, max_size=self.max_size,
            open=False, configure=_configure, reset=_reset, timeout=self._pool_timeout,
            name="pixhook",
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

    async def _transaction(self, op: Callable[[PostgresTransaction], Awaitable[T]], *,
                           explicit: bool, last_try: bool) -> T:
        """``op`` on one pooled connection in one transaction: committed if it returns (unless
        it committed itself), rolled back if it raises. Driver errors come out as the store's
        own, but for :class:`_Dropped` when the connection turns out dropped before anything
        was committed and this is not the ``last_try``."""
        if self._pool is None:
            raise StoreClosedError("the store is not open")
        self._busy += 1
        self._idle.clear()
        try:
            async with self._pool.connection() as conn:
                if explicit:
                    await conn.set_autocommit(True)  # _reset turns it off again
                prepared = self._prepared.setdefault(conn, Prepared())
                tx = PostgresTransaction(conn, self._statement("NOTIFY"), explicit=explicit,
                                         prepared=prepared)
                try:
                    result = await op(tx)
                except psycopg.OperationalError as exc:
                    prepared.known = False  # rolled back (see Prepared)
                    # The server never committed a transaction whose connection it lost.
                    if conn.closed and not tx.commit_sent and not last_try:
                        raise _Dropped from exc
                    raise
                except BaseException:
                    prepared.known = False  # rolled back (see Prepared)
                    raise
            if tx.notified:
                self.tasks_ready.set()
            return result
        except psycopg.IntegrityError as exc:
            raise ConstraintError(str(exc)) from exc
        except psycopg.Error as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def _run(self, op: Callable[[PostgresTransaction], Awaitable[T]], *,
                   explicit: bool = False) -> T:
        """:meth:`_transaction`, once more if the server had dropped the connection: then the
        pool's other idle connections are likely gone too (a restart, a failover), so they
        are checked first."""
        try:
            return await self._transaction(op, explicit=explicit, last_try=False)
        except _Dropped as dropped:
            logger.info("a pooled connection was dropped (%s); retrying on another",
                        dropped.__cause__, extra={"action": "store_reconnect"})
            if self._pool is not None:
                await self._pool.check()
            return await self._transaction(op, explicit=explicit, last_try=True)

    async def write(self, op: Operation[T]) -> T:
        return await self._run(op)

    read = write  # READ COMMITTED: a read is a transaction like any other

    async def snapshot(self, op: Operation[T]) -> T:
        async def in_snapshot(tx: Transaction) -> T:
            await tx.execute(self.sql["begin_snapshot"])  # the transaction's first statement
            return await op(tx)

        return await self.write(in_snapshot)

    async def write_webhooks(self, webhooks: Sequence[Webhook], clock: Callable[[], float],
                             planner: TaskPlanner | None) -> list[WebhookIngest]:
        return await self._run(
            lambda tx: postgres_webhook_batch.write_batch(tx, self.sql, webhooks, clock,
                                                          planner),
            explicit=True)

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
