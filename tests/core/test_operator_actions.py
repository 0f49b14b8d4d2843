"""The operator's store actions: search, bulk retry of dead tasks, replay, the raw event log."""

from __future__ import annotations

import pytest

from service.lifecycle import JobState
from service.store import Store, TaskNotFoundError, TaskState, TaskStateError
from tests.support.planner import Planner, plans


async def _job(store: Store, prompt: str, **kwargs):
    return await store.create_job(kind="text_to_video", params={"prompt": prompt}, **kwargs)


async def _dead_task(store: Store, planner: Planner, handler: str = "slack"):
    """A job that succeeded and whose ``handler`` task died after one run."""
    job = await _job(store, "dead")
    await store.update_job(job.id, video_id=abs(hash(job.id)) % 10**12)
    await store.apply_transition(job.id, JobState.GENERATING, source="submit")
    with planner.planning(plans(handler)):
        await store.apply_transition(job.id, JobState.SUCCEEDED, source="poll")
    [task] = await store.claim_tasks(10**10)
    return await store.fail_task(task.id, error="boom", retry_at=None, attempt=1,
                                 started_at=10**10)


async def test_search_by_prompt_label_ids(store: Store) -> None:
    cat = await _job(store, "A Cat with 50% off_sale", labels={"env": "prod"},
                     trace_id="trace-cat")
    dog = await _job(store, "a dog", labels={"env": "dev"})
    await store.update_job(dog.id, video_id=384920175633408001)
    ids = lambda found: [job.id for job in found[0]]  # noqa: E731
    assert ids(await store.search_jobs("cat")) == [cat.id]          # any case
    assert ids(await store.search_jobs("50% off_")) == [cat.id]     # wildcards are literal
    assert ids(await store.search_jobs("0%")) == [cat.id]
    assert ids(await store.search_jobs("env=prod")) == [cat.id]     # one label
    assert ids(await store.search_jobs("trace-cat")) == [cat.id]
    assert ids(await store.search_jobs(dog.id)) == [dog.id]
    assert ids(await store.search_jobs("384920175633408001")) == [dog.id]
    assert ids(await store.search_jobs("a ")) == [dog.id, cat.id]   # newest first
    assert ids(await store.search_jobs("nothing like it")) == []
    # Digits of other scripts and numbers too long for a video id are searched as text.
    for term in ("³", "٣٨٤", "9" * 5000):
        assert ids(await store.search_jobs(term)) == []


async def test_search_pages_with_a_cursor(store: Store) -> None:
    made = [await _job(store, f"lake {n}") for n in range(3)]
    first, cursor = await store.search_jobs("lake", limit=2)
    assert [job.id for job in first] == [made[2].id, made[1].id] and cursor is not None
    rest, cursor = await store.search_jobs("lake", limit=2, cursor=cursor)
    assert [job.id for job in rest] == [made[0].id] and cursor is None


async def test_bulk_retry_revives_only_dead_tasks(store: Store, planner: Planner) -> None:
    store.bind(planner=planner)
    first = await _dead_task(store, planner)
    second = await _dead_task(store, planner, handler="forward")
    assert first.state is TaskState.DEAD and second.state is TaskState.DEAD
    revived = await store.retry_dead_tasks(task_ids=[first.id, second.id, 999])
    assert [(t.id, t.state, t.attempts) for t in revived] == [
        (first.id, TaskState.PENDING, 0), (second.id, TaskState.PENDING, 0)]
    assert await store.retry_dead_tasks(task_ids=[first.id]) == []   # not dead any more


async def test_bulk_retry_of_every_dead_task_filtered_by_handler(store: Store,
                                                                   planner: Planner) -> None:
    store.bind(planner=planner)
    slack = await _dead_task(store, planner, handler="slack")
    forward = await _dead_task(store, planner, handler="forward")
    assert [t.id for t in await store.retry_dead_tasks(handler="forward")] == [forward.id]
    assert [t.id for t in await store.retry_dead_tasks()] == [slack.id]
    assert await store.retry_dead_tasks(task_ids=[]) == []


async def test_replay_runs_a_finished_task_again_keeping_its_runs(store: Store,
                                                                  planner: Planner) -> None:
    store.bind(planner=planner)
    dead = await _dead_task(store, planner)
    replayed = await store.replay_task(dead.id)
    assert replayed.state is TaskState.PENDING and replayed.attempts == 0
    [claimed] = await store.claim_tasks(10**10 + 5)
    await store.complete_task(claimed.id, attempt=1, started_at=10**10 + 5)
    again = await store.replay_task(dead.id)          # a succeeded task replays too
    assert again.state is TaskState.PENDING
    runs = await store.list_task_runs(dead.id)
    assert [run.outcome.value for run in runs] == ["dead", "succeeded"]
    with pytest.raises(TaskStateError, match="pending"):
        await store.replay_task(dead.id)
    with pytest.raises(TaskNotFoundError):
        await store.replay_task(12345)


async def test_job_deliveries_and_dead_tasks_by_job(store: Store, planner: Planner) -> None:
    store.bind(planner=planner)
    dead = await _dead_task(store, planner, handler="forward")
    other = await _job(store, "fine")
    assert await store.dead_tasks_by_job([dead.job_id, other.id]) == {
        dead.job_id: ["forward"]}
    assert await store.dead_tasks_by_job([]) == {}
    job = await store.get_job(dead.job_id)
    ingest = await store.ingest_webhook(
        body=b'{"id":"1","status":1}', headers={}, nonce="n1", timestamp=1.0, received_at=2.0,
        video_id=job.video_id, proposed=JobState.SUCCEEDED)
    [delivery] = await store.list_job_deliveries(job.id)
    assert delivery.id == ingest.delivery.id and delivery.body == b'{"id":"1","status":1}'
