"""The SQLite writer's group commit, failure isolation, lock waiting and checkpoints, and the
reader pool. Operations handed in during one loop turn form one batch, so a batch is made by
starting every submit before awaiting any."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from service.store.errors import ConstraintError, StorageError, StoreClosedError
from service.store.threads import ReaderPool
from service.store.writer import Checkpointer, LoopWriter


def connector(path: Path) -> Callable[[], Database]:
    def connect() -> Database:
        db = Database(sqlite3.connect(path, isolation_level=None, check_same_thread=False),
                      execute_plugins=False)
        db.enable_wal()
        return db

    return connect


def setup(db: Database) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")


def insert(value: str) -> Callable[[Database], int]:
    def op(db: Database) -> int:
        cursor = db.execute("INSERT INTO t (v) VALUES (?)", [value])
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    return op


class Boom(Exception):
    pass


def values(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT v FROM t")}
    finally:
        conn.close()


async def run_batch(writer: LoopWriter, ops: list[Callable[[Database], Any]]) -> list[Any]:
    """Run ``ops`` as one batch: every submit is queued before the writer's turn comes."""
    return await asyncio.gather(*(writer.submit(op) for op in ops), return_exceptions=True)


def make_writer(path: Path, **options: Any) -> LoopWriter:
    return LoopWriter(connector(path), setup=setup, checkpoint=connector(path), **options)


@pytest.fixture
async def writer(tmp_path: Path) -> Any:
    writer = make_writer(tmp_path / "t.db")
    await writer.start()
    yield writer
    await writer.stop()


async def test_writes_handed_in_together_share_one_commit(
    writer: LoopWriter, tmp_path: Path
) -> None:
    batches = writer.stats.batches
    results = await run_batch(writer, [insert(f"v{i}") for i in range(40)])
    assert results == list(range(1, 41))
    assert writer.stats.batches - batches == 1
    assert writer.stats.largest_batch == 40
    assert values(tmp_path / "t.db") == {f"v{i}" for i in range(40)}


async def test_max_batch_splits_a_long_queue(tmp_path: Path) -> None:
    writer = make_writer(tmp_path / "t.db", max_batch=16)
    await writer.start()
    try:
        results = await run_batch(writer, [insert(f"v{i}") for i in range(40)])
    finally:
        await writer.stop()
    assert results == list(range(1, 41))
    assert writer.stats.batches == 3 and writer.stats.largest_batch == 16


async def test_a_failing_op_rolls_back_alone(writer: LoopWriter, tmp_path: Path) -> None:
    def half_then_fail(db: Database) -> None:
        db.execute("INSERT INTO t (v) VALUES ('half')")
        raise Boom

    results = await run_batch(writer, [insert("a"), half_then_fail, insert("a"), insert("b")])
    assert results[0] == 1
    assert isinstance(results[1], Boom)
    assert isinstance(results[2], ConstraintError)  # translated from sqlite3.IntegrityError
    assert isinstance(results[2].__cause__, sqlite3.IntegrityError)
    assert results[3] == 2
    assert values(tmp_path / "t.db") == {"a", "b"}


async def test_a_lone_failing_op_leaves_nothing(writer: LoopWriter, tmp_path: Path) -> None:
    def half_then_fail(db: Database) -> None:
        db.execute("INSERT INTO t (v) VALUES ('half')")
        raise Boom

    with pytest.raises(Boom):
        await writer.submit(half_then_fail)
    assert await writer.submit(insert("after")) == 1
    assert values(tmp_path / "t.db") == {"after"}


async def test_a_lost_transaction_fails_the_ops_it_took(
    writer: LoopWriter, tmp_path: Path
) -> None:
    def lose_the_transaction(db: Database) -> None:
        db.conn.execute("ROLLBACK")  # what an I/O error or RAISE(ROLLBACK) would do
        raise Boom

    results = await run_batch(writer, [insert("a"), lose_the_transaction, insert("b")])
    assert isinstance(results[0], StorageError) and "batch-mate" in str(results[0])
    assert isinstance(results[1], Boom)
    assert isinstance(results[2], int)
    assert values(tmp_path / "t.db") == {"b"}


async def test_a_cancelled_caller_does_not_break_the_writer(
    writer: LoopWriter, tmp_path: Path
) -> None:
    doomed = asyncio.ensure_future(writer.submit(insert("cancelled")))
    await asyncio.sleep(0)  # the submit has queued its request
    doomed.cancel()
    assert await writer.submit(insert("after")) == 2
    # The cancelled caller stopped waiting, but its write had been queued and still ran.
    assert values(tmp_path / "t.db") == {"cancelled", "after"}


async def test_waiting_for_another_process_lock_does_not_block_the_loop(
    writer: LoopWriter, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    write = asyncio.ensure_future(writer.submit(insert("waited")))
    await asyncio.sleep(0.3)
    assert not write.done()
    assert ticks >= 20  # the loop kept running meanwhile
    other.execute("COMMIT")
    other.close()
    assert await asyncio.wait_for(write, 2) == 1
    ticking.cancel()
    assert writer.stats.busy_retries > 0
    assert values(tmp_path / "t.db") == {"waited"}


async def test_a_lock_held_past_the_busy_timeout_fails_the_batch(tmp_path: Path) -> None:
    writer = make_writer(tmp_path / "t.db", busy_timeout=0.2)
    await writer.start()
    other = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        results = await run_batch(writer, [insert("a"), insert("b")])
        assert 0.2 <= time.monotonic() - started < 2
        assert all(isinstance(r, StorageError) and "locked" in str(r) for r in results)
        other.execute("COMMIT")
        assert await writer.submit(insert("c")) == 1  # the writer carries on
    finally:
        other.close()
        await writer.stop()
    assert values(tmp_path / "t.db") == {"c"}


async def test_checkpoints_run_off_the_writer_connection(
    writer: LoopWriter, tmp_path: Path
) -> None:
    autocheckpoint = await writer.submit(
        lambda db: db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    assert autocheckpoint == 0  # no checkpoint inside a COMMIT on the loop
    await run_batch(writer, [insert(f"v{i}") for i in range(50)])
    checkpointer = writer.checkpointer
    assert checkpointer is not None
    deadline = time.monotonic() + 5
    while checkpointer.frames == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert checkpointer.frames > 0


async def test_stop_lets_queued_writes_commit(tmp_path: Path) -> None:
    writer = make_writer(tmp_path / "t.db")
    await writer.start()
    pending = [asyncio.ensure_future(writer.submit(insert(f"v{i}"))) for i in range(5)]
    await asyncio.sleep(0)
    await writer.stop()
    assert [p.result() for p in pending] == [1, 2, 3, 4, 5]
    with pytest.raises(StoreClosedError):
        await writer.submit(insert("late"))


async def test_setup_failure_is_reported_by_start(tmp_path: Path) -> None:
    def bad_setup(db: Database) -> None:
        db.execute("THIS IS NOT SQL")

    writer = LoopWriter(connector(tmp_path / "t.db"), setup=bad_setup)
    with pytest.raises(StorageError, match="syntax error"):
        await writer.start()
    with pytest.raises(StoreClosedError):
        await writer.submit(insert("x"))


async def test_reader_pool_reads_off_the_loop(writer: LoopWriter, tmp_path: Path) -> None:
    await writer.submit(insert("a"))
    pool = ReaderPool(connector(tmp_path / "t.db"), max_workers=2)
    names = await asyncio.gather(*(
        pool.run(lambda db: threading.current_thread().name) for _ in range(8)))
    assert all(name.startswith("pixhook-sqlite-read") for name in names)
    assert await pool.run(lambda db: db.execute("SELECT v FROM t").fetchall()) == [("a",)]
    with pytest.raises(StorageError, match="no such table"):
        await pool.run(lambda db: db.execute("SELECT * FROM missing"))
    await pool.close()
    with pytest.raises(StoreClosedError):
        await pool.run(lambda db: None)


async def test_an_interrupted_batch_leaves_no_transaction_and_no_caller_waiting(
    writer: LoopWriter, tmp_path: Path
) -> None:
    class Interrupt(BaseException):
        """Not an Exception, like KeyboardInterrupt (which would stop the test run itself)."""

    def interrupt(db: Database) -> None:
        db.execute("INSERT INTO t (v) VALUES ('half')")
        raise Interrupt

    loop = asyncio.get_running_loop()
    seen: list[BaseException] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context["exception"]))
    try:
        results = await run_batch(writer, [insert("a"), interrupt])
    finally:
        loop.set_exception_handler(None)
    assert all(isinstance(r, StorageError) and "interrupted" in str(r) for r in results)
    assert seen and isinstance(seen[0], Interrupt)  # reported, not swallowed
    assert await writer.submit(insert("after")) == 1  # the rolled-back ids are free again
    assert values(tmp_path / "t.db") == {"after"}


async def test_the_wal_starts_over_under_writes_that_never_pause(tmp_path: Path) -> None:
    """Passive checkpoints alone never catch up with a writer that never pauses, and the WAL
    grows without bound; past ``restart_frames`` the checkpointer restarts the log."""
    path = tmp_path / "t.db"
    writer = make_writer(path)
    def checkpoint_connection() -> Database:
        db = connector(path)()
        db.execute("PRAGMA busy_timeout = 5000")  # as the store's: RESTART waits for a batch
        return db

    writer.checkpointer = Checkpointer(checkpoint_connection, interval=0.02,
                                       restart_frames=100)
    await writer.start()
    page = "x" * 4000  # about one page per row
    batches = 0
    largest_wal = 0
    try:
        # Enough writes to tell (a loaded machine writes slower), for long enough that the
        # checkpointer gets several turns (a quiet one writes 9 MiB before its first), within a
        # generous bound.
        started = time.monotonic()
        while ((batches * 10 * 4096 <= 9 * 1024 * 1024 or time.monotonic() < started + 2)
               and time.monotonic() < started + 15):
            await run_batch(writer, [insert(f"{batches}-{i}-{page}") for i in range(10)])
            batches += 1
            largest_wal = max(largest_wal, (tmp_path / "t.db-wal").stat().st_size)
    finally:
        await writer.stop()
    assert writer.checkpointer.restarts >= 1
    written = batches * 10 * 4096  # at least this much went through the WAL
    assert written > 8 * 1024 * 1024, "too few writes to tell"
    assert largest_wal < written / 4, (largest_wal, written)
    assert len(values(path)) == batches * 10


async def test_a_long_reader_does_not_stall_the_writer_behind_a_restart(tmp_path: Path) -> None:
    """A reader on an old snapshot blocks RESTART; the checkpointer gives up quickly instead of
    holding the writer back."""
    path = tmp_path / "t.db"
    writer = make_writer(path)
    writer.checkpointer = Checkpointer(connector(path), interval=0.02, restart_frames=10)
    await writer.start()
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        await run_batch(writer, [insert(f"seed{i}-{'x' * 4000}") for i in range(20)])
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()  # holds this snapshot open
        slowest = 0.0
        deadline = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            await writer.submit(insert(f"w{i}-{'x' * 4000}"))
            slowest = max(slowest, time.monotonic() - started)
            i += 1
        # RESTART_WAIT is 0.1 s; a writer stalled behind the reader would wait the whole
        # second the reader holds its snapshot (0.5 failed once under a full suite's load).
        assert slowest < 0.9, slowest
        assert writer.checkpointer.restarts == 0  # it could not, with the reader there
        reader.execute("COMMIT")
    finally:
        reader.close()
        await writer.stop()
