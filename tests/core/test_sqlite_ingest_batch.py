"""SQLite's set-based webhook write: what only SQLite's statements have to get right.

What every batch must do on both databases (write what one-at-a-time writes, one bad webhook
failing alone, ...) is tested in ``test_webhook_batch.py``. Here: the multi-row statements,
cut in power-of-two chunks and never longer than SQLite allows, whatever the batch size.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.lifecycle import JobState
from service.store import DeliveryOutcome
from service.store.sqlite import SQLiteStore

from .conftest import FakeClock
from .test_webhook_batch import FIRST_VIDEO, ODD_TIME, _ingest, _jobs, _plan


def test_chunks_are_powers_of_two_and_bounded() -> None:
    from service.store.sqlite_webhook_batch import MAX_ROWS_PER_STATEMENT, _chunks

    rows = [(i,) for i in range(37)]
    assert [len(c) for c in _chunks(rows)] == [32, 4, 1]
    assert [row for chunk in _chunks(rows) for row in chunk] == rows
    big = [(i,) for i in range(MAX_ROWS_PER_STATEMENT * 2 + 3)]
    assert [len(c) for c in _chunks(big)] == [MAX_ROWS_PER_STATEMENT] * 2 + [2, 1]
    assert list(_chunks([])) == []


async def test_a_batch_larger_than_one_statement(db_path: Path) -> None:
    async with SQLiteStore(db_path, clock=FakeClock(), max_batch=1000,
                           planner=_plan) as store:
        await _jobs(store, 2)
        webhooks = [{"nonce": f"n{i}", "video_id": FIRST_VIDEO + i % 700,
                     "proposed": JobState.SUCCEEDED, "received_at": ODD_TIME,
                     "timestamp": ODD_TIME} for i in range(700)]  # 698 orphans
        results = await asyncio.gather(*(_ingest(store, w) for w in webhooks))
        assert sum(r.outcome is DeliveryOutcome.ORPHAN for r in results) == 698
        assert [r.delivery.id for r in results] == list(range(1, 701))
