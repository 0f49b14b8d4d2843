"""The operator's /api actions end to end, over a running service and simulator: a replayed
task runs its handler again once per request, bulk retry revives dead tasks together, and a
task's history shows every run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.service.conftest import Stack
from tests.service.test_handlers import FORWARD_SECRET, CallbackReceiver
from tests.support.servers import running_server

pytestmark = pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)


async def _runs(stack: Stack, task_id: int, count: int, timeout: float = 15.0,
                ) -> dict[str, Any]:
    """The task once it has ``count`` runs and is no longer pending or running."""
    deadline = time.monotonic() + timeout
    while True:
        task = (await stack.http.get(f"{stack.service_url}/api/tasks/{task_id}",
                                     headers=stack.auth)).json()
        if len(task["runs"]) >= count and task["state"] in ("succeeded", "dead"):
            return dict(task)
        assert time.monotonic() < deadline, task
        await asyncio.sleep(0.05)


async def test_replay_resends_a_forwarded_event_once_per_request(stack: Stack) -> None:
    receiver = CallbackReceiver()
    async with running_server(receiver.app) as callback_base, \
            stack.service(forward_secret=FORWARD_SECRET):
        job = await stack.submit(callback_url=f"{callback_base}/hook")
        await stack.wait_for(job["id"], "succeeded")
        tasks = await stack.wait_for_tasks(job["id"], "succeeded")
        [forward] = [t for t in tasks if t["handler"] == "forward"
                     and t["idempotency_key"].endswith(":succeeded:forward")]
        assert [e["type"] for e in receiver.verified].count("job.succeeded") == 1
        for replays in (1, 2):
            answer = await stack.http.post(
                f"{stack.service_url}/api/tasks/{forward['id']}/replay", headers=stack.auth)
            assert answer.status_code == 200 and answer.json()["state"] == "pending"
            task = await _runs(stack, forward["id"], 1 + replays)
            assert [run["outcome"] for run in task["runs"]] == ["succeeded"] * (1 + replays)
            sent = [e["type"] for e in receiver.verified].count("job.succeeded")
            assert sent == 1 + replays  # once per request, no more
        # The same event each time: receivers that dedupe on webhook-id see a redelivery.
        ids = {h["webhook-id"] for h, e in zip(receiver.headers, receiver.verified, strict=True)
               if e["type"] == "job.succeeded"}
        assert len(ids) == 1
        missing = await stack.http.post(f"{stack.service_url}/api/tasks/999999/replay",
                                        headers=stack.auth)
        assert missing.status_code == 404


async def test_bulk_retry_revives_dead_tasks_and_keeps_their_runs(stack: Stack) -> None:
    receiver = CallbackReceiver()
    receiver.failing = True
    async with running_server(receiver.app) as callback_base, \
            stack.service(forward_secret=FORWARD_SECRET, task_max_attempts=1):
        jobs = [await stack.submit(callback_url=f"{callback_base}/hook") for _ in range(2)]
        for job in jobs:
            await stack.wait_for(job["id"], "succeeded")
            await stack.wait_for_tasks(job["id"], "dead", "succeeded")
        dead = await stack.tasks(state="dead")
        assert dead and {t["handler"] for t in dead} == {"forward"}
        refused = await stack.http.post(f"{stack.service_url}/api/tasks/retry",
                                        headers=stack.auth, json={})
        assert refused.status_code == 422 and refused.json()["field"] == "task_ids"

        receiver.failing = False
        answer = await stack.http.post(f"{stack.service_url}/api/tasks/retry",
                                       headers=stack.auth,
                                       json={"task_ids": [t["id"] for t in dead]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["retried"] == len(dead)
        for task in dead:
            detail = await _runs(stack, task["id"], 2)
            assert [run["outcome"] for run in detail["runs"]] == ["dead", "succeeded"]
        assert len(receiver.verified) == len(dead)  # each dead event delivered once
        again = await stack.http.post(f"{stack.service_url}/api/tasks/retry",
                                      headers=stack.auth, json={"all": True})
        assert again.json() == {"retried": 0, "tasks": []}
