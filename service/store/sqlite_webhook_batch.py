"""SQLite's set-based webhook write: a batch (:mod:`service.store.webhook_batch`) in a fixed
few statements.

One writer holds the database, so a whole batch costs:

* one ``SELECT`` for the nonces already used (a single JSON value) and one for the jobs;
* one ``SELECT`` of the highest ids, so rows get their ids in Python, in order: exactly the ids
  SQLite would give (``INTEGER PRIMARY KEY``, one writer);
* one multi-row ``INSERT``/``UPDATE`` per table, in power-of-two chunks so that a handful of
  statement texts cover every batch size.
* one ``INSERT ... SELECT`` that logs the batch's transitions for the event stream
  (:mod:`service.store.event_log`).

The decisions are :func:`service.store.webhook_batch.plan`'s, shared with PostgreSQL.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from service.store import records
from service.store.records import Job, TaskPlanner, WebhookIngest
from service.store.webhook_batch import (
    DELIVERY_COLUMNS,
    JOB_UPDATE_COLUMNS,
    NONCE_COLUMNS,
    TASK_COLUMNS,
    TRANSITION_COLUMNS,
    BatchWrites,
    Webhook,
    plan,
)

_JOB_FIELDS: Final = (
    "id", "kind", "state", "params", "trace_id", "video_id", "labels", "callback_url",
    "then_steps", "parent_job_id", "attempts", "last_error", "next_attempt_at", "next_poll_at",
    "created_at", "updated_at", "state_changed_at", "last_event_at", "media_path",
    "media_sha256", "media_size", "cancelled_at")

USED_NONCES_SQL: Final = (
    "SELECT json_group_array(nonce) FROM webhook_nonces "
    "WHERE nonce IN (SELECT value FROM json_each(?))"
)
#: Rows, not one JSON value: SQLite's JSON prints REALs with 15 significant digits.
JOBS_BY_VIDEO_SQL: Final = (
    f"SELECT {', '.join(_JOB_FIELDS)} "
    "FROM jobs WHERE video_id IN (SELECT value FROM json_each(?))"
)
MAX_IDS_SQL: Final = (
    "SELECT (SELECT max(id) FROM webhook_deliveries), (SELECT max(id) FROM transitions), "
    "(SELECT max(id) FROM tasks)"
)


def _values(rows: int, width: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * rows)


def _insert(table: str, columns: Sequence[str]) -> Callable[[int], str]:
    @functools.cache
    def sql(rows: int) -> str:
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {_values(rows, len(columns))}"
    return sql


def _update_jobs() -> Callable[[int], str]:
    sets = ", ".join(f"{name} = v.column{index}"
                     for index, name in enumerate(JOB_UPDATE_COLUMNS, start=1) if index > 1)

    @functools.cache
    def sql(rows: int) -> str:
        return (f"UPDATE jobs SET {sets} "
                f"FROM (VALUES {_values(rows, len(JOB_UPDATE_COLUMNS))}) AS v "
                "WHERE jobs.id = v.column1")
    return sql


_INSERT_NONCES: Final = _insert("webhook_nonces", NONCE_COLUMNS)
_INSERT_DELIVERIES: Final = _insert("webhook_deliveries", DELIVERY_COLUMNS)
_INSERT_TRANSITIONS: Final = _insert("transitions", TRANSITION_COLUMNS)
_INSERT_TASKS: Final = _insert("tasks", TASK_COLUMNS)
#: The batch's transitions logged for the event stream in one statement, in id order, by the
#: ledger's rule for the job's state after each (event_log.state_after).
LOG_EVENTS_SQL: Final = (
    "INSERT INTO events (job_id, state, transition_id, recorded_at) "
    "SELECT job_id, iif(outcome = 'applied', to_state, from_state), id, recorded_at "
    "FROM transitions WHERE id >= ? ORDER BY id"
)
_UPDATE_JOBS: Final = _update_jobs()
#: Rows one multi-row statement carries at most (11 columns x 256 rows stays far below
#: SQLite's 32,766 parameters), whatever the writer's batch size.
MAX_ROWS_PER_STATEMENT: Final = 256
#: Statement texts these writes can use: a connection's statement cache should hold them all
#: (5 statements x the 9 power-of-two chunk sizes up to 256, the three SELECTs and the event
#: log's INSERT).
STATEMENT_TEXTS: Final = 5 * MAX_ROWS_PER_STATEMENT.bit_length() + 4


def _chunks(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    """``rows`` in power-of-two chunks of at most :data:`MAX_ROWS_PER_STATEMENT`, largest
    first (a batch of 37 is 32 + 4 + 1)."""
    start = 0
    while start < len(rows):
        size = min(MAX_ROWS_PER_STATEMENT, 1 << ((len(rows) - start).bit_length() - 1))
        yield rows[start:start + size]
        start += size


def _execute(conn: sqlite3.Connection, sql: Callable[[int], str],
             rows: list[tuple[Any, ...]]) -> None:
    for chunk in _chunks(rows):
        conn.execute(sql(len(chunk)), [value for row in chunk for value in row])


def _ids_after_existing_rows(conn: sqlite3.Connection) -> BatchWrites:
    """Empty writes whose ids continue the tables' (one writer: nobody takes them first)."""
    deliveries, transitions, tasks = conn.execute(MAX_IDS_SQL).fetchone()
    return BatchWrites((deliveries or 0) + 1, (transitions or 0) + 1, (tasks or 0) + 1)


def _flush(conn: sqlite3.Connection, writes: BatchWrites, first_transition: int) -> None:
    # Parents before children: the foreign keys are checked statement by statement.
    _execute(conn, _INSERT_NONCES, writes.nonces)
    _execute(conn, _INSERT_DELIVERIES, writes.deliveries)
    _execute(conn, _INSERT_TRANSITIONS, writes.transitions)
    _execute(conn, _UPDATE_JOBS, list(writes.jobs.values()))
    _execute(conn, _INSERT_TASKS, writes.tasks)
    if writes.transitions:
        conn.execute(LOG_EVENTS_SQL, [first_transition])


def _jobs_by_video(conn: sqlite3.Connection, video_ids: list[int]) -> dict[int, Job]:
    jobs: dict[int, Job] = {}
    for values in conn.execute(JOBS_BY_VIDEO_SQL, [json.dumps(video_ids)]):
        job = records.job(dict(zip(_JOB_FIELDS, values, strict=True)))
        jobs[job.video_id] = job  # type: ignore[index]  # selected by video id
    return jobs


def write_batch(conn: sqlite3.Connection, requests: Sequence[Webhook], now: float,
                planner: TaskPlanner | None) -> list[WebhookIngest]:
    """Record verified webhooks inside the open transaction, as if one after another.

    Returns one :class:`WebhookIngest` per request, in order. Raises whatever SQLite or a task
    planner raised, having written part of the batch: the caller rolls back.
    """
    used = set(json.loads(conn.execute(
        USED_NONCES_SQL, [json.dumps([request.nonce for request in requests])]).fetchone()[0]))
    jobs = _jobs_by_video(conn, [request.video_id for request in requests])
    writes = _ids_after_existing_rows(conn)
    first_transition = writes.next_transition
    results = plan(requests, used=used, jobs=jobs, writes=writes, now=now, planner=planner)
    _flush(conn, writes, first_transition)
    return results
