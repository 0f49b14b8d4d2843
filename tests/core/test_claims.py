"""The claims that let several processes share the work: ``claim_submissions`` (the
submitter, with the in-flight limit) and ``claim_overdue`` (the reconciler), on both backends
and across PostgreSQL replicas."""

from __future__ import annotations

import asyncio

import pytest

from service.lifecycle import JobState, Outcome, TransitionSource
from service.store import Store
from service.store.postgres import PostgresStore
from tests.core.conftest import FakeClock
from tests.core.test_postgres_store import replicas  # noqa: F401 - a fixture

SUBMIT = TransitionSource.SUBMIT


async def _queued(store: Store, count: int) -> list[str]:
    return [(await store.create_job(kind="text_to_video", params={})).id for _ in range(count)]


async def test_claims_move_queued_jobs_to_submitting_with_a_lease(store: Store,
                                                                 clock: FakeClock) -> None:
    ids = await _queued(store, 3)
    claims = await store.claim_submissions(clock.now, limit=2, lease_seconds=60)
    assert [c.job.id for c in claims] == ids[:2]
    for claim in claims:
        assert claim.job.state is JobState.SUBMITTING
        assert claim.job.next_attempt_at == clock.now + 60
        assert claim.transition is not None and claim.transition.outcome is Outcome.APPLIED
        stored = await store.get_job(claim.job.id)
        assert stored is not None and stored.state is JobState.SUBMITTING
        history = await store.list_transitions(claim.job.id)
        assert [t.to_state for t in history] == [JobState.QUEUED, JobState.SUBMITTING]
    # Leased: not claimed again until the lease runs out, and then as a retry.
    again = await store.claim_submissions(clock.now + 1, limit=10, lease_seconds=60)
    assert [c.job.id for c in again] == ids[2:]
    clock.advance(61)
    retried = await store.claim_submissions(clock.now, limit=10, lease_seconds=60)
    assert sorted(c.job.id for c in retried) == sorted(ids)
    assert all(c.transition is None for c in retried)


async def test_a_claim_counts_the_attempt_it_leases_the_job_for(store: Store,
                                                                 clock: FakeClock) -> None:
    """Counted in the claim's own write, before the call: an attempt cut short by a crash
    stays counted, and the submitter writes nothing more before it calls PixVerse."""
    [job_id] = await _queued(store, 1)
    [claim] = await store.claim_submissions(clock.now, limit=1, lease_seconds=60)
    stored = await store.get_job(job_id)
    assert claim.job.attempts == 1 and stored is not None and stored.attempts == 1
    clock.advance(61)  # the attempt was cut short: its lease ran out
    [again] = await store.claim_submissions(clock.now, limit=1, lease_seconds=60)
    stored = await store.get_job(job_id)
    assert again.job.attempts == 2 and stored is not None and stored.attempts == 2


async def test_claims_respect_the_in_flight_limit(store: Store, clock: FakeClock) -> None:
    busy = await _queued(store, 2)
    for job_id in busy:
        await store.apply_transition(job_id, JobState.GENERATING, source=SUBMIT)
    await _queued(store, 5)
    claims = await store.claim_submissions(clock.now, limit=10, lease_seconds=60,
                                           max_in_flight=3)
    assert len(claims) == 1
    assert await store.claim_submissions(clock.now, limit=10, lease_seconds=60,
                                         max_in_flight=3) == []
    await store.apply_transition(busy[0], JobState.SUCCEEDED, source=SUBMIT)
    assert len(await store.claim_submissions(clock.now, limit=10, lease_seconds=60,
                                             max_in_flight=3)) == 1


async def test_a_job_with_a_video_id_is_never_claimed_again(store: Store,
                                                           clock: FakeClock) -> None:
    [job_id] = await _queued(store, 1)
    [claim] = await store.claim_submissions(clock.now, limit=1, lease_seconds=1)
    await store.update_job(claim.job.id, video_id=77)
    clock.advance(5)
    assert await store.claim_submissions(clock.now, limit=1, lease_seconds=1) == []


@pytest.mark.postgres
async def test_the_in_flight_limit_holds_across_replicas(
        replicas: tuple[PostgresStore, PostgresStore]) -> None:  # noqa: F811
    one, two = replicas
    await _queued(one, 40)
    claimed: list[str] = []

    async def claim(store: PostgresStore) -> None:
        for _ in range(5):
            batch = await store.claim_submissions(10**10, limit=3, lease_seconds=60,
                                                  max_in_flight=7)
            claimed.extend(c.job.id for c in batch)

    await asyncio.gather(*(claim(store) for store in (one, two, one, two)))
    assert len(claimed) == len(set(claimed)) == 7
    assert await one.count_jobs_by_state([JobState.SUBMITTING]) == {JobState.SUBMITTING: 7}


async def _generating(store: Store, count: int) -> list[str]:
    ids = await _queued(store, count)
    for job_id in ids:
        await store.apply_transition(job_id, JobState.GENERATING, source=SUBMIT)
    return ids


async def test_overdue_claims_hold_jobs_until_the_hold_ends(store: Store,
                                                           clock: FakeClock) -> None:
    ids = await _generating(store, 3)
    clock.advance(100)
    claimed = await store.claim_overdue(clock.now, 30, hold_seconds=30)
    assert sorted(job.id for job in claimed) == sorted(ids)
    assert all(job.next_poll_at == clock.now + 30 for job in claimed)
    assert await store.claim_overdue(clock.now + 29, 30, hold_seconds=30) == []
    assert len(await store.claim_overdue(clock.now + 31, 30, hold_seconds=30)) == 3


@pytest.mark.postgres
async def test_reconcilers_on_two_replicas_split_the_overdue_jobs(
        replicas: tuple[PostgresStore, PostgresStore]) -> None:  # noqa: F811
    one, two = replicas
    ids = await _generating(one, 30)
    taken: list[str] = []

    async def claim(store: PostgresStore) -> None:
        for _ in range(4):
            taken.extend(job.id for job in await store.claim_overdue(
                10**10, 30, hold_seconds=60, limit=4))

    await asyncio.gather(*(claim(store) for store in (one, two, one, two)))
    assert sorted(taken) == sorted(ids)  # each overdue job claimed exactly once
