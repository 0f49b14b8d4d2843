"""SIGKILL the service while webhooks are arriving: every delivery it answered ``ok`` is in the
store after a restart, every job finishes, and every pending task completes exactly once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from service.simulator import SimulatorConfig
from service.simulator import create_app as create_simulator
from service.simulator.config import DEFAULT_API_KEY
from tests.service.conftest import API_TOKEN, T2V
from tests.support.processes import REPO, pixhook_env, processes, until  # noqa: F401 - a fixture
from tests.support.servers import free_port, running_server

JOBS = 60
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def _start(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "service", "serve", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _acknowledged(deliveries: list[dict[str, Any]]) -> set[str]:
    """Nonces of the attempts the service answered ``200 ok``."""
    return {attempt["nonce"] for delivery in deliveries for attempt in delivery["attempts"]
            if attempt["http_status"] == 200 and attempt["response_body"] == "ok"}


async def test_sigkill_mid_webhooks_loses_nothing(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    sim = SimulatorConfig(generation_seconds=0.6, time_compression=0.02)
    sim.accounts[DEFAULT_API_KEY].concurrency_limit = JOBS  # no 500044 waits
    port = free_port()
    db = tmp_path / "pixhook.db"
    async with running_server(create_simulator(sim)) as sim_url, \
            httpx.AsyncClient(timeout=10) as http:
        base = f"http://127.0.0.1:{port}"
        sim.accounts[DEFAULT_API_KEY].webhook_url = f"{base}/webhooks/pixverse"
        env = pixhook_env(
            database_url=f"sqlite:///{db}", sim_url=sim_url, tmp_path=tmp_path,
            webhook_secret=sim.accounts[DEFAULT_API_KEY].webhook_secret,
            PIXHOOK_HANDLERS="download",
            PIXHOOK_WEBHOOK_GRACE="5", PIXHOOK_RECONCILE_INTERVAL="0.5",
            # A killed run's tasks wait out their lease before another run takes them.
            PIXHOOK_TASK_LEASE="2",
            # ...and a job caught mid-submission waits out its lease (twice this).
            PIXVERSE_TIMEOUT="1")

        async def ready() -> bool:
            try:
                return (await http.get(f"{base}/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        processes.append(_start(env, port))
        await until(ready, "the service to start")
        job_ids = []
        for i in range(JOBS):
            created = await http.post(f"{base}/api/jobs", headers=AUTH, json={
                "kind": "text_to_video", "params": {**T2V, "prompt": f"lantern {i}"}})
            assert created.status_code == 201
            job_ids.append(created.json()["id"])
            await asyncio.sleep(0.02)  # spread the webhooks out, so the kill lands among them

        async def some_acknowledged() -> list[dict[str, Any]] | None:
            deliveries = (await http.get(f"{sim_url}/_sim/deliveries")).json()["deliveries"]
            return deliveries if len(_acknowledged(deliveries)) >= JOBS // 3 else None

        await until(some_acknowledged, "a third of the webhooks")
        processes[0].send_signal(signal.SIGKILL)  # mid-stream: more are arriving
        processes[0].wait(10)
        deliveries = (await http.get(f"{sim_url}/_sim/deliveries")).json()["deliveries"]
        acknowledged = _acknowledged(deliveries)
        assert JOBS // 3 <= len(acknowledged) < JOBS, "the kill should land mid-stream"

        processes.append(_start(env, port))  # same port and database, as a restart would
        await until(ready, "the service to restart")

        async def all_done() -> list[dict[str, Any]] | None:
            page = (await http.get(f"{base}/api/jobs", headers=AUTH,
                                   params={"limit": "200"})).json()["jobs"]
            tasks = (await http.get(f"{base}/api/tasks", headers=AUTH)).json()["tasks"]
            finished = (len(page) == JOBS and all(j["state"] == "succeeded" for j in page)
                        and len(tasks) == JOBS and all(t["state"] == "succeeded"
                                                      for t in tasks))
            return tasks if finished else None

        tasks = await until(all_done, "every job and task to finish", timeout=60)
        stats = (await http.get(f"{sim_url}/_sim/stats")).json()["keys"][DEFAULT_API_KEY]

    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT nonce FROM webhook_deliveries")}
        downloads = conn.execute("SELECT count(*) FROM jobs WHERE media_sha256 IS NOT NULL"
                                 ).fetchone()[0]
    assert acknowledged <= stored, f"answered ok but lost: {acknowledged - stored}"
    assert stats["jobs"] == JOBS and stats["charges"] == JOBS  # nothing generated twice
    assert sorted(t["job_id"] for t in tasks) == sorted(job_ids)  # one download per job
    assert downloads == JOBS
