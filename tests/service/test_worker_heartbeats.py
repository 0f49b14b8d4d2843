"""Workers you can see: the Procfile's split deployment (`pixhook web` + `pixhook worker`) as
real processes, on SQLite and on PostgreSQL. The web process is ready only while a worker
beats; a frozen worker (SIGSTOP) makes it 503 with the reason; `pixhook workers` lists the
worker; a clean stop removes it; the metrics show the newest heartbeat's age."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.simulator import SimulatorConfig
from service.simulator import create_app as create_simulator
from service.simulator.config import DEFAULT_API_KEY
from tests.core.conftest import postgres_schema, postgres_server  # noqa: F401 - fixtures
from tests.support.processes import REPO, pixhook_env, processes, until  # noqa: F401
from tests.support.servers import free_port, running_server

STALE_AFTER = 1.5


def _procfile_argv(name: str, **ports: int) -> list[str]:
    """A Procfile line as argv, its ``$PORT``-style variables filled in."""
    line = dict(row.split(": ", 1) for row in (REPO / "Procfile").read_text().splitlines()
                if row.strip())[name]
    line = line.replace("$PORT", str(ports.get("PORT", 0))).replace(
        "${WORKER_HEALTH_PORT:-9100}", str(ports.get("WORKER_HEALTH_PORT", 0)))
    argv = shlex.split(line)
    argv[0] = str(Path(sys.executable).parent / argv[0])
    return argv


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pixhook.db'}"
    return str(request.getfixturevalue("postgres_schema"))


async def test_split_deployment_readiness_follows_worker_heartbeats(
        database_url: str, tmp_path: Path,
        processes: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    sim = SimulatorConfig(generation_seconds=0.3)
    web_port, health_port = free_port(), free_port()
    async with running_server(create_simulator(sim)) as sim_url, \
            httpx.AsyncClient(timeout=10) as http:
        env = pixhook_env(database_url=database_url, sim_url=sim_url, tmp_path=tmp_path,
                          webhook_secret=sim.accounts[DEFAULT_API_KEY].webhook_secret,
                          PIXHOOK_WORKER_STALE_AFTER=str(STALE_AFTER),
                          PIXHOOK_LOG_LEVEL="warning")
        web = subprocess.Popen(_procfile_argv("web", PORT=web_port), cwd=tmp_path, env=env)
        processes.append(web)
        base = f"http://127.0.0.1:{web_port}"

        async def readyz(url: str = base) -> tuple[int, dict[str, Any]] | None:
            try:
                response = await http.get(f"{url}/readyz")
            except httpx.TransportError:
                return None
            return response.status_code, response.json()

        # Web alone: it answers, but is not ready: nothing would run what it accepts.
        status, body = await until(readyz, "pixhook web to answer", timeout=20)
        assert status == 503 and body["worker"] == "none", body
        assert "no worker is running" in body["reason"]
        assert body["database"] == "ok" and body["settings"] == "ok"

        worker = subprocess.Popen(
            _procfile_argv("worker", WORKER_HEALTH_PORT=health_port), cwd=tmp_path, env=env)
        processes.append(worker)

        async def ready(url: str = base) -> bool:
            answer = await readyz(url)
            return answer is not None and answer[0] == 200
        await until(ready, "the web process to see the worker", timeout=20)
        await until(lambda: ready(f"http://127.0.0.1:{health_port}"), "the worker's /readyz")

        listed = _workers(env, tmp_path)
        assert [(w["pid"], w["roles"], w["status"]) for w in listed] == \
            [(worker.pid, ["worker"], "ok")]
        metrics = (await http.get(f"{base}/metrics")).text
        assert _gauge(metrics, "pixhook_worker_heartbeat_age_seconds") < STALE_AFTER

        # A frozen worker: its beats stop, and within the stale window so does readiness.
        worker.send_signal(signal.SIGSTOP)
        try:
            async def stale() -> bool:
                answer = await readyz()
                return answer is not None and answer[0] == 503 \
                    and answer[1]["worker"] == "stale"
            await until(stale, "the web process to notice the frozen worker",
                        timeout=STALE_AFTER + 5)
            _, body = await readyz() or (0, {})
            assert "no worker has beaten for" in body["reason"]
            assert _workers(env, tmp_path)[0]["status"] == "stale"
            metrics = (await http.get(f"{base}/metrics")).text
            assert _gauge(metrics, "pixhook_worker_heartbeat_age_seconds") > STALE_AFTER
        finally:
            worker.send_signal(signal.SIGCONT)
        await until(ready, "readiness to come back with the worker", timeout=10)

        # A clean stop says goodbye: the row goes, and the web process is not ready again.
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        assert _workers(env, tmp_path) == []
        status, body = await readyz() or (0, {})
        assert status == 503 and body["worker"] == "none"


def _workers(env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "service", "workers", "--json"], env=env,
                         cwd=cwd, capture_output=True, check=True, timeout=30)
    return list(json.loads(out.stdout))


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")
