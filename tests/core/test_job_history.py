"""``Store.job_history``: a job, its transitions and its tasks read at one moment, on both
backends. Separate reads could catch a commit between them: a handler's task succeeded
beside a job still without the video the handler recorded first, or a job's new state beside
a history that lacks the row that set it (the race ``GET /api/jobs/{id}`` had)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.lifecycle import JobState
from service.store import Store, TaskState
from service.store.connector import Operation, Transaction
from tests.core.conftest import Backend, FakeClock, RawDatabase
from tests.support.planner import Planner, plans

T2V = {"prompt": "a lantern over a lake", "model": "v6", "duration": 5, "quality": "540p"}


def _between_reads(store: Store, monkeypatch: pytest.MonkeyPatch,
                   commit: Callable[[], None]) -> None:
    """Run ``commit`` (another connection's writes) after the view has read the job and
    before it reads the tasks."""
    read_tasks = store._tasks

    def tasks(**query: Any) -> Operation[Any]:
        op = read_tasks(**query)

        async def after_a_commit(tx: Transaction) -> Any:
            commit()
            return await op(tx)

        return after_a_commit

    monkeypatch.setattr(store, "_tasks", tasks)


@pytest.fixture
def other_connection(backend: Backend) -> Iterator[RawDatabase]:
    """Another process's connection, usable from the store's reader thread."""
    raw = (RawDatabase(sqlite3.connect(backend.location, check_same_thread=False), "?")
           if backend.name == "sqlite" else backend.raw())
    try:
        yield raw
    finally:
        raw.close()


async def test_a_handler_finishing_mid_read_is_seen_whole_or_not_at_all(
        store: Store, planner: Planner, other_connection: RawDatabase, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    raw = other_connection
    store.bind(planner=planner)
    planner.plan = plans("download")
    job = await store.create_job(kind="text_to_video", params=T2V)
    await store.apply_transition(job.id, JobState.SUCCEEDED, source="webhook")
    [task] = await store.claim_tasks(clock())

    def worker_finishes() -> None:  # as the worker does: the video first, then the task
        raw.rows("UPDATE jobs SET media_sha256 = ?, media_size = 1 WHERE id = ? RETURNING id",
                 "ab" * 32, job.id)
        raw.rows("UPDATE tasks SET state = 'succeeded' WHERE id = ? RETURNING id", task.id)
        raw.conn.commit()

    _between_reads(store, monkeypatch, worker_finishes)
    before = await store.job_history(job.id)
    assert before is not None
    assert before.job.media_sha256 is None
    assert [t.state for t in before.tasks] == [TaskState.RUNNING]

    monkeypatch.undo()
    after = await store.job_history(job.id)
    assert after is not None and after.job.media_sha256 == "ab" * 32
    assert [t.state for t in after.tasks] == [TaskState.SUCCEEDED]


async def test_a_job_history_has_the_row_of_every_state_it_shows(
        store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    job = await store.create_job(kind="text_to_video", params=T2V)
    found = await store.job_history(job.id)
    assert found is not None and found.job.state == JobState.QUEUED
    assert [t.to_state for t in found.transitions] == [JobState.QUEUED]
    assert found.tasks == [] and found.unapplied_webhooks == []
    assert await store.job_history("job_nope") is None
