"""Metrics that can be alerted on, from a real `pixhook web`: build info, the process's own
figures, the heartbeat and queue ages; and the access log, off unless PIXHOOK_ACCESS_LOG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service import __version__
from tests.support.processes import pixhook_env, processes, until  # noqa: F401 - a fixture
from tests.support.servers import free_port


@pytest.mark.parametrize("access_log", ["1", "0"])
async def test_build_and_process_metrics_and_the_access_log(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]],  # noqa: F811
        access_log: str) -> None:
    port = free_port()
    env = pixhook_env(database_url=f"sqlite:///{tmp_path / 'pixhook.db'}",
                      sim_url="http://127.0.0.1:9", webhook_secret="ops-metrics-secret",
                      tmp_path=tmp_path, PIXHOOK_ACCESS_LOG=access_log)
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "service", "web", "--host", "127.0.0.1", "--port",
             str(port)], cwd=tmp_path, env=env, stderr=out))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        async def up() -> bool:
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False
        await until(up, "pixhook web")
        metrics = {line.split(" ")[0]: float(line.split(" ")[1])
                   for line in (await http.get("/metrics")).text.splitlines()
                   if line and not line.startswith("#")}
    processes[0].terminate()
    processes[0].wait(15)
    build = [name for name in metrics if name.startswith("pixhook_build_info{")]
    assert build == [f'pixhook_build_info{{version="{__version__}",python="'
                     f'{sys.version.split()[0]}"}}']
    assert metrics["process_resident_memory_bytes"] > 10 * 2**20
    assert metrics["process_cpu_seconds_total"] > 0
    assert 0 < metrics["process_open_fds"] <= metrics["process_max_fds"]
    assert metrics["pixhook_oldest_queued_task_age_seconds"] == 0
    assert "pixhook_worker_heartbeat_age_seconds" not in metrics  # no worker ever beat
    access = [line for line in log.read_text().splitlines()
              if "uvicorn.access" in line and "GET /metrics" in line]
    if access_log == "1":  # one line per request, in pixhook's format
        assert len(access) == 1 and access[0].split()[1] == "INFO", access
    else:
        assert access == []
