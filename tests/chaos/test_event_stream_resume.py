"""SIGKILL the service while a client follows ``GET /api/events``: the client reconnects with
``Last-Event-ID`` to the restarted service and, in the end, has received exactly the store's
event log, in order, nothing missed and nothing twice. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.simulator import SimulatorConfig
from service.simulator import create_app as create_simulator
from service.simulator.config import DEFAULT_API_KEY
from tests.core.conftest import postgres_schema, postgres_server  # noqa: F401 - fixtures
from tests.service.conftest import API_TOKEN, T2V
from tests.support.processes import REPO, pixhook_env, processes, until  # noqa: F401 - a fixture
from tests.support.servers import free_port, running_server
from tests.support.sse import messages

JOBS = 12
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pixhook.db'}"
    return str(request.getfixturevalue("postgres_schema"))


def _stored_events(database_url: str) -> list[tuple[int, str]]:
    """The store's log as (sequence, event id), read straight from the database."""
    sql = ("SELECT id, transition_id, task_run_id FROM events ORDER BY id")
    if database_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as c:
            rows = c.execute(sql).fetchall()
    else:
        import psycopg

        with psycopg.connect(database_url) as conn:
            rows = conn.execute(sql).fetchall()
    return [(row[0], f"transition:{row[1]}" if row[1] is not None else f"task_run:{row[2]}")
            for row in rows]


class Follower:
    """A client that follows the stream, reconnecting after the last id it received."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.received: list[tuple[int, str]] = []
        self.reconnects = 0

    async def run(self, http: httpx.AsyncClient) -> None:
        while True:
            headers = {**AUTH, "Accept": "text/event-stream"}
            if self.received:
                headers["Last-Event-ID"] = str(self.received[-1][0])
            try:
                async with http.stream("GET", f"{self.base}/api/events", headers=headers,
                                       params={"after": "0"}) as response:
                    async for message in messages(response):
                        if "data" in message:
                            self.received.append((int(message["id"]), message["data"]["id"]))
            except httpx.TransportError:
                pass  # killed mid-stream, or not back yet
            self.reconnects += 1
            await asyncio.sleep(0.1)


def _start(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "service", "serve", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def test_sigkill_mid_stream_resumes_exactly(
        database_url: str, tmp_path: Path,
        processes: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    sim = SimulatorConfig(generation_seconds=0.6, time_compression=0.02)
    sim.accounts[DEFAULT_API_KEY].concurrency_limit = JOBS
    port = free_port()
    async with running_server(create_simulator(sim)) as sim_url, \
            httpx.AsyncClient(timeout=10) as http:
        base = f"http://127.0.0.1:{port}"
        sim.accounts[DEFAULT_API_KEY].webhook_url = f"{base}/webhooks/pixverse"
        env = pixhook_env(
            database_url=database_url, sim_url=sim_url, tmp_path=tmp_path,
            webhook_secret=sim.accounts[DEFAULT_API_KEY].webhook_secret,
            PIXHOOK_HANDLERS="download", PIXHOOK_EVENTS_POLL_INTERVAL="0.05",
            PIXHOOK_WEBHOOK_GRACE="5", PIXHOOK_RECONCILE_INTERVAL="0.5",
            PIXHOOK_TASK_LEASE="2", PIXVERSE_TIMEOUT="1")

        async def ready() -> bool:
            try:
                return (await http.get(f"{base}/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        processes.append(_start(env, port))
        await until(ready, "the service to start")
        follower = Follower(base)
        following = asyncio.create_task(follower.run(http))
        try:
            for i in range(JOBS):
                created = await http.post(f"{base}/api/jobs", headers=AUTH, json={
                    "kind": "text_to_video", "params": {**T2V, "prompt": f"lantern {i}"}})
                assert created.status_code == 201

            async def some_received() -> bool:
                return len(follower.received) >= JOBS * 2

            await until(some_received, "the client to receive some events")
            processes[0].send_signal(signal.SIGKILL)  # mid-stream
            processes[0].wait(10)
            seen_at_kill = len(follower.received)
            processes.append(_start(env, port))  # same port and database: a restart
            await until(ready, "the service to restart")

            async def all_done() -> bool:
                tasks = (await http.get(f"{base}/api/tasks", headers=AUTH)).json()["tasks"]
                return len(tasks) == JOBS and all(t["state"] == "succeeded" for t in tasks)

            await until(all_done, "every job's download to finish", timeout=90)

            async def caught_up() -> list[tuple[int, str]] | None:
                # Late webhooks may still add events: caught up, and still so a moment later.
                for _ in range(2):
                    stored = _stored_events(database_url)
                    if not follower.received or follower.received[-1] != stored[-1]:
                        return None
                    await asyncio.sleep(1.0)
                return stored

            snapshot = await until(caught_up, "the client to catch up with the store",
                                   timeout=30)
            received = list(follower.received)
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following

    assert follower.reconnects >= 1 and seen_at_kill < len(snapshot)
    assert received[:len(snapshot)] == snapshot  # everything, in order, once
    assert len(set(received)) == len(received)
    assert _stored_events(database_url)[:len(snapshot)] == snapshot  # the log only grows
    kinds = {event_id.split(":")[0] for _, event_id in snapshot}
    assert kinds == {"transition", "task_run"}
