"""API chaos knobs: 5xx, 429 + Retry-After, timeouts, after-commit, path filters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.simulator.config import ChaosConfig
from tests.simulator.helpers import TEXT_BODY, Sim, SimFactory, sim_factory

__all__ = ["sim_factory"]  # fixtures

GENERATE = "/video/text/generate"


def chaos_sim(sim_factory: SimFactory, **chaos: Any) -> Sim:
    return sim_factory(chaos=ChaosConfig(seed=3, **chaos))


def set_chaos(sim: Sim, **chaos: Any) -> None:
    response = sim.client.put("/_sim/chaos", json=chaos)
    assert response.status_code == 200, response.text


def test_5xx_answers_without_an_envelope_and_creates_nothing(sim_factory: SimFactory) -> None:
    sim = chaos_sim(sim_factory, api_5xx_rate=1.0)
    statuses = set()
    for _ in range(12):
        response = sim.call("POST", GENERATE, json=TEXT_BODY)
        assert response.status_code in (500, 502, 503)
        assert response.headers["content-type"].split(";")[0] in ("text/plain", "text/html")
        with pytest.raises(ValueError):
            response.json()
        statuses.add(response.status_code)
    assert len(statuses) > 1
    assert sim.jobs() == [] and sim.stats() == {}
    assert sim.sim_get("/stats")["api_faults"] == {"5xx": 12}
    # The inspection surface and media routes are never faulted.
    assert sim.client.get("/media/blob/3").status_code == 200


def test_429_carries_retry_after(sim_factory: SimFactory) -> None:
    sim = chaos_sim(sim_factory, api_429_rate=1.0, api_retry_after_seconds=7)
    response = sim.call("GET", "/account/balance")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"


def test_timeout_sleeps_then_answers(sim_factory: SimFactory) -> None:
    sim = chaos_sim(sim_factory, api_timeout_rate=1.0, api_timeout_seconds=0.4)
    with pytest.raises(httpx.ReadTimeout):
        sim.call("GET", "/account/balance", timeout=0.1)
    slow = sim.call("GET", "/account/balance", timeout=5)
    assert slow.status_code == 200 and slow.json()["ErrCode"] == 0
    assert slow.elapsed.total_seconds() >= 0.4


def test_after_commit_5xx_creates_and_charges_and_a_retry_returns_the_same_job(
        sim_factory: SimFactory) -> None:
    sim = chaos_sim(sim_factory, api_5xx_rate=1.0, api_chaos_after_commit=True)
    failed = sim.call("POST", GENERATE, json=TEXT_BODY, trace="ambiguous")
    assert failed.status_code >= 500
    [job] = sim.jobs()
    assert job["trace_id"] == "ambiguous"
    set_chaos(sim)  # all off
    retry = sim.post(GENERATE, TEXT_BODY, trace="ambiguous")
    assert retry["Resp"]["video_id"] == job["id"]
    assert sim.stats()["charges"] == 1 and len(sim.jobs()) == 1


def test_after_commit_timeout_commits_before_the_client_gives_up(
        sim_factory: SimFactory) -> None:
    sim = chaos_sim(sim_factory, api_timeout_rate=1.0, api_timeout_seconds=0.4,
                    api_chaos_after_commit=True)
    with pytest.raises(httpx.ReadTimeout):
        sim.call("POST", GENERATE, json=TEXT_BODY, trace="slow", timeout=0.15)
    [job] = sim.jobs()  # already there although the client saw nothing
    set_chaos(sim)
    assert sim.post(GENERATE, TEXT_BODY, trace="slow")["Resp"]["video_id"] == job["id"]
    assert sim.stats()["charges"] == 1


def test_without_after_commit_a_429_does_not_create(sim_factory: SimFactory) -> None:
    sim = chaos_sim(sim_factory, api_429_rate=1.0)
    assert sim.call("POST", GENERATE, json=TEXT_BODY, trace="t").status_code == 429
    set_chaos(sim)
    assert sim.jobs() == []
    assert sim.post(GENERATE, TEXT_BODY, trace="t")["ErrCode"] == 0
    assert sim.stats()["charges"] == 1


def test_chaos_paths_limit_the_faults(sim_factory: SimFactory) -> None:
    sim = chaos_sim(sim_factory, api_5xx_rate=1.0, api_chaos_paths=("/video/result",))
    video_id = sim.text_video()
    assert sim.call("GET", f"/video/result/{video_id}").status_code >= 500
    assert sim.call("GET", "/account/balance").status_code == 200
    set_chaos(sim, api_5xx_rate=1.0, api_chaos_paths=["/openapi/v2/account"])
    assert sim.call("GET", "/account/balance").status_code >= 500
    assert sim.call("GET", f"/video/result/{video_id}").status_code == 200


def test_partial_rates_are_seeded_and_replayable(sim_factory: SimFactory) -> None:
    def sequence() -> list[int]:
        sim = chaos_sim(sim_factory, api_5xx_rate=0.3, api_429_rate=0.3)
        return [sim.call("GET", "/account/balance").status_code for _ in range(30)]

    first = sequence()
    assert first == sequence()
    assert 200 in first and 429 in first and any(s >= 500 for s in first)


def test_put_chaos_validates_and_reports(sim_factory: SimFactory) -> None:
    sim = sim_factory()
    assert sim.client.put("/_sim/chaos", json={"no_such_knob": 1}).status_code == 400
    set_chaos(sim, api_429_rate=1.0, seed=5)
    assert sim.client.get("/_sim/chaos").json()["api_429_rate"] == 1.0
    assert sim.call("GET", "/account/balance").status_code == 429
    set_chaos(sim)
    assert sim.call("GET", "/account/balance").status_code == 200
