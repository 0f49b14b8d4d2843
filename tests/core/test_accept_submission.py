"""``accept_submission``: PixVerse's answer to a create call, written in one transaction (the
video id, ``generating``, and the read of the orphans to adopt), on both backends and, for
the race with a webhook, across PostgreSQL replicas."""

from __future__ import annotations

import asyncio

import pytest

from service.lifecycle import JobState, Outcome, TransitionSource
from service.store import (
    DeliveryOutcome,
    JobCancelledError,
    JobNotFoundError,
    Store,
    WebhookIngest,
)
from service.store.postgres import PostgresStore
from tests.core.conftest import FakeClock
from tests.core.test_postgres_store import replicas  # noqa: F401 - a fixture

ANSWER = {"video_id": 77, "status": 5}


async def _claimed(store: Store, clock: FakeClock) -> str:
    """A job the submitter claimed (``submitting``, leased)."""
    job = await store.create_job(kind="text_to_video", params={})
    [claim] = await store.claim_submissions(clock.now, limit=1, lease_seconds=60)
    assert claim.job.id == job.id
    return job.id


async def _webhook(store: Store, nonce: str, video_id: int) -> WebhookIngest:
    return await store.ingest_webhook(
        body=b'{"status":5}', headers={}, nonce=nonce, timestamp=1.0, received_at=2.0,
        video_id=video_id, proposed=JobState.GENERATING)


async def test_the_video_id_and_generating_are_recorded_together(store: Store,
                                                                  clock: FakeClock) -> None:
    job_id = await _claimed(store, clock)
    await store.update_job(job_id, attempts=2, last_error="ErrCode 500069: busy")
    clock.advance(1)
    orphans = await store.accept_submission(job_id, 77, payload=ANSWER)
    job = await store.get_job(job_id)
    assert orphans == []
    assert job is not None and job.state is JobState.GENERATING and job.video_id == 77
    assert job.last_error is None and job.next_attempt_at is None and job.attempts == 2
    assert job.state_changed_at == clock.now
    last = (await store.list_transitions(job_id))[-1]
    assert (last.from_state, last.to_state, last.outcome, last.source) == (
        JobState.SUBMITTING, JobState.GENERATING, Outcome.APPLIED, TransitionSource.SUBMIT)
    assert last.payload == '{"video_id":77,"status":5}'


async def test_the_orphans_of_that_video_id_come_back_oldest_first(store: Store,
                                                                   clock: FakeClock) -> None:
    first, second = await _webhook(store, "n1", 77), await _webhook(store, "n2", 77)
    other = await _webhook(store, "n3", 78)
    assert {first.outcome, second.outcome, other.outcome} == {DeliveryOutcome.ORPHAN}
    job_id = await _claimed(store, clock)
    orphans = await store.accept_submission(job_id, 77, payload=ANSWER)
    assert first.delivery is not None and second.delivery is not None
    assert [delivery.id for delivery in orphans] == [first.delivery.id, second.delivery.id]
    assert all(delivery.video_id == 77 for delivery in orphans)
    # Once the id is stored, the next webhook for it reaches the job: no orphan.
    assert (await _webhook(store, "n4", 77)).outcome is DeliveryOutcome.OK


async def test_a_job_cancelled_during_the_call_keeps_the_answer_as_ignored(
        store: Store, clock: FakeClock) -> None:
    job_id = await _claimed(store, clock)
    await store.cancel_job(job_id)
    with pytest.raises(JobCancelledError):
        await store.accept_submission(job_id, 77, payload=ANSWER)
    job = await store.get_job(job_id)
    assert job is not None and job.state is JobState.REJECTED and job.video_id is None
    last = (await store.list_transitions(job_id))[-1]
    assert (last.from_state, last.to_state, last.outcome, last.source) == (
        JobState.REJECTED, JobState.GENERATING, Outcome.IGNORED, TransitionSource.SUBMIT)
    assert last.payload == '{"video_id":77,"status":5}'
    assert await store.get_job_by_video_id(77) is None


async def test_an_unknown_job_is_not_found(store: Store) -> None:
    with pytest.raises(JobNotFoundError):
        await store.accept_submission("job_nope", 77, payload=ANSWER)


@pytest.mark.postgres
async def test_no_orphan_slips_between_accepting_and_a_webhook(
        replicas: tuple[PostgresStore, PostgresStore]) -> None:  # noqa: F811
    """A webhook for the video id arrives (on another replica) while the submitter records
    PixVerse's answer: whatever the interleaving, the delivery is either matched to the job
    or among the orphans ``accept_submission`` returns."""
    one, two = replicas
    for video_id in range(1000, 1040):
        job = await one.create_job(kind="text_to_video", params={})
        [claim] = await one.claim_submissions(0.0, limit=1, lease_seconds=60)
        assert claim.job.id == job.id
        orphans, ingest = await asyncio.gather(
            one.accept_submission(job.id, video_id, payload=ANSWER),
            _webhook(two, f"n{video_id}", video_id))
        if ingest.outcome is DeliveryOutcome.ORPHAN:
            assert ingest.delivery is not None
            assert [delivery.id for delivery in orphans] == [ingest.delivery.id]
        else:
            assert ingest.outcome is DeliveryOutcome.OK and orphans == []
