"""Worker heartbeats in the store: upserted, listed newest first, forgotten; the queue's age."""

from __future__ import annotations

import dataclasses

from service.store import Store, WorkerHeartbeat
from tests.core.conftest import FakeClock


def _worker(worker_id: str, beat_at: float, **changes: object) -> WorkerHeartbeat:
    base = WorkerHeartbeat(id=worker_id, host="box", pid=42, version="0.1.0",
                           roles=("web", "worker"), started_at=beat_at, beat_at=beat_at,
                           tasks_running=0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_heartbeats_upsert_list_and_forget(store: Store) -> None:
    assert await store.list_workers() == []
    assert await store.newest_worker_beat() is None
    first = await store.beat_worker(_worker("a", 100.0))
    assert first.roles == ("web", "worker") and first.pid == 42
    await store.beat_worker(_worker("b", 105.0, roles=("worker",)))
    # A later beat moves beat_at and tasks_running only: who it is and when it started stay.
    again = await store.beat_worker(_worker("a", 110.0, started_at=999.0, host="other",
                                            tasks_running=3))
    assert (again.beat_at, again.tasks_running, again.started_at, again.host) == \
        (110.0, 3, 100.0, "box")
    assert [w.id for w in await store.list_workers()] == ["a", "b"]
    assert await store.newest_worker_beat() == 110.0
    assert (await store.list_workers())[1].as_dict()["roles"] == ["worker"]
    assert await store.prune_workers(106.0) == 1
    assert await store.forget_worker("a") is True
    assert await store.forget_worker("a") is False
    assert await store.list_workers() == []


async def test_oldest_due_task_is_the_longest_waiting_pending_one(
        store: Store, clock: FakeClock) -> None:
    assert await store.oldest_due_task() is None
    job = await store.create_job(kind="text_to_video", params={})
    transitions = await store.list_transitions(job.id)
    raw_sql = store._sql.render(  # a pending task queued directly, as a transition would
        "INSERT INTO tasks (job_id, transition_id, handler, idempotency_key, state, "
        "run_after, created_at, updated_at) VALUES (:job, :tr, 'h', :key, 'pending', :due, "
        ":due, :due)")
    for key, due in (("k1", clock.now - 30), ("k2", clock.now - 5), ("k3", clock.now + 60)):
        await store._db.write(lambda tx, key=key, due=due: tx.execute(  # type: ignore[misc]
            raw_sql, {"job": job.id, "tr": transitions[0].id, "key": key, "due": due}))
    assert await store.oldest_due_task() == clock.now - 30
