"""Job lifecycle: timing, outcomes, refunds, webhooks, idempotency, concurrency, credits."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from service.simulator.config import Account
from tests.simulator.helpers import (
    KEY,
    TEXT_BODY,
    Sim,
    SimFactory,
    make_config,
    running,
    shared_sim,
    sim,
    sim_factory,
)

__all__ = ["shared_sim", "sim", "sim_factory"]  # fixtures

GENERATE = "/video/text/generate"


def test_a_job_goes_from_5_to_1_after_generation_seconds_and_is_published_once(sim: Sim) -> None:
    started = time.monotonic()
    video_id = sim.text_video()
    assert sim.result(video_id)["status"] == 5
    job = sim.wait_job(video_id)
    assert job["status"] == 1
    assert time.monotonic() - started >= sim.config.generation_seconds
    [payload] = sim.wait_published(video_id)
    assert payload == {"id": str(video_id), "status": 1,
                       "url": f"{sim.base}/media/videos/{video_id}.mp4",
                       "size": job["size_bytes"], "has_audio": False, "credits": 45}
    [published] = sim.dispatcher.deliveries(str(video_id))
    assert published["api_key"] == sim.key and published["trace_id"] == job["trace_id"]
    time.sleep(0.1)
    assert len(sim.dispatcher.for_video(video_id)) == 1


def test_the_webhook_fires_without_anyone_polling(sim: Sim) -> None:
    video_id = sim.text_video()
    sim.wait_published(video_id)
    assert sim.job(video_id)["status_calls"] == 0


def test_moderation_and_failure_words_end_in_7_and_8_with_a_refund(sim: Sim) -> None:
    balance = sim.get("/account/balance")["Resp"]["credit_monthly"]
    moderated = sim.text_video(prompt="something NSFW")
    failed = sim.text_video(prompt="please fail-me now")
    assert sim.wait_job(moderated)["status"] == 7
    assert sim.wait_job(failed)["status"] == 8
    for video_id, status in ((moderated, 7), (failed, 8)):
        [payload] = sim.wait_published(video_id)
        assert payload == {"id": str(video_id), "status": status, "url": "", "size": 0,
                           "has_audio": False, "credits": 0}
        record = sim.result(video_id)
        assert record["status"] == status and record["url"] == "" and record["credits"] == 0
    assert sim.get("/account/balance")["Resp"]["credit_monthly"] == balance
    stats = sim.stats()
    assert stats["refunds"] == 2 and stats["credits_refunded"] == 90
    assert stats["jobs_per_status"] == {"7": 1, "8": 1}


def test_text_in_other_fields_is_moderated_too(sim: Sim) -> None:
    source = sim.text_video()
    sim.finish(source)
    restyled = sim.ok("/video/restyle/generate", {"source_video_id": source,
                                                  "restyle_prompt": "nsfw clay"})["video_id"]
    assert sim.wait_job(restyled)["status"] == 7
    # A negative prompt asks the model to avoid the word: no moderation.
    fine = sim.text_video(negative_prompt="nsfw, blurry")
    assert sim.wait_job(fine)["status"] == 1


def test_without_refunds_failed_jobs_keep_their_charge(sim_factory: SimFactory) -> None:
    sim = sim_factory(refund_failed_jobs=False)
    video_id = sim.text_video(prompt="fail-me")
    assert sim.wait_job(video_id)["status"] == 8
    assert sim.get("/account/balance")["Resp"]["credit_monthly"] == 100_000 - 45
    assert sim.wait_published(video_id)[0]["credits"] == 45


def test_random_outcomes_are_seeded(sim_factory: SimFactory) -> None:
    def outcomes() -> list[int]:
        sim = sim_factory(random_failure_rate=0.3, random_moderation_rate=0.3, outcome_seed=11)
        ids = [sim.text_video() for _ in range(20)]
        return [sim.wait_job(i)["status"] for i in ids]

    first = outcomes()
    assert first == outcomes()
    assert {1, 7, 8} <= set(first)


def test_generating_status_is_published_when_asked(sim_factory: SimFactory) -> None:
    sim = sim_factory(webhook_send_generating=True)
    video_id = sim.text_video()
    first, second = sim.wait_published(video_id, count=2)
    assert first["status"] == 5 and first["url"] == "" and first["credits"] == 45
    assert second["status"] == 1


def test_forced_outcomes(sim_factory: SimFactory) -> None:
    sim = sim_factory(generation_seconds=60)
    video_id = sim.text_video()
    assert sim.result(video_id)["status"] == 5
    forced = sim.client.post(f"/_sim/jobs/{video_id}/outcome",
                             json={"status": 1, "size_bytes": 12345, "at": "now"})
    assert forced.status_code == 200 and forced.json()["status"] == 1
    record = sim.result(video_id)
    assert record["status"] == 1 and record["size"] == 12345
    assert sim.wait_published(video_id)[0]["size"] == 12345
    again = sim.client.post(f"/_sim/jobs/{video_id}/outcome", json={"status": 8})
    assert again.status_code == 409
    deleted = sim.client.post(f"/_sim/jobs/{video_id}/outcome", json={"status": 6})
    assert deleted.status_code == 200
    record = sim.result(video_id)
    assert record["status"] == 6 and record["url"] == ""
    assert sim.client.get(f"/media/videos/{video_id}.mp4").status_code == 404
    assert [p["status"] for p in sim.dispatcher.for_video(video_id)] == [1, 6]

    moderated = sim.text_video()
    sim.client.post(f"/_sim/jobs/{moderated}/outcome", json={"status": 7})
    assert sim.result(moderated)["status"] == 7
    assert sim.stats()["refunds"] == 1
    bad = sim.client.post(f"/_sim/jobs/{moderated}/outcome", json={"status": 5})
    assert bad.status_code == 400
    assert sim.client.post("/_sim/jobs/1/outcome", json={"status": 1}).status_code == 404


def test_a_forced_outcome_at_due_time_waits_for_the_clock(sim_factory: SimFactory) -> None:
    sim = sim_factory(generation_seconds=0.3)
    video_id = sim.text_video()
    sim.client.post(f"/_sim/jobs/{video_id}/outcome", json={"status": 8, "at": "due"})
    assert sim.job(video_id)["status"] == 5
    assert sim.wait_job(video_id)["status"] == 8


# -- idempotency --------------------------------------------------------------------------------


def test_a_repeated_trace_id_returns_the_first_answer_and_charges_once(sim: Sim) -> None:
    trace = str(uuid.uuid4())
    first = sim.post(GENERATE, TEXT_BODY, trace=trace)
    # Same key and trace id: the first answer, even for a different body.
    second = sim.post(GENERATE, {**TEXT_BODY, "prompt": "something else"}, trace=trace)
    third = sim.post(GENERATE, {"garbage": True}, trace=trace)
    assert first == second == third
    assert first["ErrCode"] == 0
    stats = sim.stats()
    assert stats["charges"] == 1 and stats["jobs"] == 1
    assert stats["submissions"] == 3 and stats["cache_hits"] == 2
    assert len(sim.jobs()) == 1
    # Another key with the same trace id is another request.
    other = sim.post(GENERATE, TEXT_BODY, trace=trace, key=sim.other_key)
    assert other["Resp"]["video_id"] != first["Resp"]["video_id"]


def test_uploads_and_swap_masks_are_idempotent_too(sim: Sim) -> None:
    trace = str(uuid.uuid4())
    files = {"image": ("a.png", b"\x89PNG....", "image/png")}
    first = sim.call("POST", "/image/upload", trace=trace, files=files).json()
    second = sim.call("POST", "/image/upload", trace=trace, files=files).json()
    assert first == second and first["ErrCode"] == 0
    assert len(sim.sim_get("/uploads", params={"api_key": sim.key})["uploads"]) == 1
    source = sim.text_video()
    sim.finish(source)
    mask_trace = str(uuid.uuid4())
    masks = [sim.post("/video/mask/selection", {"source_video_id": source}, trace=mask_trace)
             for _ in range(2)]
    assert masks[0] == masks[1]
    assert sim.stats()["charges"] == 2  # the video and one mask selection


def test_errors_are_not_cached_so_a_retry_with_the_same_trace_can_succeed(
        sim_factory: SimFactory) -> None:
    sim = sim_factory(generation_seconds=0.3,
                      accounts={KEY: Account(credit_monthly=100, concurrency_limit=1)})
    running_id = sim.text_video()
    trace = "retry-me"
    busy = sim.post(GENERATE, TEXT_BODY, trace=trace)
    assert busy["ErrCode"] == 500044 and busy["Resp"] is None
    sim.wait_job(running_id)
    accepted = sim.post(GENERATE, TEXT_BODY, trace=trace)
    assert accepted["ErrCode"] == 0
    assert sim.post(GENERATE, TEXT_BODY, trace=trace) == accepted
    assert sim.stats()["charges"] == 2 and sim.stats()["errors"] == {"500044": 1}
    sim.wait_job(accepted["Resp"]["video_id"])
    # Out of credits (10 left), then topped up: the same trace id now goes through.
    broke = sim.post(GENERATE, TEXT_BODY, trace="topup")
    assert broke["ErrCode"] == 500090
    sim.client.put(f"/_sim/accounts/{KEY}", json={"credit_package": 1000})
    assert sim.post(GENERATE, TEXT_BODY, trace="topup")["ErrCode"] == 0


# -- concurrency and credits ------------------------------------------------------------------


def test_concurrency_limit_counts_generating_jobs_only(sim_factory: SimFactory) -> None:
    sim = sim_factory(generation_seconds=0.3,
                      accounts={KEY: Account(concurrency_limit=2)})
    first, second = sim.text_video(), sim.text_video()
    refused = sim.post(GENERATE, TEXT_BODY)
    assert refused["ErrCode"] == 500044
    assert sim.stats()["charges"] == 2 and len(sim.jobs()) == 2
    # The concurrency limit can be changed at runtime.
    sim.client.put(f"/_sim/accounts/{KEY}", json={"concurrency_limit": 3})
    third = sim.text_video()
    sim.wait_job(first), sim.wait_job(second), sim.wait_job(third)
    assert sim.post(GENERATE, TEXT_BODY)["ErrCode"] == 0


def test_insufficient_credits_is_500090_without_a_job(sim_factory: SimFactory) -> None:
    sim = sim_factory(accounts={KEY: Account(credit_monthly=44)})
    refused = sim.post(GENERATE, TEXT_BODY)
    assert refused["ErrCode"] == 500090 and "45" in refused["ErrMsg"]
    assert sim.jobs() == [] and sim.stats()["charges"] == 0
    assert sim.get("/account/balance")["Resp"]["credit_monthly"] == 44


# -- status polling counter ------------------------------------------------------------------


def test_status_calls_are_counted_per_job_and_key(sim: Sim) -> None:
    video_id = sim.text_video()
    for _ in range(3):
        sim.result(video_id)
    sim.get("/video/result/1")  # unknown: counted for the key, not for a job
    assert sim.job(video_id)["status_calls"] == 3
    assert sim.stats()["status_calls"] == 4


# -- scale ----------------------------------------------------------------------------------------


def test_hundreds_of_jobs_all_finish_on_time_with_one_webhook_each() -> None:
    config_accounts = {KEY: Account(credit_monthly=10**9, concurrency_limit=10_000)}
    config = make_config(accounts=config_accounts, generation_seconds=0.5)
    with running(config) as sim:
        limits = httpx.Limits(max_keepalive_connections=1)
        with httpx.Client(base_url=sim.base, limits=limits) as client:
            ids = []
            for i in range(400):
                response = client.post("/openapi/v2/video/text/generate",
                                       json={**TEXT_BODY, "seed": i},
                                       headers={"API-KEY": KEY, "Ai-trace-id": f"t{i}"})
                ids.append(response.json()["Resp"]["video_id"])
        assert len(set(ids)) == 400
        deadline = time.monotonic() + 10
        while len(sim.dispatcher.published) < 400 and time.monotonic() < deadline:
            time.sleep(0.02)
        published: list[Any] = sim.dispatcher.published
        assert sorted(int(p["payload"]["id"]) for p in published) == sorted(ids)
        assert sim.stats()["jobs_per_status"] == {"1": 400}
        for job in sim.jobs():
            took = job["finished_at"] - job["created_at"]
            assert 0.5 <= took < 1.5, job
