"""SQLite's fast path for webhooks: the webhooks of one loop turn written set-based, in a fixed
few statements.

Webhook ingest is pixhook's hot path. Done one webhook at a time (the ledger's
:meth:`~service.store.ledger.Ledger.ingest_webhook`, which PostgreSQL uses) it costs a nonce
claim, a job lookup, three inserts and an update, each a statement with its own Python binding
and SQLite preparation; under load that per-statement work, not the rows, was most of the cost
(``scripts/profile_ingest``). Here a whole batch costs:

* one ``SELECT`` for the nonces already used and one for the jobs, each returning a single
  JSON value (REAL columns printed with ``%!.17g``, which keeps every bit);
* one ``SELECT`` of the highest ids, so rows get their ids in Python, in order: exactly the ids
  SQLite would give (``INTEGER PRIMARY KEY``, one writer);
* one multi-row ``INSERT``/``UPDATE`` per table, in power-of-two chunks so that a handful of
  statement texts cover every batch size.
* one ``INSERT ... SELECT`` that logs the batch's transitions for the event stream
  (:mod:`service.store.event_log`).

The rules are the ledger's (:func:`~service.store.ledger.step_transition`,
:func:`~service.store.ledger.plan_tasks`), and a batch behaves exactly like its webhooks applied
one after another (a nonce or a job seen twice in one batch included). A batch that fails is
written again one webhook at a time, so only the webhook at fault fails.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from sqlite_utils import Database

from service.lifecycle import JobState, TransitionSource
from service.store import records
from service.store.deliveries import safe_headers
from service.store.errors import StorageError
from service.store.ledger import idempotency_key, plan_tasks, step_transition
from service.store.records import (
    DeliveryOutcome,
    Job,
    Task,
    TaskPlanner,
    TaskState,
    Transition,
    TransitionResult,
    WebhookDelivery,
    WebhookIngest,
)
from service.store.writer import WriterStats, settle

if TYPE_CHECKING:
    from service.store.sqlite import SQLiteConnector


@dataclass(frozen=True, slots=True)
class Webhook:
    """One verified webhook, as :meth:`SQLiteStore.ingest_webhook` was given it."""

    body: bytes
    headers: Mapping[str, str]
    nonce: str
    timestamp: float
    received_at: float
    video_id: int
    proposed: JobState


_JOB_FIELDS: Final = (
    "id", "kind", "state", "params", "trace_id", "video_id", "labels", "callback_url",
    "then_steps", "parent_job_id", "attempts", "last_error", "next_attempt_at", "next_poll_at",
    "created_at", "updated_at", "state_changed_at", "last_event_at", "media_path",
    "media_sha256", "media_size", "cancelled_at")
_REAL_JOB_FIELDS: Final = frozenset({"next_attempt_at", "next_poll_at", "created_at",
                                     "updated_at", "state_changed_at", "last_event_at",
                                     "cancelled_at"})


def _exact(column: str) -> str:
    # SQLite's JSON prints REALs with 15 significant digits; '%!.17g' round-trips every double.
    if column in _REAL_JOB_FIELDS:
        return f"iif({column} IS NULL, NULL, printf('%!.17g', {column}))"
    return column


USED_NONCES_SQL: Final = (
    "SELECT json_group_array(nonce) FROM webhook_nonces "
    "WHERE nonce IN (SELECT value FROM json_each(?))"
)
JOBS_BY_VIDEO_SQL: Final = (
    f"SELECT json_group_array(json_array({', '.join(_exact(c) for c in _JOB_FIELDS)})) "
    "FROM jobs WHERE video_id IN (SELECT value FROM json_each(?))"
)
MAX_IDS_SQL: Final = (
    "SELECT (SELECT max(id) FROM webhook_deliveries), (SELECT max(id) FROM transitions), "
    "(SELECT max(id) FROM tasks)"
)
_NONCE_COLUMNS: Final = ("nonce", "timestamp", "claimed_at")
#: Written by position: the row tuples below follow these orders.
_DELIVERY_COLUMNS: Final = ("id", "received_at", "outcome", "video_id", "job_id", "nonce",
                            "timestamp", "headers", "body", "error")
_TRANSITION_COLUMNS: Final = ("id", "job_id", "from_state", "to_state", "outcome", "source",
                              "reason", "payload", "delivery_id", "received_at", "recorded_at")
_TASK_COLUMNS: Final = ("id", "job_id", "transition_id", "handler", "idempotency_key", "state",
                        "run_after", "created_at", "updated_at")
#: The job columns a transition may change (``UPDATE ... FROM (VALUES ...)``, by position).
_JOB_UPDATE_COLUMNS: Final = ("id", "state", "state_changed_at", "last_event_at",
                              "next_poll_at", "updated_at")


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
                     for index, name in enumerate(_JOB_UPDATE_COLUMNS, start=1) if index > 1)

    @functools.cache
    def sql(rows: int) -> str:
        return (f"UPDATE jobs SET {sets} "
                f"FROM (VALUES {_values(rows, len(_JOB_UPDATE_COLUMNS))}) AS v "
                "WHERE jobs.id = v.column1")
    return sql


_INSERT_NONCES: Final = _insert("webhook_nonces", _NONCE_COLUMNS)
_INSERT_DELIVERIES: Final = _insert("webhook_deliveries", _DELIVERY_COLUMNS)
_INSERT_TRANSITIONS: Final = _insert("transitions", _TRANSITION_COLUMNS)
_INSERT_TASKS: Final = _insert("tasks", _TASK_COLUMNS)
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


@dataclass(slots=True)
class _Writes:
    """The rows a batch writes, collected in order, with the ids they are given."""

    next_delivery: int
    next_transition: int
    next_task: int
    #: The batch's first transition id (the event log takes those from it on).
    first_transition: int = 0
    nonces: list[tuple[Any, ...]] = field(default_factory=list)
    deliveries: list[tuple[Any, ...]] = field(default_factory=list)
    transitions: list[tuple[Any, ...]] = field(default_factory=list)
    #: By job id: a job stepped twice in one batch is written once, as it ended up.
    jobs: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    tasks: list[tuple[Any, ...]] = field(default_factory=list)

    @classmethod
    def after_existing_rows(cls, conn: sqlite3.Connection) -> _Writes:
        deliveries, transitions, tasks = conn.execute(MAX_IDS_SQL).fetchone()
        first = (transitions or 0) + 1
        return cls((deliveries or 0) + 1, first, (tasks or 0) + 1, first)

    def flush(self, conn: sqlite3.Connection) -> None:
        # Parents before children: the foreign keys are checked statement by statement.
        _execute(conn, _INSERT_NONCES, self.nonces)
        _execute(conn, _INSERT_DELIVERIES, self.deliveries)
        _execute(conn, _INSERT_TRANSITIONS, self.transitions)
        _execute(conn, _UPDATE_JOBS, list(self.jobs.values()))
        _execute(conn, _INSERT_TASKS, self.tasks)
        if self.transitions:
            conn.execute(LOG_EVENTS_SQL, [self.first_transition])


def _step(writes: _Writes, job: Job, proposed: JobState, *, payload: str, received_at: float,
          delivery_id: int, planner: TaskPlanner | None, now: float) -> TransitionResult:
    """One webhook's proposed state for ``job``: the history row, the job's new fields and, if
    applied, its tasks, added to ``writes``."""
    step = step_transition(job, proposed, now=now, received_at=received_at)
    decision, after = step.decision, step.job
    transition = Transition(
        id=writes.next_transition, job_id=job.id, from_state=job.state, to_state=proposed,
        outcome=decision.outcome, source=TransitionSource.WEBHOOK, reason=decision.reason,
        payload=payload, delivery_id=delivery_id, received_at=step.received_at,
        recorded_at=now,
    )
    writes.next_transition += 1
    writes.transitions.append((
        transition.id, job.id, job.state.value, proposed.value, decision.outcome.value,
        transition.source.value, decision.reason, payload, delivery_id, step.received_at, now,
    ))
    writes.jobs[job.id] = (job.id, after.state.value, after.state_changed_at,
                           after.last_event_at, after.next_poll_at, after.updated_at)
    tasks: list[Task] = []
    if decision.applied:
        for handler in plan_tasks(after, transition, planner):
            task = Task(
                id=writes.next_task, job_id=job.id, transition_id=transition.id,
                handler=handler, idempotency_key=idempotency_key(job.id, proposed, handler),
                state=TaskState.PENDING, attempts=0, run_after=now, lease_until=None,
                last_error=None, created_at=now, updated_at=now,
            )
            writes.next_task += 1
            writes.tasks.append((task.id, job.id, transition.id, task.handler,
                                 task.idempotency_key, task.state.value, now, now, now))
            tasks.append(task)
    return TransitionResult(decision, after, transition, tuple(tasks))


def _jobs_by_video(conn: sqlite3.Connection, video_ids: list[int]) -> dict[int, Job]:
    text = conn.execute(JOBS_BY_VIDEO_SQL, [json.dumps(video_ids)]).fetchone()[0]
    jobs: dict[int, Job] = {}
    for values in json.loads(text):
        row = dict(zip(_JOB_FIELDS, values, strict=True))
        for name in _REAL_JOB_FIELDS:
            if row[name] is not None:
                row[name] = float(row[name])
        job = records.job(row)
        jobs[row["video_id"]] = job
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
    writes = _Writes.after_existing_rows(conn)
    results: list[WebhookIngest] = []
    for request in requests:
        if request.nonce in used:
            results.append(WebhookIngest(DeliveryOutcome.DUPLICATE, None, None))
            continue
        used.add(request.nonce)
        writes.nonces.append((request.nonce, request.timestamp, now))
        job = jobs.get(request.video_id)
        delivery = WebhookDelivery(
            id=writes.next_delivery, received_at=request.received_at,
            outcome=DeliveryOutcome.OK if job is not None else DeliveryOutcome.ORPHAN,
            video_id=request.video_id, job_id=job.id if job is not None else None,
            nonce=request.nonce, timestamp=request.timestamp,
            headers=safe_headers(request.headers), body=bytes(request.body),
            error=None,
        )
        writes.next_delivery += 1
        writes.deliveries.append((
            delivery.id, delivery.received_at, delivery.outcome.value, delivery.video_id,
            delivery.job_id, delivery.nonce, delivery.timestamp,
            records.dumps(delivery.headers), delivery.body, None,
        ))
        if job is None:
            results.append(WebhookIngest(delivery.outcome, delivery, None))
            continue
        result = _step(writes, job, request.proposed,
                       payload=request.body.decode("utf-8", "replace"),
                       received_at=request.received_at, delivery_id=delivery.id,
                       planner=planner, now=now)
        jobs[request.video_id] = result.job
        results.append(WebhookIngest(delivery.outcome, delivery, result))
    writes.flush(conn)
    return results


_Waiting = list[tuple[Webhook, "asyncio.Future[WebhookIngest]"]]


class WebhookBatcher:
    """Collects the webhooks handed in during one loop turn and writes them as one operation
    of the connector's writer."""

    def __init__(self, connector: SQLiteConnector, *, max_batch: int,
                 clock: Callable[[], float], planner: Callable[[], TaskPlanner | None]) -> None:
        self._connector = connector
        self._max_batch = max_batch
        self._clock = clock
        self._planner = planner
        self._waiting: _Waiting = []
        self._writing: set[asyncio.Task[None]] = set()
        #: Batches formed so far: ``operations`` counts webhooks.
        self.stats = WriterStats()

    async def submit(self, webhook: Webhook) -> WebhookIngest:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WebhookIngest] = loop.create_future()
        self._waiting.append((webhook, future))
        if len(self._waiting) == 1:
            # call_soon: the webhooks the rest of this loop turn verifies join the batch.
            loop.call_soon(self._start)
        ingest = await future
        if ingest.transition is not None and ingest.transition.tasks:
            self._connector.tasks_ready.set()
        return ingest

    async def drain(self) -> None:
        """Write what was handed in (the store is closing)."""
        while self._waiting or self._writing:
            if self._waiting:
                self._start()
            await asyncio.gather(*self._writing, return_exceptions=True)

    def _start(self) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), self._max_batch):
            batch = waiting[start:start + self._max_batch]
            self.stats.count(len(batch))
            task = asyncio.create_task(self._write(batch))
            self._writing.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(functools.partial(self._done, batch))

    def _done(self, batch: _Waiting, task: asyncio.Task[None]) -> None:
        self._writing.discard(task)
        if task.cancelled() or task.exception() is not None:
            # Cancelled (the loop shutting down), perhaps before it began: no caller may be
            # left waiting. Callers already answered are skipped. The writer may still commit
            # a batch cancelled while queued there; PixVerse's retry then finds its nonce used.
            lost = StorageError("webhook batch interrupted; it may not have been written")
            for _, future in batch:
                settle(future, lost, None)

    async def _write(self, batch: _Waiting) -> None:
        """Write a batch as one operation. If it fails, write each webhook alone, so only the
        webhook at fault fails (its caller answers 503; PixVerse retries)."""
        webhooks = [webhook for webhook, _ in batch]

        def op(db: Database) -> list[WebhookIngest]:
            return write_batch(db.conn, webhooks, self._clock(), self._planner())

        try:
            results = await self._connector.writer.submit(op)
        except Exception as exc:  # noqa: BLE001 -- the caller gets whatever it raised
            if len(batch) == 1:
                settle(batch[0][1], exc, None)
                return
            await asyncio.gather(*(self._write([item]) for item in batch))
            return
        for (_, future), result in zip(batch, results, strict=True):
            settle(future, None, result)
