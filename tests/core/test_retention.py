"""Retention in the store, on both databases: the history of jobs finished before a cutoff
goes in small batches (task runs, tasks, transitions, deliveries); live jobs, recent ones and
ones with handler work left keep theirs; the database refuses to delete a live job's
history; nonces and keys go by age; SQLite files give the space back."""

from __future__ import annotations

import sqlite3

import pytest

from service.lifecycle import JobState
from service.store import Job, Store
from service.store.retention import PruneCounts
from tests.core.conftest import Backend, FakeClock, RawDatabase
from tests.support.history import fill_old_history
from tests.support.planner import Planner, plans

DAY = 86400.0


async def _finished_job(store: Store, planner: Planner, video_id: int, *,
                        run_task: bool = True) -> Job:
    """A job that went queued -> generating -> succeeded by webhook, with one download task
    (run once; with ``run_task`` false, failed and due again much later)."""
    job = await store.create_job(kind="text_to_video", params={"prompt": "x"})
    await store.update_job(job.id, video_id=video_id)
    planner.plan = plans()
    await store.apply_transition(job.id, JobState.GENERATING, source="submit")
    planner.plan = plans("download")
    nonce = f"n{video_id}"
    await store.ingest_webhook(body=b'{"status":1}', headers={}, nonce=nonce, timestamp=1.0,
                               received_at=2.0, video_id=video_id, proposed=JobState.SUCCEEDED)
    for task in await store.claim_tasks(store._clock(), limit=10, lease_seconds=60):
        if run_task:
            await store.complete_task(task.id, attempt=task.attempts, started_at=1.0)
        else:  # failed, to be retried long after the cutoff: still handler work left
            await store.fail_task(task.id, error="later", attempt=task.attempts,
                                  retry_at=store._clock() + 100 * DAY, started_at=1.0)
    return job


async def test_history_of_old_finished_jobs_is_pruned_in_batches(
        store: Store, planner: Planner, clock: FakeClock, raw: RawDatabase) -> None:
    store.bind(planner=planner)
    old = [await _finished_job(store, planner, 1000 + i) for i in range(3)]
    waiting = await _finished_job(store, planner, 2000, run_task=False)  # handler work left
    live = await store.create_job(kind="text_to_video", params={})
    clock.advance(20 * DAY)
    recent = await _finished_job(store, planner, 3000)
    clock.advance(20 * DAY)
    cutoff = clock.now - 30 * DAY
    history = {job.id: len(await store.list_transitions(job.id)) for job in old}

    counted = await store.count_prunable(finished_before=cutoff, nonces_before=0,
                                         keys_before=0, media_before=0)
    assert (counted.jobs, counted.transitions, counted.tasks, counted.task_runs,
            counted.deliveries) == (4, sum(history.values()) + 3, 4, 4, 4)

    first = await store.prune_history_batch(cutoff, limit=2)
    second = await store.prune_history_batch(cutoff, limit=2)
    assert (first.jobs, second.jobs) == (2, 1)  # the job with a pending task waits
    done = PruneCounts()
    done.add(first)
    done.add(second)
    assert (done.transitions, done.tasks, done.task_runs, done.deliveries) == \
        (sum(history.values()), 3, 3, 3)
    assert (await store.prune_history_batch(cutoff)).jobs == 0
    for job in old:
        kept = await store.get_job(job.id)
        assert kept is not None and kept.state is JobState.SUCCEEDED  # the row stays
        assert await store.list_transitions(job.id) == []
        assert await store.list_tasks(job_id=job.id) == []
    for job in (waiting, live, recent):
        assert await store.list_transitions(job.id), job.id
    assert raw.value("SELECT count(*) FROM webhook_deliveries") == 2  # waiting's, recent's
    # The event stream's log goes with the history it points at, and only that.
    assert done.events == sum(history.values()) + 3  # transitions and task runs
    for job in old:
        assert raw.value("SELECT count(*) FROM events WHERE job_id = ?", job.id) == 0
    for job in (waiting, live, recent):
        assert raw.value("SELECT count(*) FROM events WHERE job_id = ?", job.id) > 0


async def test_the_database_refuses_to_delete_a_live_jobs_history(
        store: Store, planner: Planner, raw: RawDatabase, backend: Backend) -> None:
    store.bind(planner=planner)
    live = await store.create_job(kind="text_to_video", params={})
    finished = await _finished_job(store, planner, 77)
    def execute(sql: str, *params: object) -> None:
        raw.conn.execute(sql.replace("?", raw._placeholder), params)

    with pytest.raises(Exception, match="append-only"):
        execute("DELETE FROM transitions WHERE job_id = ?", live.id)
    if backend.name == "sqlite":
        raw.conn.rollback()
    with pytest.raises(Exception, match="append-only"):
        execute("UPDATE transitions SET reason = 'x' WHERE job_id = ?", finished.id)
    if backend.name == "sqlite":
        raw.conn.rollback()
    # A finished job's history may go (retention's rule), once nothing points at it.
    execute("DELETE FROM task_runs")
    execute("DELETE FROM tasks")
    execute("DELETE FROM transitions WHERE job_id = ?", finished.id)
    assert raw.value("SELECT count(*) FROM transitions WHERE job_id = ?", live.id) == 1


async def test_nonces_and_keys_go_by_age_in_batches(store: Store, clock: FakeClock) -> None:
    for i in range(5):
        assert await store.claim_nonce(f"old{i}", None)
    clock.advance(1000)
    assert await store.claim_nonce("new", None)
    assert await store.prune_rows_batch("prune_nonces_batch", clock.now - 10, limit=2) == 2
    assert await store.prune_rows_batch("prune_nonces_batch", clock.now - 10, limit=10) == 3
    assert await store.prune_rows_batch("prune_nonces_batch", clock.now - 10) == 0
    assert not await store.claim_nonce("new", None)  # still remembered
    with pytest.raises(ValueError, match="not a row-by-row prune"):
        await store.prune_rows_batch("DROP TABLE jobs", 0)


async def test_sqlite_gives_the_space_back(backend: Backend, store: Store,
                                           raw: RawDatabase) -> None:
    fill_old_history(raw.conn if backend.name == "postgres" else _autocommit(backend),
                     postgres=backend.name == "postgres", jobs=2000, transitions_per_job=5,
                     finished_at=1.0)
    while (await store.prune_history_batch(2.0)).jobs:
        pass
    freed = await store.give_back_space(pages_per_batch=100)
    if backend.name == "postgres":
        assert freed == 0  # autovacuum's business there
        return
    assert raw.value("PRAGMA auto_vacuum") == 2  # new files are made for it
    assert freed > 100  # in several batches
    assert raw.value("PRAGMA freelist_count") == 0


def _autocommit(backend: Backend) -> sqlite3.Connection:
    return sqlite3.connect(backend.location, isolation_level=None)
