"""The event core end to end: submit -> PixVerse (the simulator) -> webhook or poll -> state.

Everything runs over loopback with real uvicorn: the simulator, and pixhook's app with its
submitter and reconciler in the background.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.service.conftest import T2V, Stack

# The event core is store-agnostic: every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)


def _applied(job: dict) -> list[tuple[str | None, str, str]]:
    return [(t["from_state"], t["to_state"], t["source"])
            for t in job["transitions"] if t["outcome"] == "applied"]


async def test_submit_webhook_succeeded_with_zero_status_calls(stack: Stack) -> None:
    async with stack.service():
        created = await stack.submit()
        assert created["state"] == "queued" and created["trace_id"]
        job = await stack.wait_for(created["id"], "succeeded")
        await asyncio.sleep(1.5)  # past the webhook grace: the reconciler must stay quiet
    assert _applied(job) == [
        (None, "queued", "submit"), ("queued", "submitting", "submit"),
        ("submitting", "generating", "submit"), ("generating", "succeeded", "webhook"),
    ]
    assert job["video_id"] > 2**53 and job["video_id_str"] == str(job["video_id"])
    stats = await stack.sim_stats()
    assert stats["status_calls"] == 0
    assert stats["jobs"] == 1 and stats["charges"] == 1


async def test_dropped_webhook_is_healed_by_the_reconciler(stack: Stack) -> None:
    await stack.set_chaos(webhook_drop_rate=1.0)
    async with stack.service():
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded", timeout=20)
    assert _applied(job)[-1] == ("generating", "succeeded", "poll")
    stats = await stack.sim_stats()
    assert 1 <= stats["status_calls"] <= 3


async def test_moderation_and_failure_outcomes(stack: Stack) -> None:
    async with stack.service():
        moderated = await stack.submit(params={**T2V, "prompt": "an nsfw scene"})
        failed = await stack.submit(params={**T2V, "prompt": "please fail-me"})
        assert (await stack.wait_for(moderated["id"], "moderation_failed"))["state"]
        assert (await stack.wait_for(failed["id"], "failed"))["state"]


async def test_duplicated_and_reordered_webhooks_leave_the_same_history(stack: Stack) -> None:
    await stack.set_chaos(webhook_duplicate_rate=1.0, webhook_reorder_window=3,
                          webhook_reorder_hold_seconds=0.3, seed=7)
    async with stack.service():
        ids = [(await stack.submit(params={**T2V, "seed": i}))["id"] for i in range(5)]
        jobs = [await stack.wait_for(i, "succeeded") for i in ids]
        await asyncio.sleep(1.0)  # let the duplicates land
        jobs = [await stack.job(i) for i in ids]
    for job in jobs:
        assert _applied(job)[-1] == ("generating", "succeeded", "webhook")
        webhook_rows = [t for t in job["transitions"] if t["source"] == "webhook"]
        assert [t["outcome"] for t in webhook_rows] == ["applied", "duplicate"]


async def test_late_generating_after_succeeded_is_ignored(stack: Stack) -> None:
    from service.pixverse import signature

    async with stack.service():
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded")
        body = f'{{"id":"{job["video_id"]}","status":5,"url":"","size":0}}'.encode()
        headers = signature.sign_headers(stack.settings.pixverse_webhook_secret, body)
        response = await stack.http.post(f"{stack.service_url}/webhooks/pixverse",
                                         content=body,
                                         headers={**headers, "Content-Type": "application/json"})
        assert (response.status_code, response.text) == (200, "ok")
        after = await stack.job(created["id"])
    assert after["state"] == "succeeded"
    last = after["transitions"][-1]
    assert (last["to_state"], last["outcome"], last["source"]) == ("generating", "ignored",
                                                                   "webhook")


async def test_restart_loses_nothing_and_submits_nothing_twice(stack: Stack) -> None:
    """Stop the service while submissions are in flight and deliveries are pending; a new
    run on the same database finishes every job, and PixVerse made each video once."""
    # Long enough that jobs accepted before the stop finish while the service is down.
    stack.sim.generation_seconds = 1.5
    # Half the create calls fail after PixVerse committed: the ambiguous case.
    await stack.set_chaos(api_5xx_rate=0.5, api_chaos_after_commit=True,
                          api_chaos_paths=["/openapi/v2/video/text"], seed=3)
    async with stack.service():
        ids = [(await stack.submit(params={**T2V, "seed": i}))["id"] for i in range(12)]
        await asyncio.sleep(0.3)  # some accepted, some retrying, none finished
    # Down: webhooks for jobs finishing now fail, and PixVerse retries them.
    await asyncio.sleep(2.0)
    await stack.set_chaos(api_5xx_rate=0.0)
    async with stack.service():
        jobs = [await stack.wait_for(i, "succeeded", timeout=30) for i in ids]
    stats = await stack.sim_stats()
    assert stats["jobs"] == 12, stats  # one video per job, whatever was retried
    assert stats["charges"] == 12, stats
    assert stats["cache_hits"] >= 1, stats  # ambiguous failures were retried, same trace id
    deliveries = (await stack.http.get(f"{stack.sim_url}/_sim/deliveries")).json()
    retried = [d for d in deliveries["deliveries"] if len(d["attempts"]) > 1]
    assert retried, "no webhook had to be retried across the restart"
    assert len({job["video_id"] for job in jobs}) == 12
    for job in jobs:
        assert _applied(job)[-1][1] == "succeeded"
