"""SQLite: pixhook's embedded default. The connector, and :class:`SQLiteStore` on top of it.

Connections: one write connection owned by a :class:`~service.store.writer.LoopWriter`
(group commit on the event loop, checkpoints on a thread of their own), plus read connections
on a :class:`~service.store.threads.ReaderPool`. An in-memory database (``:memory:``) exists
only inside its one connection, so there the writer serves reads as well. Operations never
suspend on a SQLite transaction, so each runs to its end inside the writer's batch or on a
reader thread (:func:`~service.store.connector.run_sync`).

Durability: WAL journal with ``synchronous=NORMAL``. A committed transaction survives a crash of
the process (the WAL is in the OS page cache); a power loss or kernel crash may lose the last
transactions before a checkpoint, but never corrupts the file. Losing the newest moments in a
power cut is tolerable here: PixVerse re-sends webhooks and the reconciler re-polls.

Another process sharing the file cannot wake this one's task runner: :meth:`wait_for_tasks`
sees only this process's commits, and the caller's timeout covers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlite_utils import Database

from service.store import sqlite_webhook_batch
from service.store.base import TransitionObserver
from service.store.connector import Operation, Params, Row, run_sync
from service.store.errors import StorageError, StoreClosedError
from service.store.records import TaskPlanner, WebhookIngest
from service.store.sql import queries
from service.store.store import Store
from service.store.threads import ReaderPool
from service.store.webhook_batch import Webhook
from service.store.writer import DEFAULT_MAX_BATCH, LoopWriter, WriterStats

T = TypeVar("T")

MEMORY: Final = ":memory:"
#: How long a write waits for another process's lock before failing, in seconds.
DEFAULT_BUSY_TIMEOUT_SECONDS: Final = 5.0
DEFAULT_READERS: Final = 4
#: The WAL file is truncated back to this size when it is reset after a checkpoint.
WAL_SIZE_LIMIT_BYTES: Final = 64 * 1024 * 1024
#: Oldest SQLite with STRICT tables (3.37) and RETURNING (3.35).
MIN_SQLITE_VERSION: Final = (3, 37, 0)
#: Prepared statements each connection keeps: sqlite3's default 128, plus room for the
#: webhook batch's multi-row statements.
STATEMENT_CACHE_SIZE: Final = 128 + sqlite_webhook_batch.STATEMENT_TEXTS


class SQLiteTransaction:
    """A :class:`~service.store.connector.Transaction` on a SQLite connection."""

    def __init__(self, db: Database) -> None:
        self._conn = db.conn
        self.notified = False

    async def fetch_all(self, sql: str, params: Params = {}) -> list[Row]:  # noqa: B006
        cursor = self._conn.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    async def fetch_one(self, sql: str, params: Params = {}) -> Row | None:  # noqa: B006
        rows = await self.fetch_all(sql, params)  # all: a RETURNING statement runs to its end
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Params = {}) -> int:  # noqa: B006
        return self._conn.execute(sql, params).rowcount

    async def execute_script(self, script: str) -> None:
        # Not executescript(), which would COMMIT the migration's transaction first.
        statement = ""
        for line in script.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                self._conn.execute(statement)
                statement = ""
        if statement.strip() and not statement.strip().startswith("--"):
            self._conn.execute(statement)

    async def lock(self, name: str) -> None:
        """Nothing to do: a write transaction holds SQLite's one write lock."""

    async def notify_tasks(self) -> None:
        self.notified = True


class SQLiteConnector:
    """One SQLite file: a loop writer for writes, a reader pool for reads."""

    dialect: Final = "sqlite"
    sql: Final = queries("sqlite")
    #: The one writer takes batches one after another anyway.
    webhook_batches_in_flight: Final = None

    def __init__(self, path: str, *, busy_timeout: float, readers: int,
                 max_batch: int) -> None:
        self.path = path
        self.memory = path == MEMORY
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._setup: Operation[Any] | None = None
        self._migrated: Any = None
        self.writer = LoopWriter(
            self._connect_writer, setup=self._run_setup, max_batch=max_batch,
            busy_timeout=busy_timeout,
            checkpoint=None if self.memory else self._connect_checkpointer)
        self._readers = None if self.memory else ReaderPool(self._connect_reader,
                                                            max_workers=readers)
        self.is_open = False
        #: Set when this process commits a task or revives one (see wait_for_tasks).
        self.tasks_ready = asyncio.Event()

    async def open(self, setup: Operation[Any]) -> Any:
        if self.is_open:
            return []
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise StorageError(
                f"SQLite {sqlite3.sqlite_version} is too old; pixhook needs "
                f"{'.'.join(map(str, MIN_SQLITE_VERSION))} or newer")
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._setup = setup
        await self.writer.start()
        self.is_open = True
        return self._migrated

    async def close(self) -> None:
        if not self.is_open:
            return
        self.is_open = False
        await self.writer.stop()
        if self._readers is not None:
            await self._readers.close()

    async def write(self, op: Operation[T]) -> T:
        if not self.is_open:
            raise StoreClosedError("the store is not open")

        def run(db: Database) -> tuple[T, bool]:
            tx = SQLiteTransaction(db)
            return run_sync(op(tx)), tx.notified  # type: ignore[arg-type]

        value, notified = await self.writer.submit(run)
        if notified:
            self.tasks_ready.set()
        return value

    async def read(self, op: Operation[T]) -> T:
        if not self.is_open:
            raise StoreClosedError("the store is not open")
        if self._readers is None:
            return await self.write(op)
        return await self._readers.run(
            lambda db: run_sync(op(SQLiteTransaction(db))))  # type: ignore[arg-type]

    async def snapshot(self, op: Operation[T]) -> T:
        if not self.is_open:
            raise StoreClosedError("the store is not open")
        if self._readers is None:
            return await self.write(op)  # one writer transaction is one moment already

        def in_snapshot(db: Database) -> T:
            # A reader runs in autocommit; BEGIN makes its statements share one WAL snapshot.
            db.execute("BEGIN")
            try:
                return run_sync(op(SQLiteTransaction(db)))  # type: ignore[arg-type]
            finally:
                db.execute("COMMIT")

        return await self._readers.run(in_snapshot)

    async def wait_for_tasks(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.tasks_ready.wait(), timeout)
        self.tasks_ready.clear()

    async def write_webhooks(self, webhooks: Sequence[Webhook], clock: Callable[[], float],
                             planner: TaskPlanner | None) -> list[WebhookIngest]:
        """One operation of the writer (sqlite_webhook_batch.py)."""
        if not self.is_open:
            raise StoreClosedError("the store is not open")
        return await self.writer.submit(
            lambda db: sqlite_webhook_batch.write_batch(db.conn, webhooks, clock(), planner))

    # -- connections -------------------------------------------------------------------------

    def _connection(self, *, check_same_thread: bool) -> Database:
        conn = sqlite3.connect(self.path, isolation_level=None,
                               check_same_thread=check_same_thread,
                               cached_statements=STATEMENT_CACHE_SIZE)
        db = Database(conn, recursive_triggers=False, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        db.execute("PRAGMA foreign_keys = ON")
        # After a burst the WAL file would keep its largest size; shrink it back on reset.
        db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        return db

    def _connect_writer(self) -> Database:
        # Opened on a thread by LoopWriter.start, then used on the event loop only.
        db = self._connection(check_same_thread=False)
        # Retention's freed pages go back to the file system (incremental_vacuum). This takes
        # effect only on a file with no tables yet, so it must come first; an older file
        # keeps its mode until `pixhook prune --vacuum` rebuilds it.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        if not self.memory:
            db.enable_wal()
        # With WAL, NORMAL skips the fsync per commit but stays crash-safe (module docstring).
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _connect_checkpointer(self) -> Database:
        return self._connection(check_same_thread=True)

    def _connect_reader(self) -> Database:
        # Closed by the pool from another thread at shutdown, hence check_same_thread=False.
        db = self._connection(check_same_thread=False)
        db.execute("PRAGMA query_only = ON")
        return db

    def _run_setup(self, db: Database) -> None:
        """The migrations, in one ``BEGIN IMMEDIATE`` transaction, so two processes opening
        the file at once cannot both apply one."""
        assert self._setup is not None
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            self._migrated = run_sync(self._setup(SQLiteTransaction(db)))  # type: ignore[arg-type]
            db.conn.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise


class SQLiteStore(Store):
    """The :class:`~service.store.Store` on one SQLite file.

    >>> store = SQLiteStore("pixhook.db")          # doctest: +SKIP
    >>> async with store:                           # doctest: +SKIP
    ...     job = await store.create_job(kind="text_to_video", params={"prompt": "a cat"})

    :param path: a file path, or ``":memory:"`` for a private in-memory database.
    :param clock: returns the time (epoch seconds) recorded as ``created_at`` and the like;
        tests pass a fake.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
                 readers: int = DEFAULT_READERS, max_batch: int = DEFAULT_MAX_BATCH,
                 planner: TaskPlanner | None = None, observer: TransitionObserver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.connector = SQLiteConnector(str(path), busy_timeout=busy_timeout, readers=readers,
                                         max_batch=max_batch)
        super().__init__(self.connector, planner=planner, observer=observer, clock=clock,
                         max_batch=max_batch)
        self.path = self.connector.path

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    @property
    def writer_stats(self) -> WriterStats:
        """Transactions and operations committed so far (group commit at work)."""
        return self.connector.writer.stats
