"""/api auth and validation; concurrency limits keep jobs queued; permanent errors reject."""

from __future__ import annotations

import asyncio

import pytest

from service.pixverse import errors
from service.simulator.config import DEFAULT_API_KEY
from tests.service.conftest import T2V, Stack


async def test_api_requires_the_bearer_token(stack: Stack) -> None:
    async with stack.service():
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            response = await stack.http.get(f"{stack.service_url}/api/jobs", headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
        response = await stack.http.post(f"{stack.service_url}/api/jobs",
                                         json={"kind": "text_to_video", "params": T2V})
        assert response.status_code == 401
        listed = await stack.http.get(f"{stack.service_url}/api/jobs", headers=stack.auth)
        assert listed.json() == {"jobs": [], "next_cursor": None}  # nothing was created


async def test_validation_errors_are_422_naming_the_field(stack: Stack) -> None:
    cases = [
        ({"kind": "text_to_video", "params": {**T2V, "duration": 99}}, "params.duration"),
        ({"kind": "text_to_video", "params": {**T2V, "seed": -1}}, "params.seed"),
        ({"kind": "text_to_video", "params": {"prompt": "x"}}, "params.model"),
        ({"kind": "make_it_pretty", "params": {}}, "kind"),
        ({"params": T2V}, "kind"),
        ({"kind": "text_to_video", "params": T2V, "then": [{"kind": "nope"}]}, "then[0].kind"),
        ({"kind": "text_to_video", "params": T2V, "callback_url": "ftp://x"}, "callback_url"),
        ({"kind": "text_to_video", "params": T2V, "labels": {"a": 1}}, "labels"),
    ]
    async with stack.service():
        for body, field in cases:
            response = await stack.http.post(f"{stack.service_url}/api/jobs", json=body,
                                             headers=stack.auth)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["field"] == field, response.json()
        response = await stack.http.post(f"{stack.service_url}/api/jobs", content=b"{oops",
                                         headers=stack.auth)
        assert response.status_code == 422
        listed = await stack.http.get(f"{stack.service_url}/api/jobs", headers=stack.auth)
        assert listed.json()["jobs"] == []
    assert (await stack.sim_stats()).get("submissions", 0) == 0


async def test_list_filters_and_cursor_pagination(stack: Stack) -> None:
    async with stack.service():
        ok = [(await stack.submit(params={**T2V, "seed": i}))["id"] for i in range(5)]
        bad = (await stack.submit(params={**T2V, "prompt": "nsfw"}))["id"]
        for job_id in ok:
            await stack.wait_for(job_id, "succeeded")
        await stack.wait_for(bad, "moderation_failed")
        seen, cursor = [], None
        while True:
            params = {"state": "succeeded", "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await stack.http.get(f"{stack.service_url}/api/jobs", params=params,
                                         headers=stack.auth)).json()
            assert len(page["jobs"]) <= 2
            seen += [job["id"] for job in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(ok, reverse=True)  # newest first, each once
        moderated = (await stack.http.get(f"{stack.service_url}/api/jobs",
                                          params={"state": "moderation_failed"},
                                          headers=stack.auth)).json()
        assert [job["id"] for job in moderated["jobs"]] == [bad]
        unknown = await stack.http.get(f"{stack.service_url}/api/jobs/job_nope",
                                       headers=stack.auth)
        assert unknown.status_code == 404
        bad_state = await stack.http.get(f"{stack.service_url}/api/jobs",
                                         params={"state": "done"}, headers=stack.auth)
        assert (bad_state.status_code, bad_state.json()["field"]) == (422, "state")


async def test_pixverse_concurrency_limit_keeps_jobs_queued(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PixVerse sends no Retry-After with 500044; the 5 s default would make this test wait.
    monkeypatch.setattr(errors, "DEFAULT_CONCURRENCY_RETRY_AFTER", 0.5)
    stack.sim.accounts[DEFAULT_API_KEY].concurrency_limit = 2
    stack.sim.generation_seconds = 0.4
    async with stack.service():
        ids = [(await stack.submit(params={**T2V, "seed": i}))["id"] for i in range(5)]
        jobs = [await stack.wait_for(i, "succeeded", timeout=40) for i in ids]
    requeued = [j for j in jobs if any(t["to_state"] == "queued" and t["from_state"] ==
                                       "submitting" for t in j["transitions"])]
    assert requeued, "500044 was never answered, so the test proved nothing"
    stats = await stack.sim_stats()
    assert stats["jobs"] == 5 and stats["charges"] == 5
    assert stats["errors"].get("500044", 0) >= 1


async def test_local_in_flight_limit(stack: Stack) -> None:
    stack.sim.generation_seconds = 0.3
    async with stack.service(max_in_flight=1):
        ids = [(await stack.submit(params={**T2V, "seed": i}))["id"] for i in range(3)]
        states = []
        for _ in range(20):
            listed = (await stack.http.get(f"{stack.service_url}/api/jobs",
                                           headers=stack.auth)).json()["jobs"]
            states.append(sum(j["state"] in ("submitting", "generating") for j in listed))
            await asyncio.sleep(0.05)
        for job_id in ids:
            await stack.wait_for(job_id, "succeeded", timeout=20)
    assert max(states) == 1
    assert (await stack.sim_stats())["errors"].get("500044", 0) == 0


async def test_permanent_error_rejects_with_the_err_code(stack: Stack) -> None:
    stack.sim.accounts[DEFAULT_API_KEY].credit_monthly = 10
    async with stack.service():
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "rejected")
    assert job["last_error"].startswith("ErrCode 500090")
    assert job["video_id"] is None
    assert (await stack.sim_stats())["jobs"] == 0


async def test_poll_mode_off_never_polls(stack: Stack) -> None:
    await stack.set_chaos(webhook_drop_rate=1.0)
    async with stack.service(poll_mode="off"):
        created = await stack.submit()
        await stack.wait_for(created["id"], "generating")
        await asyncio.sleep(1.5)
        assert (await stack.job(created["id"]))["state"] == "generating"
    assert (await stack.sim_stats())["status_calls"] == 0


async def test_poll_deadline_fails_a_job_that_never_finishes(stack: Stack) -> None:
    stack.sim.generation_seconds = 60
    async with stack.service(webhook_grace=0.2, poll_deadline=0.5):
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "failed", timeout=10)
    assert job["transitions"][-1]["source"] == "poll"
    assert "PIXHOOK_POLL_DEADLINE" in job["transitions"][-1]["payload"]


async def test_poll_mode_always_polls_even_while_webhooks_flow(stack: Stack) -> None:
    stack.sim.generation_seconds = 1.0
    async with stack.service(poll_mode="always", reconcile_interval=0.1):
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded")
    assert (await stack.sim_stats())["status_calls"] >= 1
    sources = {t["source"] for t in job["transitions"] if t["to_state"] == "generating"}
    assert "poll" in sources  # a poll saw status 5 and was logged as a duplicate
