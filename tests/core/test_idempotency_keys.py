"""Idempotency keys in the store, on SQLite and PostgreSQL: a key is claimed in the transaction
that creates its job, so concurrent claims (two stores: two replicas) make exactly one job."""

from __future__ import annotations

import asyncio

import pytest

from service.lifecycle import JobState, TransitionSource
from service.store import IdempotencyKey, IdempotencyKeyReusedError, Store
from tests.core.conftest import Backend, FakeClock, RawDatabase

PARAMS = {"prompt": "a lantern"}


def key(name: str = "k1", *, caller: str = "caller-a", request: str = "hash-1",
        ttl: float = 86400.0) -> IdempotencyKey:
    return IdempotencyKey(caller=caller, key=name, request_hash=request, ttl=ttl)


async def test_concurrent_claims_of_one_key_make_one_job(backend: Backend, clock: FakeClock,
                                                         raw: RawDatabase) -> None:
    replicas = [backend.new_store(clock), backend.new_store(clock)]
    for replica in replicas:
        await replica.open()
    try:
        results = await asyncio.gather(*(
            replicas[i % 2].create_job_once(key(), kind="text_to_video", params=PARAMS)
            for i in range(20)))
    finally:
        for replica in replicas:
            await replica.close()
    assert len({job.id for job, _ in results}) == 1
    assert [replayed for _, replayed in results].count(False) == 1
    assert raw.value("SELECT count(*) FROM jobs") == 1
    assert raw.value("SELECT count(*) FROM transitions") == 1


async def test_a_replay_is_the_job_as_it_was_created(store: Store) -> None:
    created, replayed = await store.create_job_once(key(), kind="text_to_video",
                                                    params=PARAMS, labels={"a": "b"})
    assert not replayed
    await store.update_job(created.id, attempts=3, last_error="later news")
    await store.apply_transition(created.id, JobState.SUBMITTING,
                                 source=TransitionSource.SUBMIT)
    again, replayed = await store.create_job_once(key(), kind="text_to_video", params=PARAMS,
                                                  labels={"a": "b"})
    assert replayed and again == created


async def test_another_request_with_the_key_is_refused_and_creates_nothing(
        store: Store, raw: RawDatabase) -> None:
    await store.create_job_once(key(), kind="text_to_video", params=PARAMS)
    with pytest.raises(IdempotencyKeyReusedError):
        await store.create_job_once(key(request="hash-2"), kind="text_to_video",
                                    params={"prompt": "other"})
    assert raw.value("SELECT count(*) FROM jobs") == 1


async def test_keys_are_per_caller(store: Store, raw: RawDatabase) -> None:
    a, _ = await store.create_job_once(key(caller="caller-a"), kind="text_to_video",
                                       params=PARAMS)
    b, replayed = await store.create_job_once(key(caller="caller-b"), kind="text_to_video",
                                              params=PARAMS)
    assert not replayed and a.id != b.id
    assert raw.value("SELECT count(*) FROM jobs") == 2


async def test_an_expired_key_is_absent_and_pruned(store: Store, clock: FakeClock,
                                                   raw: RawDatabase) -> None:
    first, _ = await store.create_job_once(key(ttl=60), kind="text_to_video", params=PARAMS)
    await store.create_job_once(key("other", ttl=60), kind="text_to_video", params=PARAMS)
    clock.advance(61)
    second, replayed = await store.create_job_once(key(request="hash-2", ttl=60),
                                                   kind="text_to_video", params=PARAMS)
    assert not replayed and second.id != first.id
    # The other expired key went with it: the table does not grow forever.
    assert raw.rows("SELECT idempotency_key, job_id FROM idempotency_keys") == [
        ("k1", second.id)]
