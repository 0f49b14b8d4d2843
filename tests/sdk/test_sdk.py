"""The SDK (pixhook_sdk) against a running service and simulator: submit with an idempotency
key, wait through the event stream, iterate events across reconnects; async and sync."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pixhook_sdk import APIError, AsyncPixhook, Event, Pixhook
from tests.api.support import TOKEN, api_app
from tests.core.conftest import postgres_schema, postgres_server  # noqa: F401 - fixtures
from tests.service.conftest import API_TOKEN, T2V, Stack, stack  # noqa: F401 - a fixture
from tests.support.processes import REPO

BOTH = pytest.mark.parametrize("stack", ["sqlite", pytest.param(
    "postgres", marks=pytest.mark.postgres)], indirect=True)


@BOTH
async def test_async_submit_wait_and_events(stack: Stack) -> None:  # noqa: F811
    async with stack.service() as url, AsyncPixhook(url, API_TOKEN) as pixhook:
        job = await pixhook.submit("text_to_video", T2V, labels={"app": "sdk"},
                                   idempotency_key="order-42")
        again = await pixhook.submit("text_to_video", T2V, labels={"app": "sdk"},
                                     idempotency_key="order-42")
        assert again["id"] == job["id"]  # the same key: one job
        done = await asyncio.wait_for(pixhook.wait(job["id"]), 30)
        assert done["state"] == "succeeded"

        seen: list[Event] = []
        async for event in pixhook.events(after=0, labels={"app": "sdk"}, type="transition"):
            seen.append(event)
            if event.job_state == "succeeded":
                break
        assert [e.job_state for e in seen] == ["queued", "submitting", "generating",
                                               "succeeded"]
        assert all(e.job_id == job["id"] and e.is_transition for e in seen)
        with pytest.raises(APIError) as refused:
            await pixhook.submit("text_to_video", {**T2V, "prompt": "other"},
                                 idempotency_key="order-42")
        assert (refused.value.status, refused.value.field) == (422, "Idempotency-Key")


@BOTH
async def test_sync_client_waits_too(stack: Stack) -> None:  # noqa: F811
    async with stack.service() as url:
        def run() -> tuple[dict[str, Any], list[str]]:
            with Pixhook(url, API_TOKEN) as pixhook:
                job = pixhook.submit("text_to_video", T2V)
                done = pixhook.wait(job["id"], timeout=30)
                states = []
                for event in pixhook.events(after=0, job=job["id"], type="transition",
                                            timeout=10):
                    states.append(event.job_state)
                    if event.job_state == "succeeded":
                        break
                return done, states

        done, states = await asyncio.to_thread(run)
        assert done["state"] == "succeeded"
        assert states == ["queued", "submitting", "generating", "succeeded"]


@BOTH
async def test_events_resume_across_stream_ends(stack: Stack) -> None:  # noqa: F811
    """Streams end every 0.3 s here: the iteration reconnects after the last event it had,
    so it sees every event once, in order."""
    from service import event_stream

    before = event_stream.STREAM_SECONDS
    event_stream.STREAM_SECONDS = 0.3
    try:
        async with stack.service(events_poll_interval=0.05) as url, \
                AsyncPixhook(url, API_TOKEN) as pixhook:
            jobs = [await pixhook.submit("text_to_video", {**T2V, "prompt": f"p{i}"})
                    for i in range(3)]
            got: list[Event] = []

            async def follow() -> None:
                async for event in pixhook.events(after=0, type="transition"):
                    got.append(event)
                    if sum(e.job_state == "succeeded" for e in got) == len(jobs):
                        return

            await asyncio.wait_for(follow(), 30)
        sequences = [e.sequence for e in got]
        assert sequences == sorted(set(sequences))
        assert len(got) == 4 * len(jobs)
    finally:
        event_stream.STREAM_SECONDS = before


async def test_wait_times_out(tmp_path: Path) -> None:
    async with api_app(f"sqlite:///{tmp_path / 'api.db'}") as url, \
            AsyncPixhook(url, TOKEN) as pixhook:
        job = await pixhook.submit("text_to_video", T2V)  # stays queued: nothing submits
        with pytest.raises(TimeoutError):
            await pixhook.wait(job["id"], timeout=0.5)

        def blocking() -> None:
            with Pixhook(url, TOKEN) as client, pytest.raises(TimeoutError):
                client.wait(job["id"], timeout=0.5)

        await asyncio.to_thread(blocking)


def test_sdk_needs_only_httpx() -> None:
    code = ("import sys, pixhook_sdk; bad = sorted(m for m in sys.modules if m.split('.')[0] "
            "in {'service', 'starlette', 'uvicorn', 'psycopg', 'sqlite_utils', 'handlers'}); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
