"""Trace-id idempotency and the concurrency cap, through the client."""

from __future__ import annotations

import asyncio

import pytest

from service.pixverse import models
from service.pixverse.errors import ConcurrencyLimitError
from tests.contract.conftest import Sim, SimFactory

TEXT = models.TextToVideo(prompt="a paper lantern drifts over a misty lake", model="v5",
                          duration=5, quality="540p", aspect_ratio="16:9")


async def test_the_same_trace_id_twice_is_one_job_charged_once(shared_sim: Sim) -> None:
    key = shared_sim.new_account()
    async with shared_sim.client(key) as client:
        first = await client.text_to_video(TEXT, trace_id="idem-1")
        again = await client.text_to_video(TEXT, trace_id="idem-1")
        other = await client.text_to_video(TEXT, trace_id="idem-2")
        assert len(client.transport.sent("POST")) == 3  # the client did send it twice
        balance = await client.balance()
    assert again.video_id == first.video_id
    assert other.video_id != first.video_id
    stats = shared_sim.stats(key)
    assert (stats["submissions"], stats["cache_hits"]) == (3, 1)
    assert (stats["jobs"], stats["charges"], stats["credits_charged"]) == (2, 2, 2 * 45)
    assert balance.total == 100_000 - 2 * 45
    assert [job["trace_id"] for job in shared_sim.jobs(key)] == ["idem-1", "idem-2"]


async def test_concurrent_twins_with_one_trace_id_make_one_job(shared_sim: Sim) -> None:
    key = shared_sim.new_account()
    async with shared_sim.client(key) as client:
        twins = await asyncio.gather(
            *(client.text_to_video(TEXT, trace_id="twin") for _ in range(5)))
    assert len({twin.video_id for twin in twins}) == 1
    assert len(shared_sim.jobs(key)) == 1
    assert shared_sim.stats(key)["charges"] == 1


async def test_an_upload_repeated_with_its_trace_id_is_stored_once(shared_sim: Sim) -> None:
    key = shared_sim.new_account()
    async with shared_sim.client(key) as client:
        first = await client.upload_media(b"v" * 10, filename="a.mp4", trace_id="up-1")
        again = await client.upload_media(b"v" * 10, filename="a.mp4", trace_id="up-1")
    assert again.media_id == first.media_id
    assert len(shared_sim.sim_get("/uploads", params={"api_key": key})["uploads"]) == 1


async def test_concurrency_cap(sim_factory: SimFactory) -> None:
    sim = sim_factory(generation_seconds=60.0)  # jobs only end when forced
    key = sim.new_account(concurrency_limit=2)
    async with sim.client(key) as client:
        running = [(await client.text_to_video(TEXT)).job_id for _ in range(2)]
        with pytest.raises(ConcurrencyLimitError) as exc:
            await client.text_to_video(TEXT, trace_id="third")
        assert exc.value.err_code == 500044
        assert exc.value.retryable is True
        assert exc.value.retry_after is not None and exc.value.retry_after > 0
        assert exc.value.trace_id == "third"
        assert sim.stats(key)["charges"] == 2  # the refused submit cost nothing

        sim.finish(running[0])
        # Errors are not cached, so the refused call's own trace id now goes through.
        third = await client.text_to_video(TEXT, trace_id="third")
        assert third.job_id not in running
        assert (await client.video_result(third.job_id)).status == 5
        with pytest.raises(ConcurrencyLimitError):  # at the cap again
            await client.text_to_video(TEXT)
    stats = sim.stats(key)
    assert (stats["jobs"], stats["running"], stats["errors"]) == (3, 2, {"500044": 2})
