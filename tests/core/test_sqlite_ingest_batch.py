"""SQLite's set-based webhook ingest: a batch writes what its webhooks would one at a time.

Webhooks handed to :meth:`SQLiteStore.ingest_webhook` in the same loop turn are written by
:func:`service.store.sqlite_webhook_batch.write_batch` in a few multi-row statements. These tests
compare that with the same webhooks awaited one by one (each then a batch of one), row for
row, and check what a batch must not do: let one bad webhook fail the others, lose a bit of
a REAL column, or give rows other ids than SQLite would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from service.lifecycle import JobState, TransitionSource
from service.store import DeliveryOutcome, Job, StorageError
from service.store.sqlite import SQLiteStore
from tests.support.planner import Planner

from .conftest import FakeClock

FIRST_VIDEO = 384920175633408000
#: Timestamps with 17 significant digits: 15 (what SQLite's JSON prints) would change them.
ODD_TIME = 1_700_000_000.123456789


def _plan(job: Job, transition: Any) -> list[str]:
    """The stores' planner: tasks for what a webhook applied (setting the jobs up queues
    none)."""
    if transition.source is not TransitionSource.WEBHOOK:
        return []
    return ["download", "notify"] if transition.to_state is JobState.SUCCEEDED else ["notify"]


async def _jobs(store: SQLiteStore, count: int) -> list[Job]:
    jobs = []
    for index in range(count):
        job = await store.create_job(kind="text_to_video", params={"prompt": f"p{index}"})
        await store.update_job(job.id, video_id=FIRST_VIDEO + index)
        await store.apply_transition(job.id, JobState.GENERATING, source="submit",
                                     received_at=ODD_TIME + index / 7)
        jobs.append(job)
    return jobs


def _webhooks(count: int, seed: int) -> list[dict[str, Any]]:
    """A messy stream: repeats, reversals, replayed nonces, unknown videos."""
    rng = random.Random(seed)
    states = [JobState.GENERATING, JobState.SUCCEEDED, JobState.FAILED,
              JobState.MODERATION_FAILED]
    webhooks = []
    for index in range(count):
        nonce = f"n{index}" if rng.random() > 0.15 or not webhooks else rng.choice(
            webhooks)["nonce"]
        webhooks.append({
            "nonce": nonce,
            "video_id": FIRST_VIDEO + rng.randrange(count // 3 + 2),  # a few unknown
            "proposed": rng.choice(states),
            "received_at": ODD_TIME + rng.random() * 100,
            "timestamp": 1_700_000_000.0 + index,
        })
    return webhooks


def _ingest(store: SQLiteStore, webhook: dict[str, Any]) -> Any:
    body = (f'{{"id":"{webhook["video_id"]}","status":1,'
            f'"nonce":"{webhook["nonce"]}"}}').encode()
    return store.ingest_webhook(body=body, headers={"Webhook-Nonce": webhook["nonce"],
                                                    "Authorization": "secret"},
                                **webhook)


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a webhook can write, with job ids (random ULIDs) replaced by video ids."""
    conn = sqlite3.connect(path)
    try:
        video_of = dict(conn.execute("SELECT id, video_id FROM jobs"))

        def rows(sql: str, job_column: int | None) -> list[tuple[Any, ...]]:
            out = []
            for row in conn.execute(sql):
                row = list(row)
                if job_column is not None and row[job_column] is not None:
                    row[job_column] = video_of[row[job_column]]
                out.append(tuple(row))
            return out

        return {
            "jobs": rows("SELECT id, state, updated_at, state_changed_at, last_event_at, "
                         "next_poll_at FROM jobs ORDER BY video_id", 0),
            "deliveries": rows("SELECT * FROM webhook_deliveries ORDER BY id", 4),
            "nonces": rows("SELECT * FROM webhook_nonces ORDER BY nonce", None),
            "transitions": rows("SELECT * FROM transitions ORDER BY id", 1),
            "tasks": rows("SELECT id, job_id, transition_id, handler, state, run_after "
                          "FROM tasks ORDER BY id", 1),
        }
    finally:
        conn.close()


def _summary(result: Any) -> tuple[Any, ...]:
    """What an ingest handed back, minus the job id (a random ULID per store)."""
    delivery = result.delivery and dataclasses.replace(result.delivery, job_id=None)
    if result.transition is None:
        return result.outcome, delivery, None
    step = result.transition
    return (result.outcome, delivery, step.decision,
            dataclasses.replace(step.transition, job_id=""),
            [dataclasses.replace(task, job_id="", idempotency_key="") for task in step.tasks],
            dataclasses.replace(step.job, id="", trace_id=""))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_batch_writes_what_one_at_a_time_writes(tmp_path: Path, seed: int) -> None:
    webhooks = _webhooks(60, seed)
    outcomes = {}
    for mode in ("batched", "one_by_one"):
        path = tmp_path / f"{mode}.db"
        async with SQLiteStore(path, clock=FakeClock(), planner=_plan) as store:
            await _jobs(store, 20)
            batches_before = store.writer_stats.batches
            if mode == "batched":
                results = await asyncio.gather(*(_ingest(store, w) for w in webhooks))
                # One transaction held them all (the point of the exercise).
                assert store.writer_stats.batches - batches_before == 1
                assert (store.ingest_stats.batches, store.ingest_stats.operations,
                        store.ingest_stats.largest_batch) == (1, 60, 60)
            else:
                results = [await _ingest(store, w) for w in webhooks]
        outcomes[mode] = ([_summary(result) for result in results], _dump(path))
    batched, one_by_one = outcomes["batched"], outcomes["one_by_one"]
    assert batched[1] == one_by_one[1]
    assert batched[0] == one_by_one[0]
    kinds = {summary[0] for summary in batched[0]}
    assert kinds == {DeliveryOutcome.OK, DeliveryOutcome.ORPHAN, DeliveryOutcome.DUPLICATE}


async def test_returned_records_equal_what_is_read_back(sqlite_store: SQLiteStore) -> None:
    sqlite_store.bind(planner=_plan)
    jobs = await _jobs(sqlite_store, 5)
    webhooks = [{"nonce": f"n{i}", "video_id": FIRST_VIDEO + i % 5,
                 "proposed": JobState.SUCCEEDED, "received_at": ODD_TIME + i / 3,
                 "timestamp": ODD_TIME} for i in range(37)]  # chunks of 32 + 4 + 1
    results = await asyncio.gather(*(_ingest(sqlite_store, w) for w in webhooks))
    for result in results:
        assert result.delivery == await sqlite_store.get_webhook_delivery(result.delivery.id)
        assert "authorization" not in result.delivery.headers
        transition = result.transition.transition
        assert transition == await sqlite_store.get_transition(transition.id)
        for task in result.transition.tasks:
            assert task == await sqlite_store.get_task(task.id)
    # The last result per job is the job as stored, every float bit included.
    for job in jobs:
        last = [r for r in results if r.transition.job.id == job.id][-1]
        assert last.transition.job == await sqlite_store.get_job(job.id)
    assert sum(r.transition.applied for r in results) == 5
    assert [r.delivery.id for r in results] == list(range(1, 38))


async def test_one_bad_webhook_fails_alone(sqlite_store: SQLiteStore) -> None:
    planner = Planner(_plan)
    sqlite_store.bind(planner=planner)
    await _jobs(sqlite_store, 4)

    def broken(job: Job, transition: Any) -> list[str]:
        if job.video_id == FIRST_VIDEO + 2:  # the third webhook's job
            raise RuntimeError("planner bug")
        return _plan(job, transition)

    webhooks = [{"nonce": f"n{i}", "video_id": FIRST_VIDEO + i,
                 "proposed": JobState.SUCCEEDED, "received_at": ODD_TIME,
                 "timestamp": ODD_TIME} for i in range(4)]
    with planner.planning(broken):
        results = await asyncio.gather(*(_ingest(sqlite_store, w) for w in webhooks),
                                       return_exceptions=True)
    assert isinstance(results[2], RuntimeError)
    assert all(r.outcome is DeliveryOutcome.OK and r.transition.applied
               for i, r in enumerate(results) if i != 2)
    # Nothing of the failed webhook was kept: PixVerse's retry with its nonce goes through.
    retry = await _ingest(sqlite_store, webhooks[2])
    assert retry.outcome is DeliveryOutcome.OK and retry.transition.applied
    deliveries, _ = await sqlite_store.list_webhook_deliveries()
    assert len(deliveries) == 4


async def test_a_closed_store_refuses_webhooks(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    with pytest.raises(Exception, match="not open"):
        await _ingest(store, {"nonce": "n", "video_id": 1, "proposed": JobState.SUCCEEDED,
                              "received_at": 1.0, "timestamp": 1.0})


async def test_close_writes_webhooks_already_handed_in(db_path: Path) -> None:
    store = SQLiteStore(db_path, clock=FakeClock(), planner=_plan)
    await store.open()
    await _jobs(store, 3)
    webhooks = [{"nonce": f"n{i}", "video_id": FIRST_VIDEO + i, "proposed": JobState.SUCCEEDED,
                 "received_at": ODD_TIME, "timestamp": ODD_TIME} for i in range(3)]
    pending = [asyncio.ensure_future(_ingest(store, w)) for w in webhooks]
    await asyncio.sleep(0)  # handed in, not yet written
    await store.close()
    assert [p.result().outcome for p in pending] == [DeliveryOutcome.OK] * 3
    async with SQLiteStore(db_path) as reopened:
        deliveries, _ = await reopened.list_webhook_deliveries()
        assert len(deliveries) == 3


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


@pytest.mark.parametrize("turns", [2, 3], ids=["before_it_starts", "while_it_waits"])
async def test_a_cancelled_batch_answers_its_callers(sqlite_store: SQLiteStore,
                                                     turns: int) -> None:
    sqlite_store.bind(planner=_plan)
    await _jobs(sqlite_store, 2)
    webhooks = [{"nonce": f"n{i}", "video_id": FIRST_VIDEO + i, "proposed": JobState.SUCCEEDED,
                 "received_at": ODD_TIME, "timestamp": ODD_TIME} for i in range(2)]
    callers = [asyncio.ensure_future(_ingest(sqlite_store, w)) for w in webhooks]
    # Turn 1: the callers hand their webhooks in; 2: the batch task is made; 3: it runs and
    # waits for the writer.
    for _ in range(turns):
        await asyncio.sleep(0)
    (batch,) = sqlite_store._batches._writing
    batch.cancel()
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)
    assert all(isinstance(r, StorageError) and "interrupted" in str(r) for r in results)
