"""Two web and two worker processes on one PostgreSQL database.

The simulator sends 1,000 jobs' webhooks (a third of them twice, as separate deliveries)
through a round-robin proxy, so both web processes receive them and duplicates often land on
different replicas. One worker is SIGKILLed half-way. In the end every transition is recorded
once, every job's handler ran once to success, and nothing deadlocked.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.simulator import SimulatorConfig
from service.simulator import create_app as create_simulator
from service.simulator.config import DEFAULT_API_KEY, ChaosConfig
from tests.core.conftest import postgres_schema, postgres_server  # noqa: F401 - fixtures
from tests.service.conftest import API_TOKEN, T2V
from tests.support.processes import REPO, pixhook_env, processes, until  # noqa: F401 - a fixture
from tests.support.servers import free_port, running_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JOBS = int(os.environ.get("PIXHOOK_TEST_REPLICA_JOBS", "1000"))
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


class RoundRobin:
    """A load balancer in front of the web processes: each request to the next one."""

    def __init__(self, upstreams: list[str]) -> None:
        self._next = itertools.cycle(upstreams)
        self._http = httpx.AsyncClient(timeout=30)
        self.app = Starlette(routes=[Route("/{path:path}", self.forward,
                                           methods=["GET", "POST"])])

    async def forward(self, request: Request) -> Response:
        upstream = next(self._next)
        answer = await self._http.request(
            request.method, f"{upstream}{request.url.path}", params=request.query_params,
            content=await request.body(),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"})
        return Response(answer.content, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type"))

    async def aclose(self) -> None:
        await self._http.aclose()


async def test_two_web_two_worker_replicas_on_postgres(
        postgres_schema: str, tmp_path: Path,  # noqa: F811
        processes: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    sim = SimulatorConfig(generation_seconds=0.5, time_compression=0.01,
                          chaos=ChaosConfig(seed=5, webhook_duplicate_rate=0.33))
    sim.accounts[DEFAULT_API_KEY].concurrency_limit = JOBS
    web_ports = [free_port(), free_port()]
    webs = [f"http://127.0.0.1:{port}" for port in web_ports]
    async with running_server(create_simulator(sim)) as sim_url, \
            httpx.AsyncClient(timeout=30) as http:
        env = pixhook_env(
            database_url=postgres_schema, sim_url=sim_url, tmp_path=tmp_path,
            webhook_secret=sim.accounts[DEFAULT_API_KEY].webhook_secret,
            PIXHOOK_HANDLERS="download", PIXHOOK_TASK_LEASE="3", PIXVERSE_TIMEOUT="2",
            PIXHOOK_WEBHOOK_GRACE="30", PIXHOOK_LOG_LEVEL="warning")
        python = [sys.executable, "-m", "service"]
        for port in web_ports:
            processes.append(subprocess.Popen([*python, "web", "--host", "127.0.0.1",
                                               "--port", str(port)], cwd=REPO, env=env))
        workers = [subprocess.Popen([*python, "worker"], cwd=REPO, env=env)
                   for _ in range(2)]
        processes.extend(workers)

        async def up() -> bool:
            try:
                return all([(await http.get(f"{w}/healthz")).status_code == 200 for w in webs])
            except httpx.TransportError:
                return False

        await until(up, "the web processes", timeout=30, interval=0.2)
        balancer = RoundRobin(webs)
        async with running_server(balancer.app) as front, \
                contextlib.aclosing(balancer):
            sim.accounts[DEFAULT_API_KEY].webhook_url = f"{front}/webhooks/pixverse"
            for i in range(JOBS):
                created = await http.post(f"{webs[i % 2]}/api/jobs", headers=AUTH, json={
                    "kind": "text_to_video", "params": {**T2V, "prompt": f"lantern {i}"}})
                assert created.status_code == 201, created.text

            async def halfway() -> bool:
                page = (await http.get(f"{webs[0]}/api/tasks", headers=AUTH,
                                       params={"state": "succeeded", "limit": "200"})).json()
                return len(page["tasks"]) >= 100

            await until(halfway, "the first downloads", timeout=120, interval=0.2)
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(10)

            seen: list[str] = []

            async def settled() -> bool:
                counts = (await http.get(f"{webs[1]}/metrics")).text
                seen[:] = [line for line in counts.splitlines()
                           if line.startswith(("pixhook_jobs{", "pixhook_tasks{"))
                           and not line.endswith(" 0")]
                # Tasks are queued with the transition, so once every job has succeeded, no
                # pending or running task left means every download has finished.
                return (f'pixhook_jobs{{state="succeeded"}} {JOBS}' in seen
                        and not any(line.startswith("pixhook_tasks{") for line in seen))

            try:
                await until(settled, "every job and download", timeout=240,
                            interval=0.2)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {seen}") from None
            deliveries = (await http.get(f"{sim_url}/_sim/deliveries")).json()["deliveries"]
            stats = (await http.get(f"{sim_url}/_sim/stats")).json()["keys"][DEFAULT_API_KEY]

    import psycopg

    with psycopg.connect(postgres_schema) as conn:
        applied = conn.execute(
            "SELECT job_id, to_state, count(*) FROM transitions WHERE outcome = 'applied' "
            "GROUP BY job_id, to_state HAVING count(*) > 1").fetchall()
        succeeded = conn.execute("SELECT count(*) FROM transitions WHERE outcome = 'applied' "
                                 "AND to_state = 'succeeded'").fetchone()
        tasks = conn.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall()
        by_web = conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()
        files = conn.execute("SELECT count(*) FROM jobs WHERE media_sha256 IS NOT NULL"
                             ).fetchone()
    duplicates = sum(1 for d in deliveries if d["duplicate_of"])
    assert duplicates > JOBS // 5  # the chaos really duplicated
    assert applied == [], applied  # every transition recorded once
    assert succeeded is not None and succeeded[0] == JOBS, succeeded
    assert dict(tasks) == {"succeeded": JOBS}, tasks  # one download per job, all done
    assert files is not None and files[0] == JOBS, files
    # Every delivery kept once. Each attempt is signed afresh (new nonce), so an attempt that
    # timed out at the simulator after pixhook committed it, then retried, is a second row:
    # under a loaded machine that happens, and it is the sender's retry, not a lost dedupe.
    retried = sum(len(d["attempts"]) - 1 for d in deliveries)
    assert by_web is not None
    assert JOBS + duplicates <= by_web[0] <= JOBS + duplicates + retried, \
        (by_web[0], JOBS, duplicates, retried)
    assert stats["jobs"] == JOBS  # nothing generated twice
    assert len(list((tmp_path / "media").glob("*.mp4"))) == JOBS
