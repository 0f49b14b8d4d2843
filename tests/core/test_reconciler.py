"""The reconciler's pass: overdue jobs are polled a few at a time, each poll goes through the
transition function, and one failing job does not stop the others."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from service.lifecycle import JobState, TransitionSource
from service.pixverse import errors
from service.pixverse.results import VideoResult
from service.reconciler import Reconciler
from service.settings import Settings
from service.store import Store
from tests.core.conftest import FakeClock

GRACE = 30.0


class SlowStatusAPI:
    """Stands in for PixVerseClient's ``video_result``: every job is done, each answer takes
    ``delay`` seconds, and the most calls in flight at once is recorded."""

    def __init__(self, delay: float, failing: frozenset[int] = frozenset()) -> None:
        self.delay = delay
        self.failing = failing
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0

    async def video_result(self, video_id: int) -> VideoResult:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if video_id in self.failing:
            raise errors.OverloadedError(500, "busy", http_status=503)
        return VideoResult.from_resp({"id": video_id, "status": 1,
                                      "url": f"https://media.example/{video_id}.mp4"})


async def overdue_jobs(store: Store, clock: FakeClock, count: int) -> list[str]:
    ids = []
    for i in range(count):
        job = await store.create_job(kind="text_to_video", params={"i": i})
        await store.update_job(job.id, video_id=1000 + i)
        await store.apply_transition(job.id, JobState.GENERATING,
                                     source=TransitionSource.SUBMIT)
        ids.append(job.id)
    clock.advance(GRACE + 1)  # silent past the grace: overdue
    return ids


def reconciler(store: Store, api: Any, clock: FakeClock, concurrency: int) -> Reconciler:
    settings = dataclasses.replace(Settings(), webhook_grace=GRACE,
                                   reconcile_concurrency=concurrency)
    return Reconciler(store, api, settings, clock=clock)


async def test_a_pass_polls_overdue_jobs_a_few_at_a_time(store: Store,
                                                        clock: FakeClock) -> None:
    ids = await overdue_jobs(store, clock, 16)
    api = SlowStatusAPI(delay=0.2)
    started = time.monotonic()
    calls = await reconciler(store, api, clock, concurrency=8).run_once()
    elapsed = time.monotonic() - started
    assert calls == 16 and api.calls == 16
    assert api.most_in_flight == 8  # never more than the setting
    assert elapsed < 1.2  # two rounds of 0.2 s, not sixteen
    for job_id in ids:
        job = await store.get_job(job_id)
        assert job is not None and job.state is JobState.SUCCEEDED
        sources = [t.source for t in await store.list_transitions(job_id)]
        assert sources[-1] is TransitionSource.POLL


async def test_concurrency_one_polls_one_at_a_time(store: Store, clock: FakeClock) -> None:
    await overdue_jobs(store, clock, 4)
    api = SlowStatusAPI(delay=0.05)
    assert await reconciler(store, api, clock, concurrency=1).run_once() == 4
    assert api.most_in_flight == 1


async def test_a_failing_poll_leaves_the_others_to_finish(store: Store,
                                                         clock: FakeClock) -> None:
    ids = await overdue_jobs(store, clock, 6)
    api = SlowStatusAPI(delay=0.01, failing=frozenset({1002}))
    assert await reconciler(store, api, clock, concurrency=4).run_once() == 6
    states = [job.state for job in [await store.get_job(i) for i in ids] if job]
    assert states.count(JobState.SUCCEEDED) == 5
    assert states[2] is JobState.GENERATING  # retried on a later pass
    failed = await store.get_job(ids[2])
    assert failed is not None and failed.next_poll_at == clock.now + GRACE
