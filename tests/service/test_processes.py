"""The Procfile's processes: `pixhook web` and `pixhook worker` as real, separate processes
on one SQLite database, with the simulator sending webhooks to the web process."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.simulator import SimulatorConfig
from service.simulator import create_app as create_simulator
from service.simulator.config import DEFAULT_API_KEY
from tests.service.conftest import API_TOKEN, T2V
from tests.support.processes import REPO, pixhook_env, processes  # noqa: F401 - a fixture
from tests.support.servers import free_port, running_server


def _procfile() -> dict[str, str]:
    lines = (REPO / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


async def test_procfile_web_and_worker_processes(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    procfile = _procfile()
    assert set(procfile) == {"web", "worker"}
    sim = SimulatorConfig(generation_seconds=0.3)
    port = free_port()
    async with running_server(create_simulator(sim)) as sim_url, \
            httpx.AsyncClient(timeout=10) as http:
        env = pixhook_env(
            database_url=f"sqlite:///{tmp_path / 'pixhook.db'}", sim_url=sim_url,
            tmp_path=tmp_path, webhook_secret=sim.accounts[DEFAULT_API_KEY].webhook_secret,
            PORT=str(port), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        for name in ("web", "worker"):
            # As a Procfile runner does, minus the shell (a signal must reach pixhook itself).
            argv = shlex.split(procfile[name].replace("$PORT", str(port)).replace(
                "${WORKER_HEALTH_PORT:-9100}", str(free_port())))
            argv[0] = str(Path(sys.executable).parent / argv[0])
            processes.append(subprocess.Popen(argv, cwd=tmp_path, env=env))
        base = f"http://127.0.0.1:{port}"
        sim.accounts[DEFAULT_API_KEY].webhook_url = f"{base}/webhooks/pixverse"
        deadline = time.monotonic() + 20
        while True:
            try:
                if (await http.get(f"{base}/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "pixhook web did not start"
            assert all(p.poll() is None for p in processes), "a process exited"
            await asyncio.sleep(0.1)

        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        created = await http.post(f"{base}/api/jobs", headers=auth,
                                  json={"kind": "text_to_video", "params": T2V})
        assert created.status_code == 201
        job_id = created.json()["id"]
        deadline = time.monotonic() + 30
        while True:
            job = (await http.get(f"{base}/api/jobs/{job_id}", headers=auth)).json()
            if job["state"] == "succeeded" and job["tasks"] and all(
                    t["state"] == "succeeded" for t in job["tasks"]):
                break
            assert time.monotonic() < deadline, f"job did not finish: {job}"
            await asyncio.sleep(0.1)
        stats = (await http.get(f"{sim_url}/_sim/stats")).json()["keys"][DEFAULT_API_KEY]

    # /api shows the video as a signed link (none here: no PIXHOOK_PUBLIC_URL), not a path.
    assert job["media_sha256"] and list((tmp_path / "media").glob(f"{job_id}.*"))
    assert stats["status_calls"] == 0 and stats["jobs"] == 1
    web, worker = processes
    for process in processes:
        process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (so a supervisor sees
    # "terminated by SIGTERM"); the worker handles SIGTERM itself and exits 0.
    assert web.wait(15) in (0, -signal.SIGTERM)
    assert worker.wait(15) == 0
