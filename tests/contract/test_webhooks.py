"""Webhooks from the simulator to a real, verifying receiver: signatures, retries, chaos."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.pixverse import models
from service.pixverse.errors import SignatureError
from service.pixverse.signature import NONCE_HEADER, TRACE_HEADER, canonical_query, verify
from service.simulator.config import DEFAULT_WEBHOOK_SECRET
from tests.contract.conftest import Inbox, Receiver, Sim, SimFactory, wait_until

TEXT = models.TextToVideo(prompt="a paper lantern drifts over a misty lake", model="v5",
                          duration=5, quality="540p", aspect_ratio="16:9")
WITH_AUDIO = models.TextToVideo(prompt="rain on a tin roof", model="v6", duration=5,
                                quality="540p", aspect_ratio="16:9", generate_audio_switch=True)


def hooked_account(sim: Sim, inbox: Inbox, **fields: Any) -> str:
    return sim.new_account(webhook_url=inbox.url, webhook_secret=inbox.secret, **fields)


async def settled(sim: Sim, video_id: int, count: int = 1) -> list[dict[str, Any]]:
    """The video's delivery records once ``count`` exist and none is pending."""
    def done() -> bool:
        found = sim.deliveries(video_id)
        return len(found) >= count and all(d["state"] != "pending" for d in found)

    await wait_until(done, what=f"deliveries of {video_id}")
    return sim.deliveries(video_id)


async def test_retries_until_the_receiver_answers_ok(shared_sim: Sim, receiver: Receiver) -> None:
    inbox = receiver.inbox()
    inbox.script = [(500, "boom"), (500, "still down")]
    key = hooked_account(shared_sim, inbox)
    async with shared_sim.client(key) as client:
        submission = await client.text_to_video(WITH_AUDIO)
        video_id = submission.job_id
        hits = await inbox.wait_for(3)
        [record] = await settled(shared_sim, video_id)
        result = await client.video_result(video_id)

    assert [hit.answered for hit in hits] == [(500, "boom"), (500, "still down"), (200, "ok")]
    assert all(hit.verified is not None for hit in hits)  # every attempt properly signed
    assert len({hit.headers[NONCE_HEADER.lower()] for hit in hits}) == 3  # fresh nonce each
    assert len({hit.body for hit in hits}) == 1
    assert {hit.headers[TRACE_HEADER.lower()] for hit in hits} == {submission.trace_id}
    payload = hits[-1].payload
    assert payload == {"id": str(video_id), "status": 1, "url": result.url,
                       "size": result.size, "has_audio": True, "credits": 45}
    assert isinstance(payload["id"], str) and int(payload["id"]) == video_id  # exact
    assert result.url.endswith(f"/media/videos/{video_id}.mp4")
    assert record["state"] == "delivered"
    assert [a["http_status"] for a in record["attempts"]] == [500, 500, 200]
    await asyncio.sleep(0.1)
    assert len(inbox.hits) == 3  # nothing after "ok"


async def test_a_delivery_verifies_with_the_account_secret_only(shared_sim: Sim,
                                                                receiver: Receiver) -> None:
    inbox = receiver.inbox(secret="per-account-secret-4f1c")
    key = hooked_account(shared_sim, inbox)
    async with shared_sim.client(key) as client:
        video_id = (await client.text_to_video(TEXT)).job_id
        [hit] = await inbox.wait_for(1)
    assert hit.verified is not None and hit.verified.payload["id"] == str(video_id)
    assert verify(hit.body, hit.headers, [inbox.secret]).payload == hit.payload
    for wrong in ("wrong-secret", DEFAULT_WEBHOOK_SECRET):
        with pytest.raises(SignatureError):
            verify(hit.body, hit.headers, [wrong])
    # Rotation: the right secret anywhere in the list verifies.
    assert verify(hit.body, hit.headers, ["old-secret", inbox.secret]).nonce == hit.verified.nonce


async def test_failed_and_moderated_jobs_are_pushed_refunded(shared_sim: Sim,
                                                             receiver: Receiver) -> None:
    inbox = receiver.inbox()
    key = hooked_account(shared_sim, inbox)
    async with shared_sim.client(key) as client:
        failed = (await client.text_to_video(
            models.TextToVideo(**{**TEXT.to_payload(), "prompt": "please fail-me"}))).job_id
        moderated = (await client.text_to_video(TEXT)).job_id
        shared_sim.finish(moderated, 7)
        hits = await inbox.wait_for(2)
        assert (await client.balance()).total == 100_000  # both refunded
    by_id = {hit.payload["id"]: hit.payload for hit in hits}
    assert by_id[str(failed)]["status"] == 8 and by_id[str(moderated)]["status"] == 7
    assert all(p["url"] == "" and p["credits"] == 0 for p in by_id.values())


# -- webhook chaos ------------------------------------------------------------------------------


async def test_chaos_drop_leaves_only_polling(sim_factory: SimFactory,
                                              receiver: Receiver) -> None:
    sim = sim_factory(generation_seconds=0.05, chaos={"webhook_drop_rate": 1.0})
    inbox = receiver.inbox()
    key = hooked_account(sim, inbox)
    async with sim.client(key) as client:
        video_id = (await client.text_to_video(TEXT)).job_id
        [record] = await settled(sim, video_id)
        assert (await client.video_result(video_id)).status == 1  # polling still sees it
        await asyncio.sleep(0.2)
        assert record["state"] == "dropped" and inbox.hits == []
        sim.set_chaos()  # control: with the knob off the same receiver gets the next one
        control = (await client.text_to_video(TEXT)).job_id
        [hit] = await inbox.wait_for(1)
    assert hit.payload["id"] == str(control)


async def test_chaos_duplicate_sends_two_verified_copies(sim_factory: SimFactory,
                                                         receiver: Receiver) -> None:
    sim = sim_factory(generation_seconds=0.05,
                      chaos={"webhook_duplicate_rate": 1.0, "seed": 5})
    inbox = receiver.inbox()
    key = hooked_account(sim, inbox)
    async with sim.client(key) as client:
        video_id = (await client.text_to_video(TEXT)).job_id
        first, second = await inbox.wait_for(2)
        original, copy = await settled(sim, video_id, 2)
    assert first.body == second.body and first.payload["id"] == str(video_id)
    assert first.verified is not None and second.verified is not None
    assert first.verified.nonce != second.verified.nonce
    assert copy["duplicate_of"] == original["delivery_id"]
    assert original["state"] == copy["state"] == "delivered"
    await asyncio.sleep(0.1)
    assert len(inbox.hits) == 2


async def test_chaos_delay_postpones_arrival(sim_factory: SimFactory,
                                             receiver: Receiver) -> None:
    sim = sim_factory(generation_seconds=60.0,
                      chaos={"webhook_delay_max_seconds": 0.5, "seed": 11})
    inbox = receiver.inbox()
    key = hooked_account(sim, inbox)
    async with sim.client(key) as client:
        ids = [(await client.text_to_video(TEXT)).job_id for _ in range(5)]
    finished_at = {}
    for video_id in ids:
        finished_at[str(video_id)] = sim.finish(video_id)["finished_at"]
    hits = await inbox.wait_for(5)
    lags = [hit.at - finished_at[hit.payload["id"]] for hit in hits]
    assert all(0 <= lag < 0.5 + 0.25 for lag in lags), lags
    assert max(lags) > 0.15, lags  # undelayed deliveries arrive within milliseconds
    assert max(lags) - min(lags) > 0.1, lags


async def test_chaos_reorder_shuffles_a_batch(sim_factory: SimFactory,
                                              receiver: Receiver) -> None:
    sim = sim_factory(generation_seconds=60.0, webhook_max_concurrency=1,
                      chaos={"webhook_reorder_window": 4, "webhook_reorder_hold_seconds": 5.0,
                             "seed": 3})
    inbox = receiver.inbox()
    key = hooked_account(sim, inbox)
    async with sim.client(key) as client:
        ids = [str((await client.text_to_video(TEXT)).job_id) for _ in range(4)]
    for video_id in ids:
        sim.finish(int(video_id))
    hits = await inbox.wait_for(4, timeout=3.0)  # a full batch goes at once, not after 5 s
    arrived = [hit.payload["id"] for hit in hits]
    assert sorted(arrived) == sorted(ids)
    assert arrived != ids


async def test_chaos_corrupt_signature_is_retried_until_a_good_one(
        sim_factory: SimFactory, receiver: Receiver) -> None:
    sim = sim_factory(generation_seconds=0.05,
                      chaos={"webhook_corrupt_signature_rate": 1.0, "seed": 2})
    inbox = receiver.inbox()
    key = hooked_account(sim, inbox)
    async with sim.client(key) as client:
        video_id = (await client.text_to_video(TEXT)).job_id
        bad = await inbox.wait_for(2, verified=False)
        assert all(hit.verified is None and hit.answered[0] == 401 for hit in bad)
        sim.set_chaos()  # signatures good again: the next retry must get through
        [good] = await inbox.wait_for(1)
        [record] = await settled(sim, video_id)
    rejected = [hit for hit in inbox.hits if hit.verified is None]
    assert inbox.hits[-1] is good and len(rejected) == len(inbox.hits) - 1 >= 2
    for hit in rejected:
        with pytest.raises(SignatureError):
            verify(hit.body, hit.headers, [inbox.secret])
        assert hit.body == good.body  # same event, only the signature was wrong
    assert good.payload["id"] == str(video_id) and good.payload["status"] == 1
    corrupted = [a["signature_corrupted"] for a in record["attempts"]]
    assert corrupted == [True] * len(rejected) + [False]
    assert record["state"] == "delivered"


# -- knobs for what no source settles (REFERENCE.md §14) ------------------------------------------


@pytest.mark.parametrize(("size_bytes", "size", "signed"), [
    (11_010_048, 10.5, "size=10.5"),  # the doc's own example
    (10_485_760, 10.0, "size=10"),  # a whole float: signed as Go writes it
])
async def test_float_sizes_are_signed_and_verified_end_to_end(
        sim_factory: SimFactory, receiver: Receiver, size_bytes: int, size: float,
        signed: str) -> None:
    sim = sim_factory(webhook_size_float=True)
    inbox = receiver.inbox()
    key = hooked_account(sim, inbox)
    async with sim.client(key) as client:
        video_id = (await client.text_to_video(TEXT)).job_id
    forced = sim.http.post(f"/_sim/jobs/{video_id}/outcome",
                           json={"status": 1, "size_bytes": size_bytes})
    assert forced.status_code == 200, forced.text
    [hit] = await inbox.wait_for(1)
    assert f'"size":{size}'.encode() in hit.body  # a JSON float on the wire
    assert hit.verified is not None and hit.verified.payload["size"] == size
    assert signed in canonical_query(hit.payload)  # the float path of the signature


async def test_a_request_callback_url_gets_the_webhook_when_honoured(
        sim_factory: SimFactory, receiver: Receiver) -> None:
    sim = sim_factory(honour_request_callback_url=True)
    inbox = receiver.inbox(secret=DEFAULT_WEBHOOK_SECRET)
    key = sim.new_account()  # no webhook URL of its own
    request = models.TextToVideo.from_params({**TEXT.to_payload(), "callback_url": inbox.url})
    async with sim.client(key) as client:
        video_id = (await client.text_to_video(request)).job_id
    [hit] = await inbox.wait_for(1)
    assert hit.verified is not None and hit.payload["id"] == str(video_id)
