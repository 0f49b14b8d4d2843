"""A running pixhook service wired to a running simulator, both on real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.pixverse.client import PixVerseClient
from service.registry import HandlerSet
from service.settings import Settings
from service.simulator import SimulatorConfig
from service.simulator import create_app as create_simulator
from service.simulator.config import DEFAULT_API_KEY
from tests.core.conftest import postgres_schema, postgres_server  # noqa: F401
from tests.support.servers import free_port, running_server

API_TOKEN = "test-api-token"
T2V = {"prompt": "a lantern over a lake", "model": "v6", "duration": 5, "quality": "540p",
       "aspect_ratio": "16:9"}


@dataclasses.dataclass
class Stack:
    sim: SimulatorConfig
    sim_url: str
    settings: Settings
    http: httpx.AsyncClient
    service_url: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_TOKEN}"}

    port: int = 0

    @contextlib.asynccontextmanager
    async def service(self, handlers: HandlerSet | None = None,
                      client: PixVerseClient | None = None,
                      **overrides: Any) -> AsyncIterator[str]:
        """Run the pixhook app (web, submitter, reconciler, task runner) until the block ends.

        Every run of one stack listens on the same port, as a restarted deployment would, so
        PixVerse's retries of deliveries that failed while it was down reach the new run.
        """
        settings = dataclasses.replace(self.settings, **overrides)
        app = create_app(settings, handlers=handlers, client=client)
        async with running_server(app, port=self.port) as url:
            self.port = int(url.rsplit(":", 1)[1])
            self.service_url = url
            self.sim.accounts[DEFAULT_API_KEY].webhook_url = f"{url}/webhooks/pixverse"
            yield url

    async def submit(self, kind: str = "text_to_video", params: dict[str, Any] | None = None,
                     **extra: Any) -> dict[str, Any]:
        response = await self.http.post(f"{self.service_url}/api/jobs", headers=self.auth,
                                        json={"kind": kind, "params": params or T2V, **extra})
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{self.service_url}/api/jobs/{job_id}",
                                       headers=self.auth)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_for(self, job_id: str, *states: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {job['state']}, not {states}: {job}")
            await asyncio.sleep(0.05)

    async def tasks(self, **query: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.service_url}/api/tasks", headers=self.auth,
                                        params=query)
        assert response.status_code == 200, response.text
        return list(response.json()["tasks"])

    async def wait_for_tasks(self, job_id: str, *states: str,
                             timeout: float = 15.0) -> list[dict[str, Any]]:
        """The job's tasks, once there is at least one and all are in ``states``."""
        deadline = time.monotonic() + timeout
        while True:
            tasks = await self.tasks(job_id=job_id)
            if tasks and all(task["state"] in states for task in tasks):
                return tasks
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id}'s tasks are not all {states}: {tasks}")
            await asyncio.sleep(0.05)

    async def sim_stats(self) -> dict[str, Any]:
        stats = (await self.http.get(f"{self.sim_url}/_sim/stats")).json()
        return dict(stats["keys"].get(DEFAULT_API_KEY, {}))

    async def set_chaos(self, **knobs: Any) -> None:
        response = await self.http.put(f"{self.sim_url}/_sim/chaos", json=knobs)
        assert response.status_code == 200, response.text


@pytest.fixture
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The simulator and a service on SQLite; a module may run its tests on PostgreSQL too
    with ``pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)``."""
    backend = getattr(request, "param", "sqlite")
    database_url = f"sqlite:///{tmp_path / 'pixhook.db'}"
    if backend == "postgres":
        database_url = request.getfixturevalue("postgres_schema")
    sim = SimulatorConfig(generation_seconds=0.2, time_compression=0.01)
    secret = sim.accounts[DEFAULT_API_KEY].webhook_secret
    async with running_server(create_simulator(sim)) as sim_url, \
            httpx.AsyncClient(timeout=10) as http:
        port = free_port()
        settings = Settings(
            database_url=database_url,
            media_dir=str(tmp_path / "media"),
            download_allow_private=True,  # the simulator serves its media on loopback
            forward_allow_private=True,  # callback receivers listen on loopback
            public_url=f"http://127.0.0.1:{port}",
            secret_key="test-secret-key",
            task_backoff=0.05,
            task_backoff_max=0.5,
            pixverse_base_url=f"{sim_url}/openapi/v2",
            pixverse_api_key=DEFAULT_API_KEY,
            pixverse_webhook_secret=secret,
            api_token=API_TOKEN,
            webhook_grace=1.0,
            reconcile_interval=0.1,
        )
        yield Stack(sim=sim, sim_url=sim_url, settings=settings, http=http, port=port)
