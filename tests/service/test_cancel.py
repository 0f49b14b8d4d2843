"""``POST /api/jobs/{id}/cancel`` over real uvicorn, against the simulator: a job PixVerse has
not accepted is never sent (or its in-flight answer changes nothing); one it accepted is still
made, but no handler or follow-up runs for it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from service.store.jobs import CANCELLED_ERROR
from tests.service.conftest import T2V, Stack

pytestmark = pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)

#: A follow-up step: on success an uncancelled job queues download and followup tasks, and
#: followup submits a second job to PixVerse.
THEN = [{"kind": "sound_effect", "params": {"sound_effect_content": "wind"}}]


async def _cancel(stack: Stack, job_id: str) -> httpx.Response:
    return await stack.http.post(f"{stack.service_url}/api/jobs/{job_id}/cancel",
                                 headers=stack.auth)


async def _sim_jobs(stack: Stack) -> list[dict[str, Any]]:
    return list((await stack.http.get(f"{stack.sim_url}/_sim/jobs")).json()["jobs"])


async def test_a_queued_job_is_never_sent(stack: Stack) -> None:
    stack.sim.generation_seconds = 2.0
    async with stack.service(max_in_flight=1):
        first = await stack.submit(params={**T2V, "prompt": "first"})
        await stack.wait_for(first["id"], "generating")
        waiting = await stack.submit(params={**T2V, "prompt": "second"}, then=THEN)
        assert (await stack.job(waiting["id"]))["state"] == "queued"  # no slot for it
        response = await _cancel(stack, waiting["id"])
        assert response.status_code == 200, response.text
        cancelled = response.json()
        assert cancelled["state"] == "rejected" and cancelled["cancelled_at"] is not None
        assert cancelled["last_error"] == CANCELLED_ERROR
        await stack.wait_for(first["id"], "succeeded")  # the slot frees up...
        await asyncio.sleep(0.5)  # ...and the submitter has had its chance
        job = await stack.job(waiting["id"])
    assert [j["trace_id"] for j in await _sim_jobs(stack)] == [first["trace_id"]]
    assert job["state"] == "rejected" and job["video_id"] is None and job["attempts"] == 0
    assert [(t["to_state"], t["reason"]) for t in job["transitions"]] == [
        ("queued", "created"), ("rejected", "cancelled")]
    assert job["tasks"] == []  # not even followup's "chain stopped" note


async def test_a_generating_job_is_made_but_runs_no_handlers(stack: Stack) -> None:
    stack.sim.generation_seconds = 2.0
    async with stack.service():
        created = await stack.submit(then=THEN)
        generating = await stack.wait_for(created["id"], "generating")
        response = await _cancel(stack, created["id"])
        assert response.status_code == 200, response.text
        cancelled = response.json()
        assert cancelled["state"] == "generating" and cancelled["cancelled_at"] is not None
        assert cancelled["video_id"] == generating["video_id"]
        job = await stack.wait_for(created["id"], "succeeded")  # PixVerse has no cancel
        await asyncio.sleep(0.5)  # time for tasks to be queued, and a follow-up submitted
        job = await stack.job(created["id"])
        listed = (await stack.http.get(f"{stack.service_url}/api/jobs",
                                       headers=stack.auth)).json()["jobs"]
    last = job["transitions"][-1]
    assert (last["to_state"], last["outcome"], last["source"]) == ("succeeded", "applied",
                                                                   "webhook")
    assert job["tasks"] == [] and job["media_sha256"] is None  # no download, no followup
    assert [j["id"] for j in listed] == [created["id"]]  # no follow-up job
    stats = await stack.sim_stats()
    assert stats["jobs"] == 1 and stats["charges"] == 1  # made, and paid for


async def test_an_answer_to_a_call_in_flight_changes_nothing(stack: Stack) -> None:
    # PixVerse makes the job at once but holds its answer back for 1.5 s.
    await stack.set_chaos(api_timeout_rate=1.0, api_timeout_seconds=1.5,
                          api_chaos_after_commit=True,
                          api_chaos_paths=["/openapi/v2/video/text"])
    async with stack.service():
        created = await stack.submit(then=THEN)
        await stack.wait_for(created["id"], "submitting")
        response = await _cancel(stack, created["id"])
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "rejected"
        await asyncio.sleep(2.5)  # the answer comes, and the video's webhook (an orphan)
        job = await stack.job(created["id"])
    assert job["state"] == "rejected" and job["video_id"] is None
    assert job["last_error"] == CANCELLED_ERROR and job["tasks"] == []
    answer = job["transitions"][-1]  # the answer is kept in the history, and did nothing
    assert (answer["from_state"], answer["to_state"], answer["outcome"], answer["source"]) == (
        "rejected", "generating", "ignored", "submit")
    [made] = await _sim_jobs(stack)
    assert str(made["id"]) in answer["payload"]  # which video the credits went to


async def test_cancelling_twice_answers_the_same(stack: Stack) -> None:
    stack.sim.generation_seconds = 2.0
    async with stack.service(max_in_flight=1):
        first = await stack.submit()
        await stack.wait_for(first["id"], "generating")
        waiting = await stack.submit()
        for job_id in (waiting["id"], first["id"]):
            once, twice = await _cancel(stack, job_id), await _cancel(stack, job_id)
            assert once.status_code == twice.status_code == 200
            assert once.json() == twice.json()


async def test_a_finished_job_is_409_and_an_unknown_one_404(stack: Stack) -> None:
    async with stack.service():
        created = await stack.submit()
        done = await stack.wait_for(created["id"], "succeeded")
        finished = await _cancel(stack, created["id"])
        unknown = await _cancel(stack, "job_nope")
        unauthorised = await stack.http.post(
            f"{stack.service_url}/api/jobs/{created['id']}/cancel")
        after = await stack.job(created["id"])
    assert finished.status_code == 409
    assert finished.json()["error"] == (f"job {created['id']} is already succeeded: "
                                        "nothing to cancel")
    assert after["cancelled_at"] is None and after["state"] == "succeeded"
    assert after["transitions"] == done["transitions"]
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no such job"})
    assert unauthorised.status_code == 401
