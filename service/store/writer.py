"""SQLite writes: one write connection, used on the event loop, with group commit.

SQLite allows one writer at a time, so every write of a :class:`~service.store.sqlite.SQLiteStore`
goes through :class:`LoopWriter`, which owns the only write connection. A caller hands it a
function and awaits the result. Functions handed in during one turn of the event loop are
run together, each in its own savepoint inside one ``BEGIN IMMEDIATE`` transaction with one
``COMMIT``; only then are the callers answered. Under load many webhooks share one commit, and a
function that raises rolls back to its savepoint, so it leaves nothing behind and does not
disturb its batch-mates.

Why on the loop and not on a writer thread: pixhook's writes are short statements whose cost is
mostly Python (binding, building records), which holds the GIL on any thread. Handing each one
to a thread added the handoffs on top: measured with ``scripts/profile_ingest``, a writer
thread cost 713-786 us of CPU per webhook against 420-550 us on the loop (docs/benchmarks.md).
Webhook batches are now set-based (:mod:`service.store.sqlite_ingest`), and even those lost on a
thread: the process spent 317 us per webhook against about 170 us on one thread.
What could block the loop for long is kept off it:

* **Waiting for the write lock.** Another process (``pixhook worker`` beside ``pixhook web``)
  may hold it. The connection's busy timeout is 0 while serving; a busy ``BEGIN IMMEDIATE`` is
  retried with ``loop.call_later``, backing off from 1 ms, and the batch fails with
  :class:`~service.store.errors.StorageError` once ``busy_timeout`` has passed.
* **Checkpoints**, which copy the WAL into the database file and fsync it. Automatic
  checkpoints are off on this connection; :class:`Checkpointer` runs them on its own thread and
  connection (``PASSIVE``, or ``RESTART`` once the WAL is long, during which the writer's
  batches wait by retrying, as for any other lock holder).
* **Connecting and migrating** happen on a thread at :meth:`LoopWriter.start`.

With WAL and ``synchronous=NORMAL`` a commit does not fsync, so what is left on the loop is the
CPU the writes themselves take: a batch of ``max_batch`` webhooks is a few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlite_utils import Database

from service.store.checkpoint import Checkpointer, is_busy
from service.store.errors import StorageError, StoreClosedError, translate_sqlite_error

T = TypeVar("T")

#: Operations committed together at most; bounds how long one batch holds the loop.
DEFAULT_MAX_BATCH: Final = 256
#: The first and the longest pause between attempts to take a busy write lock, in seconds.
BUSY_RETRY_FIRST: Final = 0.001
BUSY_RETRY_MAX: Final = 0.05
@dataclass(slots=True)
class WriterStats:
    """Counters for benchmarks and tests."""

    #: Transactions committed (or attempted).
    batches: int = 0
    #: Operations run, successful or not.
    operations: int = 0
    #: The largest batch so far.
    largest_batch: int = 0
    #: Times ``BEGIN IMMEDIATE`` found another connection holding the write lock.
    busy_retries: int = 0

    def count(self, size: int) -> None:
        """One more batch of ``size`` operations."""
        self.batches += 1
        self.operations += size
        self.largest_batch = max(self.largest_batch, size)


@dataclass(slots=True)
class _Request:
    op: Callable[[Database], Any]
    future: asyncio.Future[Any]


def _wrap(exc: BaseException) -> BaseException:
    translated = translate_sqlite_error(exc)
    if translated is not exc:
        translated.__cause__ = exc
    return translated


def settle(future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
    """Answer a waiting caller, unless it has given up."""
    if future.done():  # the caller gave up (cancelled); its write still ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class LoopWriter:
    """The single owner of the write connection. See the module docstring.

    :param connect: opens the write connection (called on a thread, so it must be made with
        ``check_same_thread=False``).
    :param setup: run once on that connection before anything else (pragmas, migrations).
    :param busy_timeout: how long a batch may wait for another process's write lock.
    :param checkpoint: open a second connection for :class:`Checkpointer` (``None`` for a
        database without a WAL, such as ``:memory:``).
    """

    def __init__(
        self,
        connect: Callable[[], Database],
        *,
        setup: Callable[[Database], None] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        busy_timeout: float = 5.0,
        checkpoint: Callable[[], Database] | None = None,
    ) -> None:
        self._connect = connect
        self._setup = setup
        self._max_batch = max_batch
        self._busy_timeout = busy_timeout
        self._db: Database | None = None
        self._pending: list[_Request] = []
        self._flush_scheduled = False
        self._idle: asyncio.Event | None = None
        self.checkpointer = Checkpointer(checkpoint) if checkpoint is not None else None
        self.stats = WriterStats()

    async def start(self) -> None:
        """Connect and run ``setup`` (on a thread); raises what either raised."""
        if self._db is not None:
            raise StorageError("the writer was already started")

        def open_connection() -> Database:
            db = self._connect()
            try:
                if self._setup is not None:
                    self._setup(db)
                if self.checkpointer is not None:
                    # Checkpoints run on the checkpointer's thread, never inside a COMMIT here.
                    db.execute("PRAGMA wal_autocheckpoint = 0")
                # Never sleep inside SQLite on the loop; _flush retries a busy lock instead.
                db.execute("PRAGMA busy_timeout = 0")
            except BaseException:
                db.close()
                raise
            return db

        try:
            self._db = await asyncio.to_thread(open_connection)
        except Exception as exc:
            raise _wrap(exc) from None
        self._idle = asyncio.Event()
        self._idle.set()
        if self.checkpointer is not None:
            self.checkpointer.start()

    async def submit(self, op: Callable[[Database], T]) -> T:
        """Run ``op`` in the next write transaction; return its result after COMMIT."""
        if self._db is None:
            raise StoreClosedError("the store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Request(op, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # call_soon, not now: the other requests this loop turn has ready join the batch.
            loop.call_soon(self._flush, loop, None)
        return await future

    async def stop(self) -> None:
        """Let queued operations commit, then close the connection."""
        if self._db is None:
            return
        while self._pending or self._flush_scheduled:
            assert self._idle is not None
            self._idle.clear()
            await self._idle.wait()
        db, self._db = self._db, None
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.stop)
        db.close()

    # -- a batch -----------------------------------------------------------------------------

    def _flush(self, loop: asyncio.AbstractEventLoop, busy_since: float | None) -> None:
        self._flush_scheduled = False
        db = self._db
        if db is None or not self._pending:
            self._became_idle()
            return
        if self.checkpointer is not None and self.checkpointer.wants_lock:
            # A RESTART checkpoint is waiting for the lock; let it in (a few milliseconds).
            self._flush_scheduled = True
            loop.call_later(BUSY_RETRY_FIRST, self._flush, loop, busy_since)
            return
        try:
            db.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                self._retry_when_free(loop, busy_since, exc)
                return
            self._fail_pending(_wrap(exc))
            return
        except sqlite3.Error as exc:
            self._fail_pending(_wrap(exc))
            return
        batch, self._pending = self._pending[:self._max_batch], self._pending[self._max_batch:]
        try:
            self._run(db, batch)
        except BaseException as exc:
            # Not an operation's ordinary failure (those are answered in _run) but something
            # like KeyboardInterrupt inside one: leave no transaction open, no caller waiting.
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            lost = StorageError(f"write interrupted: {exc!r}")
            for request in batch:
                settle(request.future, lost, None)
            raise
        if self._pending:
            self._flush_scheduled = True
            loop.call_soon(self._flush, loop, None)
        else:
            self._became_idle()

    def _retry_when_free(self, loop: asyncio.AbstractEventLoop, busy_since: float | None,
                         exc: sqlite3.Error) -> None:
        self.stats.busy_retries += 1
        now = time.monotonic()
        started = now if busy_since is None else busy_since
        waited = now - started
        if waited >= self._busy_timeout:
            self._fail_pending(_wrap(exc))
            return
        pause = min(BUSY_RETRY_MAX, max(BUSY_RETRY_FIRST, waited / 2))
        self._flush_scheduled = True
        loop.call_later(pause, self._flush, loop, started)

    def _fail_pending(self, error: BaseException) -> None:
        pending, self._pending = self._pending, []
        for request in pending:
            settle(request.future, error, None)
        self._became_idle()

    def _became_idle(self) -> None:
        if self._idle is not None and not self._pending:
            self._idle.set()

    def _run(self, db: Database, batch: list[_Request]) -> None:
        """Run ``batch`` inside the open transaction, commit, answer every caller."""
        self.stats.count(len(batch))
        outcomes: list[tuple[_Request, BaseException | None, Any]] = []
        # A lone operation needs no savepoint: if it fails, the whole transaction goes.
        isolate = len(batch) > 1
        for index, request in enumerate(batch):
            try:
                if isolate:
                    with _savepoint(db):
                        value = request.op(db)
                else:
                    value = request.op(db)
            except Exception as exc:  # noqa: BLE001 -- the op's caller gets whatever it raised
                if not isolate:
                    if db.conn.in_transaction:
                        db.conn.execute("ROLLBACK")
                    settle(request.future, _wrap(exc), None)
                    return
                if not db.conn.in_transaction:
                    # The error took the whole transaction with it (I/O error, disk full), and
                    # the batch-mates before this one with it; they fail too, then we go on.
                    lost = StorageError(f"transaction rolled back by a batch-mate: {exc}")
                    outcomes = [(r, e if e is not None else lost, None) for r, e, _ in outcomes]
                    outcomes.append((request, _wrap(exc), None))
                    try:
                        db.conn.execute("BEGIN IMMEDIATE")
                    except sqlite3.Error as begin_exc:
                        outcomes += [(r, _wrap(begin_exc), None) for r in batch[index + 1:]]
                        break
                    continue
                outcomes.append((request, _wrap(exc), None))
            else:
                outcomes.append((request, None, value))
        if db.conn.in_transaction:
            try:
                db.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.conn.in_transaction:
                    db.conn.execute("ROLLBACK")
                failed = _wrap(exc)
                outcomes = [(r, e if e is not None else failed, None) for r, e, _ in outcomes]
        if self.checkpointer is not None:
            self.checkpointer.committed()
        for request, error, value in outcomes:
            settle(request.future, error, value)


@contextlib.contextmanager
def _savepoint(db: Database) -> Iterator[None]:
    """One operation's savepoint. The name is fixed (SQLite allows nesting one name): the
    random names of ``Database.atomic()`` made every batch-mate prepare two new statements and
    pushed the real ones out of sqlite3's statement cache."""
    db.conn.execute("SAVEPOINT pixhook_op")
    try:
        yield
    except BaseException:
        # An error such as disk full may have ended the whole transaction, savepoint included.
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK TO pixhook_op")
            db.conn.execute("RELEASE pixhook_op")
        raise
    db.conn.execute("RELEASE pixhook_op")
