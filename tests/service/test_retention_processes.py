"""Retention over a real `pixhook serve`, on SQLite and on PostgreSQL: its worker prunes a
store full of old history in small batches while signed webhooks keep arriving, every one
answered 200 promptly; the old jobs' rows stay, their history goes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import store as store_module
from service.pixverse import signature
from tests.core.conftest import postgres_schema, postgres_server  # noqa: F401 - fixtures
from tests.support.history import PREFIX, fill_old_history
from tests.support.processes import pixhook_env, processes, until  # noqa: F401 - a fixture
from tests.support.servers import free_port

SECRET = "retention-test-secret"
OLD_JOBS = 5_000
TRANSITIONS_PER_JOB = 5


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pixhook.db'}"
    return str(request.getfixturevalue("postgres_schema"))


def _connect(url: str) -> Any:
    if store_module.is_postgres_url(url):
        import psycopg
        return psycopg.connect(url, autocommit=True)
    import sqlite3
    return sqlite3.connect(store_module.sqlite_path_from_url(url), isolation_level=None)


async def test_worker_prunes_old_history_while_webhooks_arrive(
        database_url: str, tmp_path: Path,
        processes: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    async with store_module.connect(database_url):
        pass  # the schema, as pixhook makes it
    conn = _connect(database_url)
    old_clause = f"job_id LIKE '{PREFIX}%'"

    def old_transitions() -> int:
        return int(conn.execute(f"SELECT count(*) FROM transitions WHERE {old_clause}")
                   .fetchone()[0])

    try:
        fill_old_history(conn, postgres=store_module.is_postgres_url(database_url),
                         jobs=OLD_JOBS, transitions_per_job=TRANSITIONS_PER_JOB,
                         finished_at=time.time() - 60 * 86400)
        initial = old_transitions()
        assert initial == OLD_JOBS * TRANSITIONS_PER_JOB
        port = free_port()
        env = pixhook_env(database_url=database_url, sim_url="http://127.0.0.1:9",
                          webhook_secret=SECRET, tmp_path=tmp_path,
                          PIXHOOK_RETENTION_INTERVAL="2", PIXHOOK_POLL_MODE="off",
                          PIXHOOK_LOG_LEVEL="warning")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port)],
            cwd=tmp_path, env=env))
        base = f"http://127.0.0.1:{port}"
        answers: list[tuple[int, float, int]] = []  # status, seconds, old rows left then
        async with httpx.AsyncClient(timeout=10) as http:
            async def up() -> bool:
                try:
                    return (await http.get(f"{base}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False
            await until(up, "pixhook serve", timeout=30)
            deadline = time.monotonic() + 120
            left = initial
            while left:
                assert time.monotonic() < deadline, f"{left} old transitions left"
                for _ in range(10):
                    body = f'{{"id":"{uuid.uuid4().int >> 70}","status":5}}'.encode()
                    headers = signature.sign_headers(SECRET, body, timestamp=int(time.time()),
                                                     nonce=uuid.uuid4().hex)
                    started = time.perf_counter()
                    response = await http.post(
                        f"{base}/webhooks/pixverse", content=body,
                        headers={**headers, "content-type": "application/json"})
                    answers.append((response.status_code, time.perf_counter() - started,
                                    left))
                left = old_transitions()
                await asyncio.sleep(0.01)
        statuses = {status for status, _, _ in answers}
        assert statuses == {200}, statuses
        during = [seconds for _, seconds, rows in answers if 0 < rows < initial]
        assert during, "no webhook arrived while the prune was under way"
        assert max(during) < 2.0, max(during)
        # The job rows stay, marked pruned; their history and deliveries are gone.
        assert conn.execute(f"SELECT count(*) FROM jobs WHERE id LIKE '{PREFIX}%' "
                            "AND pruned_at IS NOT NULL").fetchone()[0] == OLD_JOBS
        assert conn.execute(f"SELECT count(*) FROM webhook_deliveries WHERE {old_clause}"
                            ).fetchone()[0] == 0
        # The webhooks that arrived meanwhile are all kept.
        assert conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0] == \
            len(answers)
    finally:
        conn.close()
