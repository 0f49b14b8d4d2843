"""``Store.jobs_updated_since``: what the dashboard's live list asks the store every tick."""

from __future__ import annotations

import pytest

from service.lifecycle import JobState, TransitionSource
from service.store import Store
from tests.core.conftest import FakeClock


async def test_changed_jobs_come_back_least_recently_updated_first(
        store: Store, clock: FakeClock) -> None:
    start = clock.now
    first = await store.create_job(kind="text_to_video", params={"prompt": "one"})
    clock.advance(1)
    second = await store.create_job(kind="text_to_video", params={"prompt": "two"})
    assert [j.id for j in await store.jobs_updated_since(start - 1)] == [first.id, second.id]
    assert [j.id for j in await store.jobs_updated_since(start)] == [second.id]

    clock.advance(1)
    await store.apply_transition(first.id, JobState.SUBMITTING, source=TransitionSource.SUBMIT)
    clock.advance(1)
    await store.update_job(second.id, attempts=1)  # bookkeeping counts as a change too
    changed = await store.jobs_updated_since(start + 1)
    assert [(j.id, j.state) for j in changed] == [(first.id, JobState.SUBMITTING),
                                                  (second.id, JobState.QUEUED)]
    assert await store.jobs_updated_since(clock.now) == []
    assert [j.id for j in await store.jobs_updated_since(start - 1, limit=1)] == [first.id]
    with pytest.raises(ValueError):
        await store.jobs_updated_since(start, limit=0)
