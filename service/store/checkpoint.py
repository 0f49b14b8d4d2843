"""WAL checkpoints for the SQLite writer, on a thread and a connection of their own.

The writer (:class:`~service.store.writer.LoopWriter`) turns SQLite's automatic checkpoints off,
so that a COMMIT on the event loop never copies pages into the database file and fsyncs it;
:class:`Checkpointer` does that work here instead.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Final

from sqlite_utils import Database

logger = logging.getLogger(__name__)

#: How often the checkpointer looks for committed pages to copy into the database file.
CHECKPOINT_INTERVAL: Final = 1.0
#: WAL frames (pages) past which a checkpoint also restarts the log: 16 MiB of 4 KiB pages.
RESTART_FRAMES: Final = 4096
#: How long a RESTART checkpoint keeps trying, and its pause between tries. The writer holds
#: its batches back meanwhile, so this is short: a reader on an old snapshot (a long scan)
#: also blocks RESTART, and then the checkpoint gives up until the next pass rather than
#: stall the writes.
RESTART_WAIT: Final = 0.1
RESTART_RETRY: Final = 0.0005


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class Checkpointer:
    """Copies committed WAL pages into the database file, on its own thread and connection.

    ``PASSIVE`` checkpoints never wait for the writer or readers and never make them wait; what
    a reader still needs stays in the WAL until the next pass. The writer calls
    :meth:`committed`; a pass runs at most every :data:`CHECKPOINT_INTERVAL` seconds and only
    after something was committed.

    Under writes that never pause, a passive pass never catches up with the end of the WAL, so
    SQLite never starts the log over and the file grows without bound (hundreds of MB in a
    minute of ``bench_ingest``). Once the WAL holds more than ``restart_frames`` frames, a pass
    is a ``RESTART`` checkpoint instead: it takes the write lock for the moment it needs (the
    writer on the loop retries meanwhile, it does not block) and lets the next write start the
    log from the beginning; ``journal_size_limit`` then shrinks the file.
    """

    def __init__(self, connect: Callable[[], Database], *,
                 interval: float = CHECKPOINT_INTERVAL,
                 restart_frames: int = RESTART_FRAMES) -> None:
        self._connect = connect
        self._interval = interval
        self._restart_frames = restart_frames
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set while a RESTART checkpoint waits for the write lock: the writer defers batches.
        self.wants_lock = False
        #: Passes run, WAL frames copied and RESTART checkpoints so far (tests, benchmarks).
        self.passes = 0
        self.frames = 0
        self.restarts = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pixhook-sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._dirty.set()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            db = self._connect()
            db.execute("PRAGMA busy_timeout = 0")  # _restart retries; never sleep in SQLite
        except Exception:  # noqa: BLE001 -- the WAL then grows until the next start
            logger.exception("the checkpointer could not connect; the WAL will not be "
                             "checkpointed", extra={"action": "store_checkpoint_failed"})
            return
        try:
            while not self._stopping.is_set():
                self._dirty.wait()
                if self._stopping.is_set():
                    break
                self._dirty.clear()
                self._checkpoint(db)
                self._stopping.wait(self._interval)
            self._checkpoint(db)  # what the last batches committed
        finally:
            db.close()

    def _checkpoint(self, db: Database) -> None:
        try:
            _, log_frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if log_frames > self._restart_frames and self._restart(db):
                self.restarts += 1
        except sqlite3.Error:
            logger.warning("WAL checkpoint failed; retrying on the next pass", exc_info=True,
                           extra={"action": "store_checkpoint_failed"})
            return
        self.passes += 1
        self.frames += max(0, copied)

    def _restart(self, db: Database) -> bool:
        """A RESTART checkpoint, with the writer holding back meanwhile; True if it ran.

        The writer on the loop starts a batch the moment the last one commits, so waiting for
        a gap (SQLite's busy handler) could wait forever; instead ``wants_lock`` asks the
        writer to defer its next batch, and the checkpoint is retried until it gets in."""
        self.wants_lock = True
        try:
            deadline = time.monotonic() + RESTART_WAIT
            while not self._stopping.is_set():
                try:
                    busy, _, _ = db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
                        raise
                    busy = 1
                if not busy:
                    return True
                if time.monotonic() > deadline:  # a long reader, say: next pass
                    return False
                time.sleep(RESTART_RETRY)
            return False
        finally:
            self.wants_lock = False
