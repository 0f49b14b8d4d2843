"""A naive webhook receiver doing pixhook's durable work: ``scripts/bench_ingest --naive``.

The baseline a straightforward implementation would give on the same database: one Starlette
route verifies PixVerse's signature (pixhook's own ``signature.verify``), then writes, in one
transaction per request committed before ``ok``, what pixhook writes for a webhook: the nonce
(a used one answers 409), the delivery, the transition, the job's new state, the download task
and the event-log row. The job is read by video id (``FOR UPDATE`` on PostgreSQL) and the
rule is pixhook's (``lifecycle.decide``). Nothing else: no batching, no records, no metrics,
and none of the locks that only pixhook's guarantees across processes need (the video id's
advisory lock against a racing submitter, the events lock that numbers events by commit) nor
NOTIFY. SQLite: one connection on the event loop, WAL and ``synchronous=NORMAL`` as pixhook's;
PostgreSQL: a psycopg pool of 1-10 connections as pixhook's, without its checks.

    python scripts/naive_receiver.py PORT DATABASE_URL SECRET
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service import lifecycle
from service.pixverse import signature
from service.pixverse.errors import MalformedPayloadError, SignatureError
from service.pixverse.signature import VerifiedWebhook
from service.store import is_postgres_url, sqlite_path_from_url

CLAIM = ("INSERT INTO webhook_nonces (nonce, timestamp, claimed_at) VALUES (?, ?, ?) "
         "ON CONFLICT (nonce) DO NOTHING")
JOB = "SELECT id, state, state_changed_at, last_event_at FROM jobs WHERE video_id = ?"
DELIVERY = ("INSERT INTO webhook_deliveries (received_at, outcome, video_id, job_id, nonce, "
            "timestamp, headers, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id")
TRANSITION = ("INSERT INTO transitions (job_id, from_state, to_state, outcome, source, reason, "
              "payload, delivery_id, received_at, recorded_at) "
              "VALUES (?, ?, ?, ?, 'webhook', ?, ?, ?, ?, ?) RETURNING id")
APPLY = ("UPDATE jobs SET state = ?, state_changed_at = ?, last_event_at = ?, "
         "next_poll_at = NULL, updated_at = ? WHERE id = ?")
TOUCH = "UPDATE jobs SET last_event_at = ? WHERE id = ?"
TASK = ("INSERT INTO tasks (job_id, transition_id, handler, idempotency_key, state, run_after, "
        "created_at, updated_at) VALUES (?, ?, 'download', ?, 'pending', ?, ?, ?)")
EVENT = ("INSERT INTO events (job_id, state, transition_id, recorded_at) VALUES (?, ?, ?, ?)")


class Refused(Exception):
    """An answer other than ``ok``."""

    def __init__(self, status: int, text: str) -> None:
        self.status, self.text = status, text


def statements(postgres: bool) -> dict[str, str]:
    """The statements above, in the driver's placeholder style."""
    named = {"claim": CLAIM, "job": JOB + (" FOR UPDATE" if postgres else ""),
             "delivery": DELIVERY, "transition": TRANSITION, "apply": APPLY, "touch": TOUCH,
             "task": TASK, "event": EVENT}
    return {k: v.replace("?", "%s") if postgres else v for k, v in named.items()}


def steps(now: float, event: VerifiedWebhook, body: bytes,
          headers: dict[str, str]) -> Generator[tuple[str, tuple[Any, ...]], Any, None]:
    """The statements of one webhook, in order, as ``(name, params)``; each is sent back its
    first row (the claim: its row count)."""
    video_id = int(event.payload["id"])
    proposed = lifecycle.state_from_pixverse(event.payload["status"])
    claimed = yield "claim", (event.nonce, event.timestamp, now)
    if not claimed:
        raise Refused(409, "nonce already used")
    job = yield "job", (video_id,)
    outcome = "ok" if job is not None else "orphan"
    delivery = yield "delivery", (now, outcome, video_id, job and job[0], event.nonce,
                                  event.timestamp, json.dumps(headers), body)
    if job is None:
        return
    job_id, state, changed_at, heard_at = job
    decision = lifecycle.decide(lifecycle.JobState(state), proposed)
    transition = yield "transition", (job_id, state, proposed.value, decision.outcome.value,
                                      decision.reason, body.decode(), delivery[0], now, now)
    if decision.applied:
        yield "apply", (proposed.value, max(changed_at, now), max(heard_at, now), now, job_id)
        yield "task", (job_id, transition[0], f"{job_id}:{proposed.value}:download", now, now,
                       now)
    else:
        yield "touch", (max(heard_at, now), job_id)
    yield "event", (job_id, proposed.value if decision.applied else state, transition[0], now)


Writer = Callable[[Generator[tuple[str, tuple[Any, ...]], Any, None]], Awaitable[None]]


def sqlite_app(url: str) -> tuple[Writer, None]:
    conn = sqlite3.connect(sqlite_path_from_url(url), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 5000")
    sql = statements(postgres=False)

    async def write(webhook: Generator[tuple[str, tuple[Any, ...]], Any, None]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            name, params = next(webhook)
            while True:
                cursor = conn.execute(sql[name], params)
                answer = cursor.rowcount if name == "claim" else cursor.fetchone()
                name, params = webhook.send(answer)
        except StopIteration:
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    return write, None


def postgres_app(url: str) -> tuple[Writer, Any]:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(url, min_size=1, max_size=10, open=False)
    sql = statements(postgres=True)

    async def write(webhook: Generator[tuple[str, tuple[Any, ...]], Any, None]) -> None:
        async with pool.connection() as conn:  # commits when the block ends
            try:
                name, params = next(webhook)
                while True:
                    cursor = await conn.execute(sql[name], params)
                    answer = (cursor.rowcount if name == "claim"
                              else await cursor.fetchone() if cursor.description else None)
                    name, params = webhook.send(answer)
            except StopIteration:
                pass

    return write, pool


def main() -> None:
    port, url, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    write, pool = postgres_app(url) if is_postgres_url(url) else sqlite_app(url)

    async def endpoint(request: Request) -> PlainTextResponse:
        body = await request.body()
        headers = dict(request.headers.items())
        now = time.time()
        try:
            event = signature.verify(body, headers, [secret], now=now)
        except (SignatureError, MalformedPayloadError) as exc:
            return PlainTextResponse(str(exc), status_code=401)
        try:
            await write(steps(now, event, body, headers))
        except Refused as refused:
            return PlainTextResponse(refused.text, status_code=refused.status)
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if pool is None:
            yield
            return
        async with pool:
            yield

    app = Starlette(routes=[Route("/webhooks/pixverse", endpoint, methods=["POST"]),
                            Route("/healthz", lambda r: PlainTextResponse("ok"))],
                    lifespan=lifespan)
    # The same uvicorn.run() options as `pixhook web` (service/cli.py, _serve).
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                log_config=None)


if __name__ == "__main__":
    main()
