"""Off-loop SQLite access: one writer thread with group commit, and a pool of reader threads.

sqlite-utils is synchronous and SQLite allows one writer at a time, so every write goes through
:class:`WriterThread`, which owns the only write connection (Datasette's split: reads on executor
threads, writes through a single write thread). Callers on the event loop hand it a function and
await a future. The thread takes whatever operations are queued (up to ``max_batch``), runs each
in its own savepoint inside one ``BEGIN IMMEDIATE`` transaction, commits once, and only then
resolves the futures. Under load many webhooks share one commit (and one fsync of the WAL): that
is the way past the "commit per request in the event loop" ceiling. An operation that raises
rolls back to its savepoint, so it leaves nothing behind and does not disturb its batch-mates.

:class:`ReaderPool` runs read functions on a few threads, each with its own connection. In WAL
mode readers never wait for the writer, and since a write's future resolves only after COMMIT, a
read issued after ``await write(...)`` sees that write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from sqlite_utils import Database

from service.store.errors import StorageError, StoreClosedError, translate_sqlite_error

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Operations committed together at most; bounds how long the first one in a batch waits.
DEFAULT_MAX_BATCH: Final = 256


@dataclass(slots=True)
class _Request:
    op: Callable[[Database], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class WriterStats:
    """Counters for benchmarks and tests; written by the writer thread only."""

    #: Transactions committed (or attempted).
    batches: int = 0
    #: Operations run, successful or not.
    operations: int = 0
    #: The largest batch so far.
    largest_batch: int = 0


_STOP: Final = object()

#: A future to resolve, with the exception to set or (if that is ``None``) the result.
_Result = tuple[asyncio.Future[Any], BaseException | None, Any]


def _settle(results: list[_Result]) -> None:
    """Resolve futures on their loop. A caller that gave up (cancelled) is skipped."""
    for future, error, value in results:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


def _wrap(exc: BaseException) -> BaseException:
    translated = translate_sqlite_error(exc)
    if translated is not exc:
        translated.__cause__ = exc
    return translated


class WriterThread:
    """The single owner of the write connection. See the module docstring."""

    def __init__(
        self,
        connect: Callable[[], Database],
        *,
        setup: Callable[[Database], None] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        name: str = "pixhook-sqlite-writer",
    ) -> None:
        self._connect = connect
        self._setup = setup
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        # Guards ``_accepting`` together with the put, so nothing lands behind the stop marker.
        self._lock = threading.Lock()
        self._accepting = False
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        self.stats = WriterStats()

    async def start(self) -> None:
        """Start the thread; it connects and runs ``setup`` (pragmas, migrations) before any
        operation. Raises what connecting or ``setup`` raised."""
        if self._thread is not None:
            raise StorageError("the writer thread was already started")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), name=self._name, daemon=True
        )
        self._thread.start()
        await ready
        with self._lock:
            self._accepting = True

    async def submit(self, op: Callable[[Database], T]) -> T:
        """Run ``op`` in the next write transaction; return its result after COMMIT."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if not self._accepting:
                raise StoreClosedError("the store is not open")
            self._queue.put(_Request(op, future, loop))
        return await future

    async def stop(self) -> None:
        """Finish queued operations, then close the connection and end the thread."""
        with self._lock:
            if not self._accepting:
                return
            self._accepting = False
            self._queue.put(_STOP)
        assert self._stopped is not None
        await self._stopped

    # -- the thread ------------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            db = self._connect()
            try:
                if self._setup is not None:
                    self._setup(db)
            except BaseException:
                db.close()
                raise
        except BaseException as exc:  # noqa: BLE001 -- open() must hear of any failure
            failed: list[_Result] = [(ready, _wrap(exc), None)]
            loop.call_soon_threadsafe(_settle, failed)
            return
        started: list[_Result] = [(ready, None, None)]
        loop.call_soon_threadsafe(_settle, started)
        try:
            self._serve(db)
        finally:
            db.close()
            stopped = self._stopped
            assert stopped is not None
            done: list[_Result] = [(stopped, None, None)]
            try:
                loop.call_soon_threadsafe(_settle, done)
            except RuntimeError:  # the loop closed without waiting for us
                pass

    def _serve(self, db: Database) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, _Request)
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                assert isinstance(item, _Request)
                batch.append(item)
            self._commit(db, batch)

    def _commit(self, db: Database, batch: list[_Request]) -> None:
        self.stats.batches += 1
        self.stats.operations += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        outcomes: list[tuple[_Request, BaseException | None, Any]] = []
        try:
            db.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # busy beyond the timeout, disk trouble
            self._deliver([(request, _wrap(exc), None) for request in batch])
            return
        for request in batch:
            try:
                with db.atomic():  # a savepoint, since the transaction is open
                    value = request.op(db)
            except Exception as exc:  # noqa: BLE001 -- the op's caller gets whatever it raised
                if not db.conn.in_transaction:
                    # The error took the whole transaction with it (I/O error, disk full), and
                    # the batch-mates before this one with it; they fail too, then we go on.
                    lost = StorageError(f"transaction rolled back by a batch-mate: {exc}")
                    outcomes = [(r, e if e is not None else lost, None) for r, e, _ in outcomes]
                    outcomes.append((request, _wrap(exc), None))
                    try:
                        db.conn.execute("BEGIN IMMEDIATE")
                    except sqlite3.Error as begin_exc:
                        rest = batch[len(outcomes):]
                        outcomes += [(r, _wrap(begin_exc), None) for r in rest]
                        self._deliver(outcomes)
                        return
                    continue
                outcomes.append((request, _wrap(exc), None))
            else:
                outcomes.append((request, None, value))
        try:
            db.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            failed = _wrap(exc)
            outcomes = [(r, e if e is not None else failed, None) for r, e, _ in outcomes]
        self._deliver(outcomes)

    def _deliver(self, outcomes: list[tuple[_Request, BaseException | None, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        for request, error, value in outcomes:
            by_loop.setdefault(request.loop, []).append((request.future, error, value))
        for loop, results in by_loop.items():
            try:
                # One wake-up per loop per batch, not one per operation.
                loop.call_soon_threadsafe(_settle, results)
            except RuntimeError:  # that loop is closed; nobody is waiting any more
                logger.warning("dropping %d write results for a closed event loop",
                               len(results), extra={"action": "store_write_orphaned"})


@dataclass(slots=True)
class _ReaderState:
    local: threading.local = field(default_factory=threading.local)
    connections: list[Database] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReaderPool:
    """A few threads, each with its own read-only connection, for reads off the event loop."""

    def __init__(
        self,
        connect: Callable[[], Database],
        *,
        max_workers: int = 4,
        name: str = "pixhook-sqlite-read",
    ) -> None:
        self._connect = connect
        self._state = _ReaderState()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=name
        )
        self._closed = False

    def _db(self) -> Database:
        db: Database | None = getattr(self._state.local, "db", None)
        if db is None:
            db = self._connect()
            self._state.local.db = db
            with self._state.lock:
                self._state.connections.append(db)
        return db

    def _call(self, op: Callable[[Database], T]) -> T:
        try:
            return op(self._db())
        except Exception as exc:
            translated = translate_sqlite_error(exc)
            if translated is exc:
                raise
            raise translated from exc

    async def run(self, op: Callable[[Database], T]) -> T:
        if self._closed:
            raise StoreClosedError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, op)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, True)
        with self._state.lock:
            for db in self._state.connections:
                db.close()
            self._state.connections.clear()
