"""Every outgoing handler call is bounded: a huge answer is read only up to
``MAX_ANSWER_BYTES``, and a peer that trickles cannot hold a run (or a worker's task slot) past
``PIXHOOK_OUTBOUND_TIMEOUT``. The peers are raw ASGI apps under uvicorn on loopback; the bytes a
handler pulled are counted by its HTTP client's transport."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import pytest

from handlers.download import DownloadError, DownloadHandler
from handlers.forward import DeliveryError, ForwardHandler
from handlers.slack import SlackDeliveryError, SlackHandler
from service.handler_api import MAX_ANSWER_BYTES, HandlerContext, Job
from service.lifecycle import JobState, TransitionSource
from service.registry import HandlerSet
from service.settings import Settings
from service.worker import TaskRunner
from tests.handlers.conftest import Harness
from tests.handlers.peers import Huge, MiB, PeerTransport, Trickle
from tests.handlers.test_forward import DONE, SECRET
from tests.support.planner import plans
from tests.support.servers import running_server

#: The deadline the tests set (seconds), and how long a run may overshoot it.
DEADLINE = 1.0
SLACK = 2.0
#: A run that is not bounded is stopped by the test after this long, and fails it.
GIVE_UP = 8.0
#: What a bounded read may pull: the cap, plus at most one chunk read past it.
MOST_READ = MAX_ANSWER_BYTES + 64 * 1024


def _settings(harness: Harness, **changes: Any) -> Settings:
    return dataclasses.replace(harness.settings, forward_secret=SECRET,
                               forward_allow_private=True, download_allow_private=True,
                               outbound_timeout=DEADLINE, **changes)


@contextlib.asynccontextmanager
async def _context(harness: Harness, state: JobState, handler: str, settings: Settings,
                   payload: dict[str, Any] | None = None,
                   **job_fields: Any) -> AsyncIterator[tuple[Job, Any, HandlerContext,
                                                             PeerTransport]]:
    """A job's task for ``handler`` and a context whose client counts what it reads."""
    job, transition, task = await harness.transition(handler, state, payload=payload,
                                                     **job_fields)
    transport = PeerTransport()
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        context = dataclasses.replace(harness.context(task, settings=settings), http=http)
        yield job, transition, context, transport


async def _timed(run: Awaitable[None]) -> tuple[BaseException | None, float]:
    """Run ``run`` (given up after :data:`GIVE_UP` s); return what it raised and how long."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(run, GIVE_UP)
    except TimeoutError:
        pytest.fail(f"the run was still going after {GIVE_UP} s: no deadline held it")
    except Exception as exc:  # noqa: BLE001 - the caller checks what it was
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


async def _settled(trickle: Trickle) -> None:
    """Wait (briefly) for the peer to see every connection closed."""
    async with asyncio.timeout(5):
        while trickle.open:
            await asyncio.sleep(0.02)


# -- huge answers -----------------------------------------------------------------------------


async def test_a_huge_answer_to_a_forward_is_read_only_up_to_the_cap(harness: Harness) -> None:
    async with running_server(Huge(64 * MiB)) as url:
        settings = _settings(harness)
        async with _context(harness, JobState.SUCCEEDED, "forward", settings, DONE,
                            callback_url=f"{url}/hook") as (job, transition, context, counted):
            with pytest.raises(DeliveryError, match=r"^HTTP 500 from .*: x{79}…$"):
                await ForwardHandler(settings, {}).run(job, transition, context)
    assert 0 < counted.received <= MOST_READ


async def test_a_huge_answer_to_slack_is_read_only_up_to_the_cap(harness: Harness) -> None:
    async with running_server(Huge(64 * MiB)) as url:
        settings = _settings(harness, slack_webhook_url=f"{url}/services/T/B/x")
        async with _context(harness, JobState.SUCCEEDED, "slack",
                            settings) as (job, transition, context, counted):
            with pytest.raises(SlackDeliveryError, match="HTTP 500"):
                await SlackHandler(settings, {}).run(job, transition, context)
    assert 0 < counted.received <= MOST_READ


# -- peers that trickle -----------------------------------------------------------------------


async def test_a_forward_receiver_that_trickles_fails_the_run_at_the_deadline(
        harness: Harness) -> None:
    trickle = Trickle(interval=0.25)
    async with running_server(trickle) as url:
        settings = _settings(harness)
        async with _context(harness, JobState.SUCCEEDED, "forward", settings, DONE,
                            callback_url=f"{url}/hook") as (job, transition, context, _):
            error, took = await _timed(ForwardHandler(settings, {}).run(job, transition, context))
        assert isinstance(error, DeliveryError), error
        assert "within 1 s (PIXHOOK_OUTBOUND_TIMEOUT)" in str(error)
        assert DEADLINE <= took < DEADLINE + SLACK
        await _settled(trickle)


async def test_a_slack_that_trickles_fails_the_run_at_the_deadline(harness: Harness) -> None:
    trickle = Trickle(interval=0.25)
    async with running_server(trickle) as url:
        settings = _settings(harness, slack_webhook_url=f"{url}/services/T/B/x")
        async with _context(harness, JobState.SUCCEEDED, "slack",
                            settings) as (job, transition, context, _):
            error, took = await _timed(SlackHandler(settings, {}).run(job, transition, context))
        assert isinstance(error, SlackDeliveryError), error
        assert "/services/" not in str(error)
        assert DEADLINE <= took < DEADLINE + SLACK
        await _settled(trickle)


async def test_a_media_host_that_withholds_its_headers_fails_the_run_at_the_deadline(
        harness: Harness) -> None:
    trickle = Trickle(status=200, headers_after=GIVE_UP * 2)
    async with running_server(trickle) as url:
        settings = _settings(harness, pixverse_base_url=f"{url}/openapi/v2")
        async with _context(harness, JobState.SUCCEEDED, "download", settings,
                            {"url": f"{url}/video.mp4"}) as (job, transition, context, _):
            error, took = await _timed(DownloadHandler(settings, {}).run(job, transition,
                                                                         context))
        assert isinstance(error, DownloadError), error
        assert "sent no answer within 1 s" in str(error)
        assert DEADLINE <= took < DEADLINE + SLACK
        await _settled(trickle)


async def test_trickling_receivers_do_not_hold_the_workers_slots(harness: Harness) -> None:
    """One slot, three forwards to a receiver that trickles: each run ends at the deadline
    and frees the slot for the next, so all three are tried within a few deadlines."""
    trickle = Trickle(interval=0.25)
    async with running_server(trickle) as url:
        settings = _settings(harness, handlers=("forward",), task_concurrency=1,
                             task_backoff=60.0)
        jobs = []
        for _ in range(3):
            job = await harness.store.create_job(kind="text_to_video", params={"prompt": "p"},
                                                 callback_url=f"{url}/hook")
            with harness.planner.planning(plans("forward")):
                await harness.store.apply_transition(job.id, JobState.SUCCEEDED,
                                                     source=TransitionSource.WEBHOOK)
            jobs.append(job)

        async def submit(*args: Any, **kwargs: Any) -> Job:
            raise AssertionError("not used here")

        runner = TaskRunner(harness.store, HandlerSet.from_settings(
            settings, available={"forward": ForwardHandler}), settings,
            http=harness.http, submit=submit)
        stop = asyncio.Event()
        running = asyncio.create_task(runner.run(stop))
        started = time.monotonic()
        try:
            async with asyncio.timeout(3 * DEADLINE + 3 * SLACK + 2):
                while runner.runs[("forward", "retry")] < 3:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pytest.fail(f"after {time.monotonic() - started:.1f} s: runs {dict(runner.runs)}, "
                        f"{trickle.served} served: a trickling receiver held the only slot")
        finally:
            stop.set()
            await asyncio.wait_for(running, 15)
        assert trickle.served == 3
        for job in jobs:
            [task] = await harness.store.list_tasks(job_id=job.id)
            assert "PIXHOOK_OUTBOUND_TIMEOUT" in (task.last_error or "")
        await _settled(trickle)
