"""Every kind of simulator chaos at once, over 500 jobs of mixed kinds.

20 % of webhooks dropped, 20 % duplicated, all reordered, 5 % with a bad signature, and 10 %
of API calls failing (5xx, or hanging past the client's timeout, sometimes after the job was
made). When it settles: every job's final state is the simulator's truth, every handler effect
happened exactly once, no video was generated twice, and the status polls stay bounded by the
webhooks that never arrived.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from handlers.download import DownloadHandler
from service.app import create_app
from service.handler_api import BaseHandler, HandlerContext, Job, JobState, Transition
from service.registry import HandlerSet
from service.settings import Settings
from service.simulator import SimulatorConfig
from service.simulator import create_app as create_simulator
from service.simulator.config import DEFAULT_API_KEY, ChaosConfig
from tests.service.conftest import API_TOKEN, T2V
from tests.support.servers import free_port, running_server

pytestmark = pytest.mark.slow

ROOT_JOBS = 500
STATE_OF_STATUS = {1: "succeeded", 7: "moderation_failed", 8: "failed"}
TERMINAL = {"succeeded", "failed", "moderation_failed", "rejected", "deleted"}
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


class EffectHandler(BaseHandler):
    """Counts its runs per task: a handler whose effect must happen exactly once."""

    name: ClassVar[str] = "effect"
    effects: ClassVar[collections.Counter[str]] = collections.Counter()

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        self.effects[context.task.idempotency_key] += 1


def _effect(settings: Settings, options: Mapping[str, Any]) -> EffectHandler:
    return EffectHandler(settings, options)


async def _settled(http: httpx.AsyncClient, base: str, expected_jobs: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 150
    while True:
        jobs: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
            page = (await http.get(f"{base}/api/jobs", headers=AUTH, params=params)).json()
            jobs += page["jobs"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        tasks = (await http.get(f"{base}/api/tasks", headers=AUTH,
                                params={"limit": "200", "state": "pending"})).json()["tasks"]
        running = (await http.get(f"{base}/api/tasks", headers=AUTH,
                                  params={"limit": "200", "state": "running"})).json()["tasks"]
        if (len(jobs) >= expected_jobs and all(j["state"] in TERMINAL for j in jobs)
                and not tasks and not running):
            return jobs
        unfinished = collections.Counter(j["state"] for j in jobs if j["state"] not in TERMINAL)
        assert time.monotonic() < deadline, f"not settled: {unfinished}, {len(tasks)} tasks"
        await asyncio.sleep(0.25)


async def test_everything_at_once_over_500_jobs(tmp_path: Path) -> None:
    EffectHandler.effects.clear()
    sim = SimulatorConfig(
        generation_seconds=0.5, time_compression=0.01, random_moderation_rate=0.05,
        random_failure_rate=0.05, outcome_seed=7,
        chaos=ChaosConfig(
            seed=11, webhook_drop_rate=0.2, webhook_duplicate_rate=0.2,
            webhook_reorder_window=8, webhook_reorder_hold_seconds=0.2,
            webhook_corrupt_signature_rate=0.05, api_5xx_rate=0.05, api_timeout_rate=0.05,
            api_timeout_seconds=3.0, api_chaos_after_commit=True),
    )
    sim.accounts[DEFAULT_API_KEY].concurrency_limit = 10_000
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'pixhook.db'}",
        pixverse_api_key=DEFAULT_API_KEY,
        pixverse_webhook_secret=sim.accounts[DEFAULT_API_KEY].webhook_secret,
        pixverse_timeout=1.0, api_token=API_TOKEN, public_url=f"http://127.0.0.1:{port}",
        media_dir=str(tmp_path / "media"), download_allow_private=True,
        webhook_grace=3.0, reconcile_interval=0.2, submit_max_attempts=20,
        handlers=("download", "effect", "followup"), task_backoff=0.05, task_backoff_max=0.5,
    )
    async with running_server(create_simulator(sim)) as sim_url, \
            httpx.AsyncClient(timeout=30) as http:
        settings = dataclasses.replace(settings, pixverse_base_url=f"{sim_url}/openapi/v2")
        from handlers.followup import FollowUpHandler

        handlers = HandlerSet.from_settings(settings, available={
            "download": DownloadHandler, "effect": _effect, "followup": FollowUpHandler})
        app = create_app(settings, handlers=handlers)
        async with running_server(app, port=port) as base:
            sim.accounts[DEFAULT_API_KEY].webhook_url = f"{base}/webhooks/pixverse"
            chained = 0
            for i in range(ROOT_JOBS):
                body: dict[str, Any] = {"kind": "text_to_video",
                                        "params": {**T2V, "prompt": f"lantern {i}"}}
                if i % 10 == 0:
                    body["then"] = [{"kind": "sound_effect", "params": {
                        "sound_effect_content": "rain"}}]
                    chained += 1
                created = await http.post(f"{base}/api/jobs", headers=AUTH, json=body)
                assert created.status_code == 201, created.text
            # Chain steps exist only for roots that succeeded; wait for the roots first.
            jobs = await _settled(http, base, ROOT_JOBS)
            roots_ok = sum(1 for j in jobs if j["then"] and j["state"] == "succeeded")
            jobs = await _settled(http, base, ROOT_JOBS + roots_ok)
            sim_jobs = (await http.get(f"{sim_url}/_sim/jobs")).json()["jobs"]
            deliveries = (await http.get(f"{sim_url}/_sim/deliveries")).json()["deliveries"]
            all_stats = (await http.get(f"{sim_url}/_sim/stats")).json()
            stats, faults = all_stats["keys"][DEFAULT_API_KEY], all_stats["api_faults"]

    truth = {int(job["id"]): STATE_OF_STATUS.get(job["status"]) for job in sim_jobs}
    # Every job reached PixVerse exactly once and ended where PixVerse says it did.
    assert len(jobs) == ROOT_JOBS + roots_ok
    assert all(job["video_id"] is not None for job in jobs), "a job never reached PixVerse"
    assert sorted(truth) == sorted(job["video_id"] for job in jobs), "a video made twice"
    wrong = [(j["id"], j["state"], truth[j["video_id"]]) for j in jobs
             if j["state"] != truth[j["video_id"]]]
    assert wrong == []
    # Every handler effect exactly once: one per (job, final state), none for anything else.
    expected = {f"{j['id']}:{j['state']}:effect" for j in jobs}
    assert set(EffectHandler.effects) == expected
    assert set(EffectHandler.effects.values()) == {1}
    succeeded = [j for j in jobs if j["state"] == "succeeded"]
    assert sorted(p.name for p in Path(settings.media_dir).iterdir()) == sorted(
        f"{j['id']}.mp4" for j in succeeded)
    # Polls only for what webhooks did not bring.
    dropped = sum(1 for d in deliveries if d["state"] == "dropped")
    lost = sum(1 for d in deliveries if d["state"] in ("dropped", "failed"))
    corrupted = sum(1 for d in deliveries for a in d["attempts"] if a["signature_corrupted"])
    print(f"jobs {len(jobs)}, chains {chained}, dropped {dropped}, corrupted {corrupted}, "
          f"status calls {stats['status_calls']}, api faults {faults}")
    # The chaos really happened, every kind of it.
    assert dropped > 0 and corrupted > 0 and any(d["duplicate_of"] for d in deliveries)
    assert sum(faults.values()) > 0
    assert stats["status_calls"] <= 3 * lost + 0.05 * len(jobs)
