"""SQLite reads off the event loop: a pool of reader threads, each with its own connection.

In WAL mode readers never wait for the writer (:class:`~service.store.writer.LoopWriter`), and
since a write's future resolves only after COMMIT, a read issued after ``await write(...)`` sees
that write. Reads can be long (listing pages, the reconciler's scan), so unlike the short writes
they run on threads (Datasette's split).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlite_utils import Database

from service.store.errors import StoreClosedError, translate_sqlite_error

T = TypeVar("T")

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
