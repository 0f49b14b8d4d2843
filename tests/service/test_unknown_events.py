"""A validly signed event never makes PixVerse give up: the simulator (standing in for PixVerse,
which retries anything but ``200 ok`` about 8 times, then gives the event up) sends what this
version does not know, and pixhook keeps it, answers ``ok``, shows it and changes no job."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from service.cli import cli
from service.pixverse import signature
from tests.dashboard.conftest import dashboard_service
from tests.service.conftest import API_TOKEN, Stack

UNKNOWN_9 = "unknown PixVerse status 9; the job is unchanged"


def _snapshot(job: dict[str, Any]) -> tuple[Any, ...]:
    return (job["state"], len(job["transitions"]), job["updated_at"], job["last_event_at"],
            len(job["tasks"]))


async def _finished_job(stack: Stack) -> dict[str, Any]:
    created = await stack.submit()
    await stack.wait_for(created["id"], "succeeded")
    await stack.wait_for_tasks(created["id"], "succeeded")  # the download updates the job too
    return await stack.job(created["id"])


async def _delivered(stack: Stack, video_id: int, status: int) -> dict[str, Any]:
    """The simulator's record of its webhook with ``status`` for the video, once settled."""
    deadline = time.monotonic() + 10
    while True:
        found = (await stack.http.get(f"{stack.sim_url}/_sim/deliveries",
                                      params={"video_id": str(video_id)})).json()["deliveries"]
        mine = [d for d in found if d["status"] == status and d["state"] != "pending"]
        if mine:
            return dict(mine[-1])
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


async def _webhooks_total(stack: Stack, outcome: str) -> float:
    text = (await stack.http.get(f"{stack.service_url}/metrics")).text
    match = re.search(rf'^pixhook_webhooks_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)
async def test_an_unknown_status_is_kept_answered_ok_shown_and_changes_nothing(
        stack: Stack) -> None:
    async with dashboard_service(stack) as browser:
        job = await _finished_job(stack)
        video_id = job["video_id"]
        pushed = await stack.http.post(f"{stack.sim_url}/_sim/jobs/{video_id}/webhook",
                                       json={"status": 9})
        assert pushed.status_code == 200, pushed.text
        record = await _delivered(stack, video_id, status=9)
        # Taken at the first attempt: PixVerse has nothing to retry, nothing to give up.
        assert record["state"] == "delivered"
        assert [(a["http_status"], a["response_body"]) for a in record["attempts"]] == [
            (200, "ok")]

        after = await stack.job(job["id"])
        assert _snapshot(after) == _snapshot(job)
        [kept] = after["unapplied_webhooks"]
        assert kept["error"] == UNKNOWN_9 and kept["video_id"] == video_id
        assert json.loads(kept["body"])["status"] == 9
        assert await _webhooks_total(stack, "unknown_status") == 1

        timeline = await asyncio.to_thread(CliRunner().invoke, cli, ["events", job["id"]], env={
            "PIXHOOK_URL": stack.service_url, "PIXHOOK_API_TOKEN": API_TOKEN,
            "PIXHOOK_CONFIG": "/nonexistent/pixhook.toml"})
        assert timeline.exit_code == 0, timeline.output
        assert UNKNOWN_9 in timeline.output and "not applied" in timeline.output

        await browser.login()
        page = await browser.client.get(f"/jobs/{job['id']}")
        assert page.status_code == 200 and UNKNOWN_9 in page.text


@pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)
async def test_a_signed_event_nothing_can_read_is_kept_and_answered_ok(stack: Stack) -> None:
    async with stack.service():
        job = await _finished_job(stack)
        secret = stack.settings.pixverse_webhook_secret

        async def post(payload: dict[str, Any], nonce: str) -> tuple[int, str]:
            body = json.dumps(payload).encode()
            headers = {**signature.sign_headers(secret, body, nonce=nonce),
                       "Content-Type": "application/json"}
            response = await stack.http.post(f"{stack.service_url}/webhooks/pixverse",
                                             content=body, headers=headers)
            return response.status_code, response.text

        assert await post({"id": str(job["video_id"]), "status": "done"}, "n1") == (200, "ok")
        assert await post({"id": "abc", "status": 1}, "n2") == (200, "ok")  # no job to show it
        assert await post({"id": str(job["video_id"]), "status": 42}, "n3") == (200, "ok")
        assert (await post({"id": str(job["video_id"]), "status": "done"}, "n1"))[0] == 409

        after = await stack.job(job["id"])
        assert _snapshot(after) == _snapshot(job)
        assert [kept["error"] for kept in after["unapplied_webhooks"]] == [
            "status 'done' is not a PixVerse status code; the job is unchanged",
            "unknown PixVerse status 42; the job is unchanged"]
        assert await _webhooks_total(stack, "unreadable_event") == 2
        assert await _webhooks_total(stack, "unknown_status") == 1
        assert await _webhooks_total(stack, "duplicate") == 1


@pytest.mark.parametrize(("null_as", "point_on_whole"), [("null", False), ("", True),
                                                          ("null", True)])
async def test_each_undocumented_spelling_of_the_signed_string_is_accepted(
        stack: Stack, null_as: str, point_on_whole: bool) -> None:
    # Fields PixVerse might add: a null, a whole float, a string; signed in another spelling.
    stack.sim.webhook_extra_fields = {"watermark_url": None, "duration": 5.0, "new_field": "x"}
    stack.sim.webhook_sign_null_as = null_as
    stack.sim.webhook_sign_point_on_whole = point_on_whole
    async with stack.service():
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded")
        record = await _delivered(stack, job["video_id"], status=1)
        assert [a["http_status"] for a in record["attempts"]] == [200]
        assert (await stack.sim_stats())["status_calls"] == 0  # the webhook did it, no poll
        [applied] = [t for t in job["transitions"] if t["source"] == "webhook"]
        payload = json.loads(applied["payload"])
        assert (payload["new_field"], payload["duration"], payload["watermark_url"]) == (
            "x", 5.0, None)


async def test_simulator_defaults_send_the_documented_six_fields(stack: Stack) -> None:
    async with stack.service():
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded")
        [applied] = [t for t in job["transitions"] if t["source"] == "webhook"]
        assert sorted(json.loads(applied["payload"])) == [
            "credits", "has_audio", "id", "size", "status", "url"]


async def test_the_simulator_refuses_to_push_a_nested_field(stack: Stack) -> None:
    async with stack.service():
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded")
        async with httpx.AsyncClient(base_url=stack.sim_url) as sim:
            nested = await sim.post(f"/_sim/jobs/{job['video_id']}/webhook",
                                    json={"fields": {"meta": {"a": 1}}})
            unknown = await sim.post("/_sim/jobs/1/webhook", json={"status": 9})
            boolean = await sim.post(f"/_sim/jobs/{job['video_id']}/webhook",
                                     json={"status": True})
        assert nested.status_code == 400 and "nested" in nested.text
        assert unknown.status_code == 404 and boolean.status_code == 400
