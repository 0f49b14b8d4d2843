"""apply_transition: the lifecycle rule, history, tasks and atomicity, on both backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

import pytest

from service.lifecycle import JobState, Outcome, TransitionSource
from service.store import Job, JobNotFoundError, Store, Transition
from tests.core.conftest import Backend, FakeClock, RawDatabase
from tests.support.planner import Planner

WEBHOOK = TransitionSource.WEBHOOK


def notify_and_log(job: Job, transition: Transition) -> Iterable[str]:
    return ["notify", "log"]


class PlannerBroke(Exception):
    pass


def broken_planner(job: Job, transition: Transition) -> Iterable[str]:
    raise PlannerBroke("boom")


async def new_job(store: Store) -> Job:
    return await store.create_job(kind="text_to_video", params={"prompt": "a cat"})


async def test_create_job_starts_queued_with_history(store: Store) -> None:
    job = await store.create_job(
        kind="image_to_video", params={"prompt": "a dog", "img_id": 7},
        labels={"team": "video"}, callback_url="https://example.test/cb",
        then=[{"kind": "extend", "params": {"duration": 5}}],
    )
    assert job.state is JobState.QUEUED
    assert job.id.startswith("job_") and len(job.id) == 30
    assert job.params == {"prompt": "a dog", "img_id": 7}
    assert job.labels == {"team": "video"}
    assert job.then == [{"kind": "extend", "params": {"duration": 5}}]
    assert job.trace_id
    assert await store.get_job(job.id) == job
    assert await store.get_job_by_trace_id(job.trace_id) == job
    [created] = await store.list_transitions(job.id)
    assert (created.from_state, created.to_state, created.outcome) == (
        None, JobState.QUEUED, Outcome.APPLIED)


async def test_history_records_applied_duplicate_and_ignored(store: Store) -> None:
    job = await new_job(store)
    steps = [
        (JobState.SUBMITTING, TransitionSource.SUBMIT, Outcome.APPLIED),
        (JobState.GENERATING, WEBHOOK, Outcome.APPLIED),
        (JobState.GENERATING, TransitionSource.POLL, Outcome.DUPLICATE),
        (JobState.SUCCEEDED, WEBHOOK, Outcome.APPLIED),
        (JobState.GENERATING, WEBHOOK, Outcome.IGNORED),  # late and out of order
        (JobState.SUCCEEDED, WEBHOOK, Outcome.DUPLICATE),
        (JobState.FAILED, TransitionSource.POLL, Outcome.IGNORED),
    ]
    for proposed, source, outcome in steps:
        result = await store.apply_transition(
            job.id, proposed, source=source, payload={"status": 5, "video_id": 1})
        assert result.outcome is outcome, proposed
    job_now = await store.get_job(job.id)
    assert job_now is not None and job_now.state is JobState.SUCCEEDED

    history = await store.list_transitions(job.id)
    assert [(t.to_state, t.source, t.outcome) for t in history[1:]] == steps
    assert [t.from_state for t in history[1:]] == [
        JobState.QUEUED, JobState.SUBMITTING, JobState.GENERATING, JobState.GENERATING,
        JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.SUCCEEDED,
    ]
    assert json.loads(history[-1].payload or "") == {"status": 5, "video_id": 1}
    assert history[5].reason == "succeeded is final"


async def test_late_generating_after_succeeded_is_ignored(store: Store) -> None:
    store.bind(planner=notify_and_log)
    job = await new_job(store)
    await store.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK)
    late = await store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK)
    assert late.outcome is Outcome.IGNORED
    assert late.job.state is JobState.SUCCEEDED
    assert late.tasks == ()
    assert len(await store.list_tasks(job_id=job.id)) == 2


async def test_deleted_after_succeeded_applies(store: Store) -> None:
    job = await new_job(store)
    await store.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK)
    store.bind(planner=notify_and_log)
    result = await store.apply_transition(job.id, JobState.DELETED, source=TransitionSource.POLL)
    assert result.applied and result.job.state is JobState.DELETED
    assert [task.idempotency_key for task in result.tasks] == [
        f"{job.id}:deleted:notify", f"{job.id}:deleted:log"]


async def test_tasks_commit_with_the_transition(store: Store, raw: RawDatabase) -> None:
    job = await new_job(store)
    calls: list[tuple[JobState, JobState | None]] = []

    def planner(job: Job, transition: Transition) -> Iterable[str]:
        calls.append((job.state, transition.from_state))
        return ["notify", "log", "notify"]  # a repeated name is one task

    store.bind(planner=planner)
    applied = await store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK)
    # The planner sees the job as it is after the transition.
    assert calls == [(JobState.GENERATING, JobState.QUEUED)]
    assert [task.handler for task in applied.tasks] == ["notify", "log"]
    assert {task.transition_id for task in applied.tasks} == {applied.transition.id}
    # Visible to another connection as soon as the call returned: committed together.
    assert raw.rows("SELECT handler, transition_id, state FROM tasks ORDER BY id") == [
        ("notify", applied.transition.id, "pending"), ("log", applied.transition.id, "pending")]
    assert raw.value("SELECT state FROM jobs WHERE id = ?", job.id) == "generating"

    duplicate = await store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK)
    assert duplicate.outcome is Outcome.DUPLICATE and duplicate.tasks == ()
    assert len(calls) == 1  # not even asked
    assert raw.value("SELECT count(*) FROM tasks") == 2
    assert await store.list_tasks(job_id=job.id) == list(applied.tasks)


async def test_failure_inside_the_transaction_leaves_nothing(
    store: Store, raw: RawDatabase, planner: Planner
) -> None:
    store.bind(planner=planner)
    job = await new_job(store)
    before = await store.get_job(job.id)
    planner.plan = broken_planner
    with pytest.raises(PlannerBroke):
        await store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK)
    assert await store.get_job(job.id) == before
    assert len(await store.list_transitions(job.id)) == 1  # only "created"
    assert raw.value("SELECT count(*) FROM tasks") == 0

    # The job is untouched, so the same transition applies cleanly afterwards.
    planner.plan = notify_and_log
    result = await store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK)
    assert result.applied and len(result.tasks) == 2


async def test_a_failing_write_does_not_spoil_its_batch(store: Store) -> None:
    jobs = [await new_job(store) for _ in range(20)]
    broken = {job.id for i, job in enumerate(jobs) if i % 4 == 0}

    def planner(job: Job, transition: Transition) -> Iterable[str]:
        return (broken_planner if job.id in broken else notify_and_log)(job, transition)

    store.bind(planner=planner)
    results = await asyncio.gather(
        *(
            store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK)
            for job in jobs
        ),
        return_exceptions=True,
    )
    for i, (job, result) in enumerate(zip(jobs, results, strict=True)):
        stored = await store.get_job(job.id)
        assert stored is not None
        if i % 4 == 0:
            assert isinstance(result, PlannerBroke)
            assert stored.state is JobState.QUEUED
            assert await store.list_tasks(job_id=job.id) == []
        else:
            assert not isinstance(result, BaseException) and result.applied
            assert stored.state is JobState.GENERATING
            assert len(await store.list_tasks(job_id=job.id)) == 2


async def test_concurrent_proposals_apply_once(store: Store) -> None:
    store.bind(planner=notify_and_log)
    job = await new_job(store)
    results = await asyncio.gather(*(
        store.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK)
        for _ in range(50)
    ))
    outcomes = [result.outcome for result in results]
    assert outcomes.count(Outcome.APPLIED) == 1
    assert outcomes.count(Outcome.DUPLICATE) == 49
    assert len(await store.list_transitions(job.id)) == 51
    assert len(await store.list_tasks(job_id=job.id)) == 2


async def test_two_stores_on_one_database_apply_once(backend: Backend, store: Store) -> None:
    """Two writers (as two processes would be) serialize: on BEGIN IMMEDIATE in SQLite, on
    the job's row lock in PostgreSQL."""
    store.bind(planner=notify_and_log)
    job = await new_job(store)
    async with backend.new_store(planner=notify_and_log) as other:
        results = await asyncio.gather(*(
            (store if i % 2 else other).apply_transition(
                job.id, JobState.GENERATING, source=WEBHOOK)
            for i in range(40)
        ))
    assert [r.outcome for r in results].count(Outcome.APPLIED) == 1
    assert len(await store.list_tasks(job_id=job.id)) == 2


async def test_unknown_job(store: Store) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        await store.apply_transition("job_nope", JobState.GENERATING, source=WEBHOOK)
    assert caught.value.job_id == "job_nope"
    assert isinstance(caught.value, LookupError)


async def test_clocks_only_move_forward(store: Store, clock: FakeClock) -> None:
    job = await new_job(store)
    applied = await store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK,
                                           received_at=clock.now + 50)
    assert applied.job.state_changed_at == applied.job.last_event_at == clock.now + 50
    # A message that claims to be older does not wind the job's clocks back...
    older = await store.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK,
                                         received_at=clock.now + 10)
    assert older.job.state_changed_at == older.job.last_event_at == clock.now + 50
    # ...but is recorded with the time it claimed.
    assert older.transition.received_at == clock.now + 10
    # A duplicate counts as news for the reconciler (last_event_at), not as a state change.
    dup = await store.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK,
                                       received_at=clock.now + 90)
    assert (dup.job.state_changed_at, dup.job.last_event_at) == (clock.now + 50, clock.now + 90)
    assert await store.get_job(job.id) == dup.job


async def test_applied_transition_clears_the_poll_backoff(store: Store) -> None:
    job = await new_job(store)
    await store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK)
    await store.update_job(job.id, next_poll_at=1e12)
    result = await store.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK)
    assert result.job.next_poll_at is None
    assert await store.get_job(job.id) == result.job
