"""An unexpected failure while submitting (a bug, an answer of an unexpected shape, the store
failing) is a counted attempt: ``last_error`` names it, the job is sent again later with the
same trace id, and it is rejected at ``PIXHOOK_SUBMIT_MAX_ATTEMPTS``. Over real uvicorn, with a
PixVerse client that raises around its calls to the simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

import pytest

from service import submission
from service.pixverse import models, results
from service.pixverse.client import PixVerseClient
from service.store import Job
from tests.service.conftest import T2V, Stack

pytestmark = pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)

#: Where a scripted failure is raised: before the request leaves, or after PixVerse answered.
When = Literal["before", "after"] | None


class ScriptedClient(PixVerseClient):
    """The real client, raising where ``script(call number, prompt)`` says."""

    def __init__(self, stack: Stack, script: Callable[[int, str], When]) -> None:
        super().__init__(stack.settings.pixverse_api_key,
                         base_url=stack.settings.pixverse_base_url)
        self.script = script
        self.calls = 0

    async def submit(self, request: models.PixVerseRequest, *,
                     trace_id: str | None = None) -> results.Submission:
        self.calls += 1
        when = self.script(self.calls, getattr(request, "prompt", ""))
        if when == "before":
            raise RuntimeError(f"boom on call {self.calls}")
        answer = await super().submit(request, trace_id=trace_id)
        if when == "after":
            raise KeyError("an answer of a shape nobody expected")
        return answer


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submission, "RETRY_BASE_SECONDS", 0.05)
    monkeypatch.setattr(submission, "SUBMIT_INTERVAL_SECONDS", 0.05)


def _submits(job: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    return [(t["from_state"], t["to_state"], t["outcome"]) for t in job["transitions"]
            if t["source"] == "submit"]


async def test_a_failure_before_the_call_is_counted_and_retried(stack: Stack) -> None:
    client = ScriptedClient(stack, lambda call, _: "before" if call <= 2 else None)
    async with stack.service(client=client):
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded")
    assert client.calls == 3
    assert job["attempts"] == 3  # two failures, one success: each counted once
    assert job["last_error"] is None  # cleared by the success
    assert (await stack.sim_stats())["jobs"] == 1


async def test_a_failure_after_pixverse_answered_is_retried_with_the_same_trace_id(
        stack: Stack) -> None:
    client = ScriptedClient(stack, lambda call, _: "after" if call == 1 else None)
    async with stack.service(client=client):
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded")
    assert job["attempts"] == 2
    stats = await stack.sim_stats()
    assert stats["jobs"] == 1 and stats["charges"] == 1  # one video, whatever was retried
    assert stats["cache_hits"] == 1  # the second call carried the same trace id


async def test_a_failure_before_the_attempt_is_counted_once(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Raised before ``_send`` did anything, as after (the tests above): the failure is the
    attempt the claim counted, counted once."""
    real, failed = submission.Submitter._send, []

    async def send(self: submission.Submitter, job: Job) -> None:
        if not failed:
            failed.append(job.id)
            raise TypeError("a bug before anything was counted")
        await real(self, job)

    monkeypatch.setattr(submission.Submitter, "_send", send)
    async with stack.service():
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded")
    assert failed == [created["id"]]
    assert job["attempts"] == 2
    assert (await stack.sim_stats())["jobs"] == 1


async def test_at_the_limit_the_job_is_rejected_and_frees_its_slot(stack: Stack) -> None:
    client = ScriptedClient(stack, lambda _, prompt: "before" if "boom" in prompt else None)
    async with stack.service(client=client, submit_max_attempts=3, max_in_flight=1):
        doomed = await stack.submit(params={**T2V, "prompt": "boom"})
        behind = await stack.submit()
        rejected = await stack.wait_for(doomed["id"], "rejected")
        succeeded = await stack.wait_for(behind["id"], "succeeded")
    assert rejected["attempts"] == 3 and client.calls == 4  # 3 doomed, 1 behind
    assert rejected["last_error"] == ("gave up after 3 attempts: unexpected RuntimeError: "
                                      "boom on call 3")
    assert _submits(rejected)[-1] == ("submitting", "rejected", "applied")
    # The one slot was the doomed job's until it gave up; then the job behind got it.
    gave_up = rejected["transitions"][-1]["recorded_at"]
    [claimed] = [t["recorded_at"] for t in succeeded["transitions"]
                 if t["to_state"] == "submitting"]
    assert claimed >= gave_up
    assert succeeded["attempts"] == 1
    assert (await stack.sim_stats())["jobs"] == 1


async def test_while_retrying_last_error_names_the_failure(stack: Stack) -> None:
    client = ScriptedClient(stack, lambda _, prompt: "before" if "boom" in prompt else None)
    async with stack.service(client=client, submit_max_attempts=1000):
        created = await stack.submit(params={**T2V, "prompt": "boom"})
        deadline = time.monotonic() + 10
        job = await stack.job(created["id"])
        while job["attempts"] < 2:
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.05)
            job = await stack.job(created["id"])
    assert job["state"] == "submitting"
    assert job["last_error"].startswith("unexpected RuntimeError: boom on call ")
    assert job["next_attempt_at"] is not None
