"""The built-in handlers end to end: simulator -> webhook -> tasks -> handlers, over loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import standardwebhooks
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from handlers.followup import step_trace_id
from tests.service.conftest import Stack
from tests.support.servers import running_server
from tests.support.slack import SlackReceiver

EXTEND = {"prompt": "rise above the clouds", "model": "v5", "duration": 5, "quality": "540p",
          "seed": 7}
SOUND = {"original_sound_switch": True, "sound_effect_content": "rain on a tin roof"}
TERMINAL = {"succeeded", "failed", "moderation_failed", "rejected", "deleted"}
FORWARD_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _chain_jobs(stack: Stack, root_id: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The chain's jobs, root first, once its last job finished and ran its handlers."""
    deadline = time.monotonic() + timeout
    while True:
        listed = (await stack.http.get(f"{stack.service_url}/api/jobs", headers=stack.auth,
                                       params={"limit": "200"})).json()["jobs"]
        by_parent = {job["parent_job_id"]: job for job in listed if job["parent_job_id"]}
        chain = [next(job for job in listed if job["id"] == root_id)]
        while chain[-1]["id"] in by_parent:
            chain.append(by_parent[chain[-1]["id"]])
        last = chain[-1]
        tasks = await stack.tasks(job_id=last["id"])
        if last["state"] in TERMINAL and tasks and all(
                t["state"] in ("succeeded", "dead") for t in tasks):
            if last["id"] not in {j["parent_job_id"] for j in
                                  (await stack.http.get(f"{stack.service_url}/api/jobs",
                                                        headers=stack.auth,
                                                        params={"limit": "200"})).json()["jobs"]}:
                return [await stack.job(job["id"]) for job in chain]
        assert time.monotonic() < deadline, f"the chain did not finish: {chain}"
        await asyncio.sleep(0.05)


async def test_three_step_chain_three_submissions_three_downloads(stack: Stack) -> None:
    async with stack.service():
        root = await stack.submit(then=[{"kind": "extend", "params": EXTEND},
                                        {"kind": "sound_effect", "params": SOUND}],
                                  labels={"batch": "b1"})
        jobs = await _chain_jobs(stack, root["id"])
        assert [j["kind"] for j in jobs] == ["text_to_video", "extend", "sound_effect"]
        assert [j["state"] for j in jobs] == ["succeeded"] * 3
        for job in jobs:
            await stack.wait_for_tasks(job["id"], "succeeded")
        jobs = [await stack.job(j["id"]) for j in jobs]

    for parent, child in zip(jobs, jobs[1:]):
        assert child["parent_job_id"] == parent["id"]
        assert child["params"]["source_video_id"] == parent["video_id"]
        assert child["trace_id"] == step_trace_id(parent["trace_id"], 0)
        assert child["labels"] == {"batch": "b1"}
    assert jobs[1]["then"] == [{"kind": "sound_effect", "params": SOUND}]
    assert jobs[2]["then"] == []

    stats = await stack.sim_stats()
    assert stats["jobs"] == 3 and stats["charges"] == 3  # three submissions, no more
    assert stats["status_calls"] == 0
    files = sorted(Path(stack.settings.media_dir).iterdir())
    assert len(files) == 3  # three downloads, no temp files left behind
    for job in jobs:
        # /api shows a signed link, not the server's path; the file is named after the job.
        [path] = [file for file in files if file.stem == job["id"]]
        assert job["media_url"] and path.stat().st_size == job["media_size"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == job["media_sha256"]


async def test_a_failed_step_stops_the_chain_and_says_so(stack: Stack) -> None:
    async with stack.service():
        root = await stack.submit(then=[
            {"kind": "extend", "params": {**EXTEND, "prompt": "fail-me please"}},
            {"kind": "sound_effect", "params": SOUND}])
        jobs = await _chain_jobs(stack, root["id"])
        assert [(j["kind"], j["state"]) for j in jobs] == [
            ("text_to_video", "succeeded"), ("extend", "failed")]
        failed = jobs[1]
    assert "chain stopped: failed, so sound_effect did not run" in failed["last_error"]
    assert (await stack.sim_stats())["jobs"] == 2


async def test_follow_up_steps_are_validated_at_submission(stack: Stack) -> None:
    async with stack.service():
        cases = [
            ([{"kind": "image_to_video", "params": {}}], "then[0].kind"),
            ([{"kind": "extend", "params": {**EXTEND, "duration": 7}}],
             "then[0].params.duration"),
            ([{"kind": "extend", "params": {**EXTEND, "source_video_id": 5}}],
             "then[0].params.source_video_id"),
        ]
        for then, field in cases:
            response = await stack.http.post(
                f"{stack.service_url}/api/jobs", headers=stack.auth,
                json={"kind": "text_to_video", "params": {"prompt": "x", "model": "v6",
                      "duration": 5, "quality": "540p", "aspect_ratio": "16:9"},
                      "then": then})
            assert response.status_code == 422, response.text
            assert response.json()["field"] == field


class CallbackReceiver:
    """The submitter's own endpoint: verifies with standardwebhooks, can be told to fail."""

    def __init__(self) -> None:
        self.verified: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.failing = False
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> PlainTextResponse:
        if self.failing:
            return PlainTextResponse("down", status_code=500)
        body = await request.body()
        event = standardwebhooks.Webhook(FORWARD_SECRET).verify(body, dict(request.headers))
        self.verified.append(event)
        self.headers.append(dict(request.headers))
        return PlainTextResponse("thanks")


async def test_forwarded_events_verify_and_dead_tasks_can_be_retried(stack: Stack) -> None:
    receiver = CallbackReceiver()
    async with running_server(receiver.app) as callback_base, \
            stack.service(forward_secret=FORWARD_SECRET, task_max_attempts=2):
        callback = f"{callback_base}/hook"
        job = await stack.submit(callback_url=callback)
        await stack.wait_for(job["id"], "succeeded")
        await stack.wait_for_tasks(job["id"], "succeeded")
        types = [event["type"] for event in receiver.verified]
        assert types == ["job.generating", "job.succeeded"]
        done = receiver.verified[-1]["data"]
        assert done["id"] == job["id"] and done["state"] == "succeeded"
        assert done["result"]["url"].endswith(".mp4")

        receiver.failing = True
        second = await stack.submit(callback_url=callback)
        await stack.wait_for(second["id"], "succeeded")
        await stack.wait_for_tasks(second["id"], "dead", "succeeded")
        dead = await stack.tasks(state="dead", job_id=second["id"])
        assert [t["handler"] for t in dead] == ["forward"] * len(dead) and dead
        detail = (await stack.http.get(f"{stack.service_url}/api/tasks/{dead[0]['id']}",
                                       headers=stack.auth)).json()
        assert [run["outcome"] for run in detail["runs"]] == ["retry", "dead"]
        assert all("500" in run["error"] for run in detail["runs"])

        receiver.failing = False
        for task in dead:
            retried = await stack.http.post(
                f"{stack.service_url}/api/tasks/{task['id']}/retry", headers=stack.auth)
            assert retried.status_code == 200 and retried.json()["state"] == "pending"
        await stack.wait_for_tasks(second["id"], "succeeded")
        again = await stack.http.post(f"{stack.service_url}/api/tasks/{dead[0]['id']}/retry",
                                      headers=stack.auth)
        assert again.status_code == 409
        missing = await stack.http.post(f"{stack.service_url}/api/tasks/999999/retry",
                                        headers=stack.auth)
        assert missing.status_code == 404
        assert (await stack.http.post(f"{stack.service_url}/api/tasks/1/retry")).status_code \
            == 401

    ids = {h["webhook-id"] for h in receiver.headers}
    assert len(ids) == len(receiver.headers)  # one delivery per event, each its own id
    second_types = [e["type"] for e in receiver.verified if e["data"]["id"] == second["id"]]
    assert sorted(second_types) == ["job.generating", "job.succeeded"]


async def test_slack_messages_arrive_and_a_429_is_honoured(stack: Stack) -> None:
    slack = SlackReceiver(path="/services/T000/B000/SECRETxyz")
    async with running_server(slack.app) as slack_base:
        webhook_url = f"{slack_base}{slack.path}"
        slack.refuse_next(1, status=429, retry_after=1)
        async with stack.service(slack_webhook_url=webhook_url):
            ok = await stack.submit()
            bad = await stack.submit(params={**_t2v(), "prompt": "fail-me now"})
            await stack.wait_for(ok["id"], "succeeded")
            await stack.wait_for(bad["id"], "failed")
            await stack.wait_for_tasks(ok["id"], "succeeded", timeout=20)
            await stack.wait_for_tasks(bad["id"], "succeeded", timeout=20)
            slack_tasks = await stack.tasks(handler="slack")
            [limited] = [t for t in slack_tasks if t["attempts"] == 2]
            runs = (await stack.http.get(f"{stack.service_url}/api/tasks/{limited['id']}",
                                         headers=stack.auth)).json()["runs"]
    assert len(slack.received) == 2 and slack.refused == 1
    assert sum(t["attempts"] for t in slack_tasks) == 3  # one run was answered 429
    assert runs[0]["outcome"] == "retry" and "rate_limited" in runs[0]["error"]
    assert runs[1]["started_at"] - runs[0]["started_at"] >= 1.0  # Retry-After: 1
    text = json.dumps(slack.received)
    assert ok["id"] in text and bad["id"] in text
    assert f"{stack.settings.public_url}/media/" in text  # the downloaded video's signed link


def _t2v() -> dict[str, Any]:
    from tests.service.conftest import T2V

    return dict(T2V)
