"""The writer thread's batching and failure isolation, with batches made deterministic by
holding the writer busy while the next operations queue up."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from service.store.errors import ConstraintError, StorageError, StoreClosedError
from service.store.threads import ReaderPool, WriterThread


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


async def run_batch(writer: WriterThread, ops: list[Callable[[Database], Any]]) -> list[Any]:
    """Run ``ops`` as one batch: the writer is held until all of them are queued."""
    gate = threading.Event()
    hold = asyncio.ensure_future(writer.submit(lambda db: gate.wait(5)))
    await asyncio.sleep(0.05)  # the writer has taken the holding op and waits on the gate
    futures = [asyncio.ensure_future(writer.submit(op)) for op in ops]
    await asyncio.sleep(0)  # every submit has queued its request
    gate.set()
    await hold
    return await asyncio.gather(*futures, return_exceptions=True)


@pytest.fixture
async def writer(tmp_path: Path) -> Any:
    writer = WriterThread(connector(tmp_path / "t.db"), setup=setup)
    await writer.start()
    yield writer
    await writer.stop()


async def test_queued_writes_share_one_commit(writer: WriterThread, tmp_path: Path) -> None:
    batches = writer.stats.batches
    results = await run_batch(writer, [insert(f"v{i}") for i in range(40)])
    assert results == list(range(1, 41))
    assert writer.stats.batches - batches == 2  # the holding op, then all 40 together
    assert writer.stats.largest_batch == 40
    assert values(tmp_path / "t.db") == {f"v{i}" for i in range(40)}


async def test_a_failing_op_rolls_back_alone(writer: WriterThread, tmp_path: Path) -> None:
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


async def test_a_lost_transaction_fails_the_ops_it_took(
    writer: WriterThread, tmp_path: Path
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
    writer: WriterThread, tmp_path: Path
) -> None:
    gate = threading.Event()
    hold = asyncio.ensure_future(writer.submit(lambda db: gate.wait(5)))
    await asyncio.sleep(0.05)
    doomed = asyncio.ensure_future(writer.submit(insert("cancelled")))
    await asyncio.sleep(0)
    doomed.cancel()
    gate.set()
    await hold
    assert await writer.submit(insert("after")) == 2
    # The cancelled caller stopped waiting, but its write had been queued and still ran.
    assert values(tmp_path / "t.db") == {"cancelled", "after"}


async def test_setup_failure_is_reported_by_start(tmp_path: Path) -> None:
    def bad_setup(db: Database) -> None:
        db.execute("THIS IS NOT SQL")

    writer = WriterThread(connector(tmp_path / "t.db"), setup=bad_setup)
    with pytest.raises(StorageError, match="syntax error"):
        await writer.start()
    with pytest.raises(StoreClosedError):
        await writer.submit(insert("x"))


async def test_reader_pool_reads_off_the_loop(writer: WriterThread, tmp_path: Path) -> None:
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
