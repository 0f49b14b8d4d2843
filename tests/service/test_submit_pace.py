"""Submission is not a queue of its own (issue 19, point 2): jobs go to PixVerse as they come,
as many at once as PixVerse takes, and PixVerse's "full" (500044) holds new attempts back
until its wait has passed. Over real uvicorn, against the simulator."""

from __future__ import annotations

import asyncio

import pytest

from service.pixverse import models, results
from service.pixverse.client import PixVerseClient
from service.simulator.config import DEFAULT_API_KEY
from tests.service.conftest import T2V, Stack

pytestmark = pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)

JOBS = 40


class GatheringClient(PixVerseClient):
    """The real client, but each create call waits until ``JOBS`` calls are under way at once
    (or a few seconds passed), and the most under way at once is kept."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack.settings.pixverse_api_key,
                         base_url=stack.settings.pixverse_base_url)
        self.under_way = 0
        self.most = 0
        self.all_in = asyncio.Event()

    async def submit(self, request: models.PixVerseRequest, *,
                     trace_id: str | None = None) -> results.Submission:
        self.under_way += 1
        self.most = max(self.most, self.under_way)
        if self.under_way >= JOBS:
            self.all_in.set()
        try:
            await asyncio.wait_for(self.all_in.wait(), 5)
        except TimeoutError:
            pass
        try:
            return await super().submit(request, trace_id=trace_id)
        finally:
            self.under_way -= 1


async def test_jobs_are_sent_as_they_come_not_sixteen_at_a_time(stack: Stack) -> None:
    """Before: at most 16 attempts at once, and a slot freed only at the next pass."""
    stack.sim.accounts[DEFAULT_API_KEY].concurrency_limit = 1000
    client = GatheringClient(stack)
    async with stack.service(client=client):
        ids = [(await stack.submit(params={**T2V, "seed": i}))["id"] for i in range(JOBS)]
        await asyncio.wait_for(client.all_in.wait(), 4)
        for job_id in ids:
            await stack.wait_for(job_id, "generating", "succeeded", timeout=20)
    assert client.most == JOBS
    stats = await stack.sim_stats()
    assert stats["jobs"] == JOBS and stats["errors"].get("500044", 0) == 0


async def test_a_500044_holds_new_attempts_until_pixverse_has_room(stack: Stack) -> None:
    """Before: every job that came meanwhile was sent, and earned its own 500044."""
    stack.sim.accounts[DEFAULT_API_KEY].concurrency_limit = 1
    stack.sim.generation_seconds = 60.0
    async with stack.service():
        first = (await stack.submit(params={**T2V, "seed": 1}))["id"]
        await stack.wait_for(first, "generating")
        second = (await stack.submit(params={**T2V, "seed": 2}))["id"]
        for _ in range(100):
            if (await stack.sim_stats())["errors"].get("500044", 0):
                break
            await asyncio.sleep(0.05)
        later = [(await stack.submit(params={**T2V, "seed": 3 + i}))["id"] for i in range(3)]
        await asyncio.sleep(1.0)
        stats = await stack.sim_stats()
        states = [(await stack.job(job_id))["state"] for job_id in [second, *later]]
    assert stats["errors"].get("500044", 0) == 1
    assert stats["jobs"] == 1
    assert states == ["queued"] * 4
