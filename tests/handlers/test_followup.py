"""The follow-up handler: one child job per step, never two, and a visible stop on failure."""

from __future__ import annotations

import dataclasses

import pytest

from handlers.followup import FollowUpHandler, step_trace_id
from service.handler_api import PermanentError
from service.lifecycle import JobState
from tests.handlers.conftest import Harness

EXTEND = {"prompt": "rise above the clouds", "model": "v5", "duration": 5, "quality": "540p",
          "seed": 7}
SOUND = {"original_sound_switch": True}
CHAIN = [{"kind": "extend", "params": EXTEND}, {"kind": "sound_effect", "params": SOUND}]


def _handler(harness: Harness) -> FollowUpHandler:
    return FollowUpHandler(harness.settings, {})


async def test_success_submits_the_next_step_wired_to_the_video(harness: Harness) -> None:
    job, transition, task = await harness.transition(
        "followup", then=CHAIN, labels={"team": "a"}, callback_url="https://example.com/h")
    handler = _handler(harness)
    assert handler.wants(job, transition)
    await handler.run(job, transition, harness.context(task))

    child = await harness.store.get_job_by_trace_id(step_trace_id(job.trace_id, 0))
    assert child is not None and child.state is JobState.QUEUED
    assert child.kind == "extend" and child.parent_job_id == job.id
    assert child.params == {**EXTEND, "source_video_id": job.video_id}
    assert child.then == [CHAIN[1]]
    assert child.labels == {"team": "a"} and child.callback_url == "https://example.com/h"


async def test_a_replayed_task_makes_no_second_job(harness: Harness) -> None:
    job, transition, task = await harness.transition("followup", then=CHAIN)
    handler = _handler(harness)
    for _ in range(3):
        await handler.run(job, transition, harness.context(task))
    jobs, _ = await harness.store.list_jobs()
    assert sorted(j.kind for j in jobs) == ["extend", "text_to_video"]
    assert len({entry["trace_id"] for entry in harness.submitted}) == 1


def test_trace_ids_are_deterministic_and_distinct() -> None:
    assert step_trace_id("parent", 0) == step_trace_id("parent", 0)
    assert step_trace_id("parent", 0) != step_trace_id("parent", 1)
    assert step_trace_id("parent", 0) != step_trace_id("other", 0)


async def test_jobs_without_steps_need_no_task(harness: Harness) -> None:
    job, transition, _ = await harness.transition("followup")
    assert not _handler(harness).wants(job, transition)


async def test_a_failed_step_stops_the_chain_once(harness: Harness) -> None:
    job, transition, task = await harness.transition("followup", JobState.FAILED, then=CHAIN)
    await harness.store.update_job(job.id, last_error="ErrCode 500054: generation failed")
    handler = _handler(harness)
    for _ in range(2):
        await handler.run(job, transition, harness.context(task))
    stopped = await harness.store.get_job(job.id)
    assert stopped is not None
    assert stopped.last_error == ("ErrCode 500054: generation failed; chain stopped: failed, "
                                  "so extend, sound_effect did not run")
    jobs, _ = await harness.store.list_jobs()
    assert len(jobs) == 1 and harness.submitted == []


async def test_success_without_a_video_id_is_permanent(harness: Harness) -> None:
    job, transition, task = await harness.transition("followup", then=CHAIN)
    with pytest.raises(PermanentError):
        await _handler(harness).run(dataclasses.replace(job, video_id=None), transition,
                                    harness.context(task))
