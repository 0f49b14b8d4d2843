"""ingest_webhook: nonce, delivery and transition commit together, or nothing does."""

from __future__ import annotations

import pytest

from service.lifecycle import JobState, Outcome
from service.store import DeliveryOutcome, Store
from tests.support.planner import Planner, plans


async def _generating_job(store: Store, video_id: int):
    job = await store.create_job(kind="text_to_video", params={"prompt": "x"})
    await store.update_job(job.id, video_id=video_id)
    await store.apply_transition(job.id, JobState.GENERATING, source="submit")
    return job


def _ingest(store: Store, nonce: str, video_id: int, state: JobState):
    return store.ingest_webhook(body=b'{"id":"1","status":1}', headers={"Webhook-Nonce": nonce},
                                nonce=nonce, timestamp=1.0, received_at=2.0, video_id=video_id,
                                proposed=state)


async def test_applies_and_links_the_delivery(store: Store, planner: Planner) -> None:
    store.bind(planner=planner)
    job = await _generating_job(store, 384920175633408001)
    planner.plan = plans("download")
    ingest = await _ingest(store, "n1", 384920175633408001, JobState.SUCCEEDED)
    assert ingest.outcome is DeliveryOutcome.OK
    assert ingest.transition is not None and ingest.transition.applied
    assert [t.handler for t in ingest.transition.tasks] == ["download"]
    history = await store.list_transitions(job.id)
    assert history[-1].source == "webhook" and history[-1].delivery_id == ingest.delivery.id
    assert (await store.get_job(job.id)).state is JobState.SUCCEEDED


async def test_replayed_nonce_writes_nothing(store: Store) -> None:
    job = await _generating_job(store, 42)
    await _ingest(store, "n1", 42, JobState.SUCCEEDED)
    before = await store.list_transitions(job.id)
    again = await _ingest(store, "n1", 42, JobState.SUCCEEDED)
    assert again.outcome is DeliveryOutcome.DUPLICATE and again.delivery is None
    assert await store.list_transitions(job.id) == before
    deliveries, _ = await store.list_webhook_deliveries()
    assert len(deliveries) == 1


async def test_same_event_with_a_new_nonce_is_a_logged_duplicate(store: Store,
                                                                 planner: Planner) -> None:
    store.bind(planner=planner)
    job = await _generating_job(store, 42)
    planner.plan = plans("download")
    await _ingest(store, "n1", 42, JobState.SUCCEEDED)
    again = await _ingest(store, "n2", 42, JobState.SUCCEEDED)
    assert again.outcome is DeliveryOutcome.OK
    assert again.transition.outcome is Outcome.DUPLICATE and not again.transition.tasks
    assert len(await store.list_tasks(job_id=job.id)) == 1


async def test_unknown_video_is_an_orphan(store: Store) -> None:
    ingest = await _ingest(store, "n1", 999, JobState.SUCCEEDED)
    assert ingest.outcome is DeliveryOutcome.ORPHAN and ingest.transition is None
    assert ingest.delivery.outcome is DeliveryOutcome.ORPHAN


async def test_failure_inside_rolls_back_the_nonce_too(store: Store, planner: Planner) -> None:
    store.bind(planner=planner)
    await _generating_job(store, 42)

    def broken_planner(job, transition):
        raise RuntimeError("planner bug")

    with pytest.raises(RuntimeError), planner.planning(broken_planner):
        await _ingest(store, "n1", 42, JobState.SUCCEEDED)
    # PixVerse's retry with the same nonce must still get through.
    retry = await _ingest(store, "n1", 42, JobState.SUCCEEDED)
    assert retry.outcome is DeliveryOutcome.OK and retry.transition.applied
