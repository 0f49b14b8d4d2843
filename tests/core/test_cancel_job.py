"""Store.cancel_job, on both backends: a job PixVerse has not accepted is rejected in the same
transaction (no claim takes it again, no submitter write lands after it); one PixVerse accepted
keeps its state, but nothing it hears later queues a handler task."""

from __future__ import annotations

import pytest

from service.lifecycle import JobState, Outcome, TransitionSource
from service.registry import HandlerSet
from service.settings import Settings
from service.store import Job, JobCancelledError, JobNotFoundError, JobStateError, Store
from service.store.jobs import CANCELLED_ERROR
from tests.core.conftest import FakeClock

VIDEO_ID = 384920175633408001
#: PixVerse's success webhook, with the video the download handler would fetch.
SUCCEEDED = b'{"id":"384920175633408001","status":1,"url":"https://media.pixverse.ai/v.mp4"}'
#: A job every built-in handler wants on success: a chain to follow, a callback to forward to.
CHAINED = {"then": [{"kind": "sound_effect", "params": {}}],
           "callback_url": "https://example.com/hook"}


def _builtins(store: Store) -> None:
    store.bind(planner=HandlerSet.from_settings(Settings(slack_webhook_url="https://x")).plan)


async def _generating(store: Store, video_id: int = VIDEO_ID) -> Job:
    job = await store.create_job(kind="text_to_video", params={"prompt": "x"}, **CHAINED)
    await store.update_job(job.id, video_id=video_id)
    return (await store.apply_transition(job.id, JobState.GENERATING,
                                         source=TransitionSource.SUBMIT)).job


async def test_a_queued_job_is_rejected_and_never_claimed(store: Store,
                                                          clock: FakeClock) -> None:
    _builtins(store)
    job = await store.create_job(kind="text_to_video", params={"prompt": "x"}, **CHAINED)
    clock.advance(5)
    cancelled = await store.cancel_job(job.id)
    assert cancelled.state is JobState.REJECTED and cancelled.cancelled_at == clock.now
    assert cancelled.last_error == CANCELLED_ERROR
    assert await store.get_job(job.id) == cancelled
    last = (await store.list_transitions(job.id))[-1]
    assert (last.from_state, last.to_state, last.outcome, last.source, last.reason) == (
        JobState.QUEUED, JobState.REJECTED, Outcome.APPLIED, TransitionSource.SUBMIT,
        "cancelled")
    # rejected would queue slack and followup for an uncancelled job
    assert await store.list_tasks(job_id=job.id) == []
    assert await store.claim_submissions(clock.now + 60, limit=10, lease_seconds=60) == []


async def test_a_submitting_job_refuses_the_submitters_late_writes(store: Store,
                                                                   clock: FakeClock) -> None:
    job = await store.create_job(kind="text_to_video", params={"prompt": "x"})
    [claim] = await store.claim_submissions(clock.now, limit=1, lease_seconds=60)
    assert claim.job.state is JobState.SUBMITTING
    await store.update_job(job.id, attempts=1, unless_cancelled=True)  # live: written
    cancelled = await store.cancel_job(job.id)
    assert cancelled.state is JobState.REJECTED and cancelled.attempts == 1
    # PixVerse's answer to the call that was in flight comes back now: nothing changes.
    with pytest.raises(JobCancelledError):
        await store.update_job(job.id, video_id=VIDEO_ID, last_error=None,
                               next_attempt_at=None, unless_cancelled=True)
    assert await store.get_job(job.id) == cancelled
    assert await store.get_job_by_video_id(VIDEO_ID) is None
    # Writes that are not the submitter's still work (an operator, the media handler).
    assert (await store.update_job(job.id, next_poll_at=1.0)).next_poll_at == 1.0
    assert await store.claim_submissions(clock.now + 600, limit=10, lease_seconds=60) == []


async def test_a_generating_job_keeps_its_state_and_queues_no_tasks(store: Store,
                                                                    clock: FakeClock) -> None:
    _builtins(store)
    job, control = await _generating(store), await _generating(store, video_id=VIDEO_ID + 1)
    clock.advance(1)
    cancelled = await store.cancel_job(job.id)
    assert cancelled.state is JobState.GENERATING and cancelled.cancelled_at == clock.now
    assert cancelled.last_error is None and cancelled.video_id == VIDEO_ID
    assert [t.to_state for t in await store.list_transitions(job.id)] == [
        JobState.QUEUED, JobState.GENERATING]  # the cancel proposes no state
    # PixVerse finishes it anyway: recorded, but no download, slack, followup or forward.
    ingest = await store.ingest_webhook(
        body=SUCCEEDED, headers={}, nonce="n1", timestamp=1.0,
        received_at=clock.now, video_id=VIDEO_ID, proposed=JobState.SUCCEEDED)
    assert ingest.transition is not None and ingest.transition.applied
    assert ingest.transition.tasks == ()
    deleted = await store.apply_transition(job.id, JobState.DELETED, source=TransitionSource.POLL)
    assert deleted.applied and deleted.tasks == ()
    # Only what was queued before the cancel (forward, on generating; the runner drops it).
    assert [(t.handler, t.transition_id) for t in await store.list_tasks(job_id=job.id)] == [
        ("forward", (await store.list_transitions(job.id))[1].id)]
    finished = await store.get_job(job.id)
    assert finished.state is JobState.DELETED and finished.cancelled_at == cancelled.cancelled_at
    # The same news for the same kind of job, uncancelled, queues every built-in handler.
    uncancelled = await store.apply_transition(control.id, JobState.SUCCEEDED,
                                               source=TransitionSource.WEBHOOK,
                                               payload=SUCCEEDED.decode())
    assert {t.handler for t in uncancelled.tasks} == {"download", "slack", "followup", "forward"}


async def test_cancelling_twice_answers_the_same(store: Store, clock: FakeClock) -> None:
    queued = await store.create_job(kind="text_to_video", params={"prompt": "x"})
    generating = await _generating(store)
    for job in (queued, generating):
        first = await store.cancel_job(job.id)
        history = await store.list_transitions(job.id)
        clock.advance(3)
        assert await store.cancel_job(job.id) == first
        assert await store.list_transitions(job.id) == history


async def test_a_finished_job_cannot_be_cancelled(store: Store) -> None:
    job = await _generating(store)
    await store.apply_transition(job.id, JobState.SUCCEEDED, source=TransitionSource.WEBHOOK)
    with pytest.raises(JobStateError, match="already succeeded"):
        await store.cancel_job(job.id)
    after = await store.get_job(job.id)
    assert after.cancelled_at is None and after.state is JobState.SUCCEEDED
    with pytest.raises(JobNotFoundError):
        await store.cancel_job("job_nope")

