"""The /_sim inspection surface, and the app wired to the real webhook dispatcher."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.pixverse.signature import verify
from service.simulator import create_app
from tests.simulator.helpers import KEY, TEXT_BODY, Sim, SimFactory, make_config, sim_factory
from tests.support.servers import serve

__all__ = ["sim_factory"]  # fixtures


def test_jobs_list_and_detail(sim_factory: SimFactory) -> None:
    sim = sim_factory()
    first = sim.text_video()
    second = sim.text_video(prompt="fail-me")
    sim.wait_job(first), sim.wait_job(second)
    listed = sim.sim_get("/jobs")
    assert listed["total"] == 2
    assert [j["id"] for j in sim.sim_get("/jobs", params={"status": "8"})["jobs"]] == [second]
    assert sim.sim_get("/jobs", params={"kind": "fusion"})["total"] == 0
    job = sim.job(first)
    assert job["kind"] == "text_to_video" and job["api_key"] == KEY
    assert job["credits"] == 45 and job["status_calls"] == 0
    assert job["finished_at"] >= job["created_at"]
    assert job["payload"]["prompt"] == TEXT_BODY["prompt"]
    assert sim.client.get("/_sim/jobs/999").status_code == 404


def test_stats_per_key(sim_factory: SimFactory) -> None:
    sim = sim_factory()
    sim.text_video()
    sim.post("/video/text/generate", {"prompt": "x"})  # 400011
    stats = sim.stats()
    assert stats["submissions"] == 2 and stats["jobs"] == 1 and stats["charges"] == 1
    assert stats["credits_charged"] == 45 and stats["errors"] == {"400011": 1}
    assert stats["jobs_per_status"] in ({"5": 1}, {"1": 1})


def test_accounts_can_be_created_and_changed_at_runtime(sim_factory: SimFactory) -> None:
    sim = sim_factory()
    assert sim.call("GET", "/account/balance", key="new-key").json()["ErrCode"] == 10002
    created = sim.client.put("/_sim/accounts/new-key",
                             json={"credits": 77, "credit_package": 3,
                                   "webhook_url": "http://127.0.0.1:9/hook",
                                   "webhook_secret": "s", "concurrency_limit": 1})
    assert created.status_code == 200
    assert created.json()["credit_monthly"] == 77
    balance = sim.get("/account/balance", key="new-key")["Resp"]
    assert (balance["credit_monthly"], balance["credit_package"]) == (77, 3)
    assert sim.client.put("/_sim/accounts/new-key", json={"bogus": 1}).status_code == 400
    assert sim.client.put("/_sim/accounts/new-key", json={"credits": "9"}).status_code == 400
    accounts = {a["api_key"]: a for a in sim.sim_get("/accounts")["accounts"]}
    assert accounts["new-key"]["concurrency_limit"] == 1


def test_reset_forgets_everything_and_restores_balances(sim_factory: SimFactory) -> None:
    sim = sim_factory()
    video_id = sim.text_video()
    assert sim.client.post("/_sim/reset").status_code == 200
    assert sim.sim_get("/jobs")["total"] == 0 and sim.sim_get("/stats")["keys"] == {}
    assert sim.get(f"/video/result/{video_id}")["ErrCode"] == 500008
    assert sim.get("/account/balance")["Resp"]["credit_monthly"] == 100_000


def test_deliveries_delegate_to_the_dispatcher(sim_factory: SimFactory) -> None:
    sim = sim_factory()
    video_id = sim.text_video()
    sim.wait_published(video_id)
    found = sim.sim_get("/deliveries", params={"video_id": str(video_id)})
    assert found["total"] == 1 and found["deliveries"][0]["payload"]["id"] == str(video_id)


def test_app_state_exposes_the_simulator(sim_factory: SimFactory) -> None:
    sim: Sim = sim_factory()
    assert sim.dispatcher.started


# -- the real dispatcher -------------------------------------------------------------------------


def test_a_finished_job_reaches_a_real_receiver_signed_with_the_trace_id() -> None:
    hits: list[tuple[dict[str, str], bytes]] = []
    arrived = threading.Event()

    async def hook(request: Request) -> PlainTextResponse:
        hits.append((dict(request.headers), await request.body()))
        arrived.set()
        return PlainTextResponse("ok")

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with serve(receiver) as hook_base:
        config = make_config()
        config.accounts[KEY].webhook_url = f"{hook_base}/hook"
        config.accounts[KEY].webhook_secret = "e2e-secret"
        with serve(create_app(config)) as base, httpx.Client(base_url=base) as client:
            response = client.post("/openapi/v2/video/text/generate", json=TEXT_BODY,
                                   headers={"API-KEY": KEY, "Ai-trace-id": "trace-e2e"})
            video_id = response.json()["Resp"]["video_id"]
            assert arrived.wait(5)
            headers, body = hits[0]
            verify(body, headers, ["e2e-secret"])
            assert headers["ai-trace-id"] == "trace-e2e"
            payload: dict[str, Any] = json.loads(body)
            assert payload["id"] == str(video_id) and payload["status"] == 1
            assert payload["url"] == f"{base}/media/videos/{video_id}.mp4"
            deadline = time.monotonic() + 5
            while True:
                records = client.get("/_sim/deliveries").json()["deliveries"]
                if records and records[0]["state"] == "delivered":
                    break
                assert time.monotonic() < deadline, records
                time.sleep(0.02)
            stats = client.get("/_sim/stats").json()["keys"][KEY]
            assert stats["status_calls"] == 0
