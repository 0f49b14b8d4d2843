"""The simulator's API chaos knobs, as the client experiences them."""

from __future__ import annotations

import time

import pytest

from service.pixverse import models
from service.pixverse.errors import (
    OverloadedError,
    PixVerseError,
    RateLimitedError,
    TransportError,
)
from tests.contract.conftest import SimFactory

TEXT = models.TextToVideo(prompt="a paper lantern drifts over a misty lake", model="v5",
                          duration=5, quality="540p", aspect_ratio="16:9")


async def test_5xx_is_overloaded_and_a_post_is_sent_once(sim_factory: SimFactory) -> None:
    sim = sim_factory(chaos={"api_5xx_rate": 1.0, "seed": 1})
    key = sim.new_account()
    async with sim.client(key, get_retries=1) as client:
        with pytest.raises(OverloadedError) as exc:
            await client.text_to_video(TEXT, trace_id="t-5xx")
        assert exc.value.retryable is True
        assert exc.value.http_status in (500, 502, 503) and exc.value.err_code is None
        assert exc.value.trace_id == "t-5xx"
        assert len(client.transport.sent("POST")) == 1
        assert sim.all_stats()["api_faults"] == {"5xx": 1}  # the simulator saw one request
        assert sim.jobs(key) == []

        # A GET is safe to repeat: the client retries it (here once) before giving up.
        with pytest.raises(OverloadedError):
            await client.balance()
        assert len(client.transport.sent("GET")) == 2
    assert sim.all_stats()["api_faults"] == {"5xx": 3}


async def test_a_5xx_post_reaches_the_handler_at_most_once(sim_factory: SimFactory) -> None:
    """With after-commit every faulted POST is handled, so the handler's count is the number
    of requests the client really sent for that trace id."""
    sim = sim_factory(chaos={"api_5xx_rate": 1.0, "api_chaos_after_commit": True, "seed": 1})
    key = sim.new_account()
    async with sim.client(key) as client:
        with pytest.raises(OverloadedError):
            await client.text_to_video(TEXT, trace_id="once")
    assert sim.stats(key)["submissions"] == 1
    assert [job["trace_id"] for job in sim.jobs(key)] == ["once"]


async def test_timeout_is_a_transport_error(sim_factory: SimFactory) -> None:
    sim = sim_factory(chaos={"api_timeout_rate": 1.0, "api_timeout_seconds": 0.6})
    key = sim.new_account()
    async with sim.client(key, timeout=0.15) as client:
        started = time.monotonic()
        with pytest.raises(TransportError) as exc:
            await client.text_to_video(TEXT, trace_id="t-slow")
        assert time.monotonic() - started < 0.5  # the client gave up first
        assert exc.value.retryable is True and exc.value.trace_id == "t-slow"
        assert len(client.transport.sent("POST")) == 1
    assert sim.all_stats()["api_faults"] == {"timeout": 1}


async def test_429_is_rate_limited_with_the_configured_retry_after(
        sim_factory: SimFactory) -> None:
    sim = sim_factory(chaos={"api_429_rate": 1.0, "api_retry_after_seconds": 7})
    key = sim.new_account()
    async with sim.client(key, get_retries=0) as client:
        with pytest.raises(RateLimitedError) as post:
            await client.text_to_video(TEXT)
        with pytest.raises(RateLimitedError) as get:
            await client.balance()
        assert len(client.transport.requests) == 2
    for exc in (post, get):
        assert exc.value.http_status == 429 and exc.value.retryable is True
        assert exc.value.retry_after == 7.0
    assert sim.jobs(key) == []


@pytest.mark.parametrize(("knob", "error"), [
    ({"api_5xx_rate": 1.0}, OverloadedError),
    ({"api_429_rate": 1.0}, RateLimitedError),
    ({"api_timeout_rate": 1.0, "api_timeout_seconds": 0.5}, TransportError),
])
async def test_after_commit_a_retry_with_the_trace_id_gets_the_job_already_made(
        sim_factory: SimFactory, knob: dict[str, float], error: type[PixVerseError]) -> None:
    sim = sim_factory(chaos={**knob, "api_chaos_after_commit": True, "seed": 4})
    key = sim.new_account()
    async with sim.client(key, timeout=0.15) as client:
        with pytest.raises(error) as exc:
            await client.text_to_video(TEXT, trace_id="ambiguous")
        assert exc.value.retryable is True  # so pixhook retries, with the same trace id
        [made] = sim.jobs(key)  # the simulator made the video although the client saw an error
        sim.set_chaos()
        retried = await client.text_to_video(TEXT, trace_id="ambiguous")
        balance = await client.balance()
    assert retried.video_id == made["id"] and retried.trace_id == "ambiguous"
    assert len(sim.jobs(key)) == 1
    stats = sim.stats(key)
    assert (stats["charges"], stats["cache_hits"]) == (1, 1)
    assert balance.total == 100_000 - 45
