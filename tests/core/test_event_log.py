"""The event log behind ``GET /api/events``: every transition and every finished task run gets
one position, in commit order, on both databases (service/store/event_log.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from service.events import EventType
from service.lifecycle import JobState
from service.store import Store
from tests.support.planner import Planner, plans

from .conftest import HOLD_EVENTS_LOCK, Backend, FakeClock, RawDatabase

VIDEO = 384920175633408000


async def _all_events(store: Store, **filters: object) -> list:
    page = await store.list_events(limit=1000, **filters)  # type: ignore[arg-type]
    return page.events


async def test_transitions_and_task_runs_are_logged_in_order(
        store: Store, planner: Planner, clock: FakeClock) -> None:
    store.bind(planner=planner)
    job = await store.create_job(kind="text_to_video", params={"prompt": "a"},
                                 labels={"team": "red"})
    await store.apply_transition(job.id, JobState.SUBMITTING, source="submit")
    with planner.planning(plans("notify")):
        await store.apply_transition(job.id, JobState.SUCCEEDED, source="poll")
    await store.apply_transition(job.id, JobState.GENERATING, source="poll")  # ignored
    [task] = await store.claim_tasks(clock())
    clock.advance(1)
    await store.fail_task(task.id, error="boom", retry_at=clock(), attempt=task.attempts,
                          started_at=clock() - 0.5)
    [task] = await store.claim_tasks(clock())
    await store.complete_task(task.id, attempt=task.attempts, started_at=clock())

    events = await _all_events(store)
    transitions = await store.list_transitions(job.id)
    runs = await store.list_task_runs(task.id)
    assert [event.id for event in events] == [
        *(f"transition:{t.id}" for t in transitions), *(f"task_run:{r.id}" for r in runs)]
    sequences = [event.sequence for event in events]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert [event.data["job"]["state"] for event in events] == [
        "queued", "submitting", "succeeded", "succeeded", "succeeded", "succeeded"]
    ignored = events[3].data["transition"]
    assert (ignored["to_state"], ignored["outcome"]) == ("generating", "ignored")
    failed, done = events[4].data["task_run"], events[5].data["task_run"]
    assert (failed["handler"], failed["outcome"], failed["error"]) == ("notify", "retry", "boom")
    assert (done["outcome"], done["attempt"]) == ("succeeded", 2)
    assert events[0].data["job"] == {"id": job.id, "kind": "text_to_video", "state": "queued",
                                     "labels": {"team": "red"}}
    assert await store.last_event_sequence() == sequences[-1]


async def test_filters_and_pages(store: Store, planner: Planner, clock: FakeClock) -> None:
    store.bind(planner=planner)
    red = await store.create_job(kind="text_to_video", params={}, labels={"team": "red"})
    blue = await store.create_job(kind="image_to_video", params={}, labels={"team": "blue"})
    with planner.planning(plans("notify")):
        await store.apply_transition(red.id, JobState.FAILED, source="poll")
    await store.apply_transition(blue.id, JobState.SUBMITTING, source="submit")
    [task] = await store.claim_tasks(clock())
    await store.complete_task(task.id, attempt=task.attempts, started_at=clock())

    def ids(events: list) -> list[str]:
        return [f"{e.job_id}:{e.type.value.rsplit('.', 1)[1]}" for e in events]

    assert ids(await _all_events(store, job_id=red.id)) == [
        f"{red.id}:transition", f"{red.id}:transition", f"{red.id}:run"]
    assert ids(await _all_events(store, kind="image_to_video")) == [
        f"{blue.id}:transition", f"{blue.id}:transition"]
    assert ids(await _all_events(store, state=JobState.FAILED)) == [
        f"{red.id}:transition", f"{red.id}:run"]
    assert ids(await _all_events(store, type=EventType.TASK_RUN)) == [f"{red.id}:run"]
    assert ids(await _all_events(store, labels={"team": "blue"})) == [
        f"{blue.id}:transition", f"{blue.id}:transition"]
    assert await _all_events(store, labels={"team": "green"}) == []

    # Pages: the position read up to moves past events a filter left out.
    everything = await _all_events(store)
    first = await store.list_events(limit=2, labels={"team": "blue"})
    assert [e.sequence for e in first.events] == [everything[1].sequence]
    assert first.last_sequence == everything[1].sequence
    rest = await store.list_events(after=first.last_sequence, limit=1000,
                                   labels={"team": "blue"})
    assert [e.sequence for e in rest.events] == [everything[3].sequence]
    assert rest.last_sequence == everything[-1].sequence
    empty = await store.list_events(after=rest.last_sequence)
    assert (empty.events, empty.last_sequence) == ([], rest.last_sequence)


async def test_concurrent_webhooks_log_each_transition_once(store: Store, raw: RawDatabase,
                                                            clock: FakeClock) -> None:
    """Both databases write these through their set-based webhook batch."""
    jobs = []
    for index in range(8):
        job = await store.create_job(kind="text_to_video", params={})
        await store.update_job(job.id, video_id=VIDEO + index)
        jobs.append(job)
    await asyncio.gather(*(
        store.ingest_webhook(body=b"{}", headers={}, nonce=f"n{index}-{step}",
                             timestamp=clock(), received_at=clock(), video_id=VIDEO + index,
                             proposed=state)
        for index in range(8) for step, state in enumerate(
            (JobState.GENERATING, JobState.SUCCEEDED, JobState.GENERATING))))
    logged = raw.rows("SELECT transition_id, state FROM events WHERE transition_id IS NOT NULL "
                      "ORDER BY id")
    transitions = raw.rows("SELECT id FROM transitions ORDER BY id")
    assert sorted(row[0] for row in logged) == [row[0] for row in transitions]
    assert len(logged) == 8 + 8 * 3
    events = await _all_events(store, type=EventType.TRANSITION)
    for job in jobs:
        states = [e.data["job"]["state"] for e in events if e.job_id == job.id]
        assert states[-1] == "succeeded"


@pytest.mark.postgres
async def test_postgres_hands_out_positions_in_commit_order(postgres_schema: str,
                                                            clock: FakeClock) -> None:
    """A writer that has taken a position holds back every other writer until it commits, so
    a reader never sees position n + 1 while n may still appear."""
    import psycopg

    backend = Backend("postgres", postgres_schema)
    async with backend.new_store(clock) as store:
        job = await store.create_job(kind="text_to_video", params={})
        before = await store.last_event_sequence()
        other = await psycopg.AsyncConnection.connect(postgres_schema)
        try:
            # Another replica, mid-transaction: it has logged an event and not committed.
            await other.execute(HOLD_EVENTS_LOCK)
            [created] = await store.list_transitions(job.id)
            await other.execute(
                "INSERT INTO events (job_id, state, transition_id, recorded_at) "
                "VALUES (%s, 'queued', %s, 0)", (job.id, created.id))
            writing = asyncio.create_task(
                store.apply_transition(job.id, JobState.SUBMITTING, source="submit"))
            done, _ = await asyncio.wait({writing}, timeout=0.5)
            assert not done, "a later writer committed a position ahead of an earlier one"
            assert (await store.list_events(after=before)).events == []
            await other.commit()
            await asyncio.wait_for(writing, 10)
        finally:
            with contextlib.suppress(Exception):
                await other.rollback()
            await other.close()
        page = await store.list_events(after=before)
        transitions = await store.list_transitions(job.id)
        assert [(e.sequence, e.id) for e in page.events] == [
            (before + 1, f"transition:{transitions[0].id}"),
            (before + 2, f"transition:{transitions[1].id}")]


async def test_migration_logs_the_history_before_it(backend: Backend, clock: FakeClock,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A database made before the event log (migrations up to 0007) gets its transitions and
    task runs logged, oldest first, when 0008 runs."""
    from service.store import jobs, ledger, queue, schema
    from service.store.sql import migration_names

    async def unlogged(*args: object, **kwargs: object) -> None:
        """What writers did before the log existed."""

    monkeypatch.setattr(schema, "migration_names",
                        lambda: [name for name in migration_names() if name < "0008"])
    for module, name in ((jobs, "append_transition_event"), (ledger, "append_transition_event"),
                         (queue, "append_task_run_event")):
        monkeypatch.setattr(module, name, unlogged)
    planner = Planner(plans("notify"))
    async with backend.new_store(clock, planner=planner) as old:
        job = await old.create_job(kind="text_to_video", params={}, labels={"a": "b"})
        clock.advance(1)
        await old.apply_transition(job.id, JobState.FAILED, source="poll")
        [task] = await old.claim_tasks(clock())
        clock.advance(1)
        await old.complete_task(task.id, attempt=task.attempts, started_at=clock())
        clock.advance(1)
        await old.apply_transition(job.id, JobState.SUCCEEDED, source="poll")  # ignored
    monkeypatch.undo()
    async with backend.new_store(clock) as store:
        events = await _all_events(store)
        transitions = await store.list_transitions(job.id)
        [run] = await store.list_task_runs(task.id)
    assert [e.id for e in events] == [
        f"transition:{transitions[0].id}", f"transition:{transitions[1].id}",
        f"task_run:{run.id}", f"transition:{transitions[2].id}"]
    assert [e.data["job"]["state"] for e in events] == ["queued", "failed", "failed", "failed"]
