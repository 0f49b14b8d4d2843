"""The SQLite store (sqlite-utils), pixhook's embedded default.

Connections: one write connection owned by a :class:`~service.store.writer.LoopWriter`
(group commit on the event loop, checkpoints on a thread of their own), plus read connections
on a :class:`~service.store.threads.ReaderPool`. An
in-memory database (``:memory:``) exists only inside its one connection, so there the writer
serves reads as well.

Durability: WAL journal with ``synchronous=NORMAL``. A committed transaction survives a crash of
the process (the WAL is in the OS page cache); a power loss or kernel crash may lose the last
transactions before a checkpoint, but never corrupts the file. Losing the newest moments in a
power cut is tolerable here: PixVerse re-sends webhooks and the reconciler re-polls.

All SQL lives in this module, except the transition writes, which are set-based so that a
batch of webhooks costs a few statements (:mod:`service.store.sqlite_ingest`, which also
applies single transitions); the rules they follow come from :mod:`service.lifecycle` and
:mod:`service.store.planning`, and rows become records in :mod:`service.store.records`, all
shared with the PostgreSQL store (:mod:`service.store.postgres`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, Unpack

from sqlite_utils import Database

from service.lifecycle import JobState, TransitionSource
from service.store import migrations, planning, records, sqlite_ingest
from service.store.base import (
    DeliveryOutcome,
    Job,
    JobUpdate,
    SubmissionClaim,
    Task,
    TaskPlanner,
    TaskRun,
    TaskRunOutcome,
    TaskState,
    Transition,
    TransitionResult,
    WebhookDelivery,
    WebhookIngest,
)
from service.store.errors import (
    JobNotFoundError,
    LeaseLostError,
    StorageError,
    StoreClosedError,
    TaskNotFoundError,
    TaskStateError,
)
from service.store.threads import ReaderPool
from service.store.writer import DEFAULT_MAX_BATCH, LoopWriter, WriterStats, settle

logger = logging.getLogger(__name__)

MEMORY: Final = ":memory:"
#: How long a write waits for another process's lock before failing, in seconds.
DEFAULT_BUSY_TIMEOUT_SECONDS: Final = 5.0
DEFAULT_READERS: Final = 4
#: The WAL file is truncated back to this size when it is reset after a checkpoint.
WAL_SIZE_LIMIT_BYTES: Final = 64 * 1024 * 1024
#: Oldest SQLite with STRICT tables (3.37) and RETURNING (3.35).
MIN_SQLITE_VERSION: Final = (3, 37, 0)
MAX_PAGE_SIZE: Final = records.MAX_PAGE_SIZE
#: Prepared statements each connection keeps: sqlite3's default 128, plus room for the
#: set-based writes' chunk sizes (:mod:`service.store.sqlite_ingest`).
STATEMENT_CACHE_SIZE: Final = 128 + sqlite_ingest.STATEMENT_TEXTS

_JOB_COLUMNS: Final = records.JOB_COLUMNS
_TRANSITION_COLUMNS: Final = records.TRANSITION_COLUMNS
_TASK_COLUMNS: Final = records.TASK_COLUMNS
_TASK_RUN_COLUMNS: Final = records.TASK_RUN_COLUMNS
_DELIVERY_COLUMNS: Final = records.DELIVERY_COLUMNS

INSERT_JOB_SQL: Final = """
INSERT INTO jobs (id, kind, state, params, trace_id, labels, callback_url, then_steps,
                  parent_job_id, created_at, updated_at, state_changed_at, last_event_at)
VALUES (:id, :kind, :state, :params, :trace_id, :labels, :callback_url, :then_steps,
        :parent_job_id, :now, :now, :now, :now)
"""
INSERT_TRANSITION_SQL: Final = """
INSERT INTO transitions (job_id, from_state, to_state, outcome, source, reason, payload,
                         delivery_id, received_at, recorded_at)
VALUES (:job_id, :from_state, :to_state, :outcome, :source, :reason, :payload,
        :delivery_id, :received_at, :recorded_at)
"""
SELECT_JOB_SQL: Final = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?"
SELECT_JOB_BY_VIDEO_SQL: Final = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE video_id = ?"
_DELIVERY_INSERT_FIELDS: Final = ("received_at", "outcome", "video_id", "job_id", "nonce",
                                  "timestamp", "headers", "body", "error")
INSERT_DELIVERY_SQL: Final = (
    f"INSERT INTO webhook_deliveries ({', '.join(_DELIVERY_INSERT_FIELDS)}) "
    f"VALUES ({', '.join(':' + name for name in _DELIVERY_INSERT_FIELDS)}) "
    f"RETURNING {_DELIVERY_COLUMNS}"
)
CLAIM_NONCE_SQL: Final = (
    "INSERT INTO webhook_nonces (nonce, timestamp, claimed_at) VALUES (?, ?, ?) "
    "ON CONFLICT (nonce) DO NOTHING"
)


def _newest_first_sql(columns: str, table: str, where: list[str]) -> str:
    """A page of ``table`` newest first; ``where`` holds conditions joined by AND."""
    return (
        f"SELECT {columns} FROM {table}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY id DESC LIMIT :limit"
    )
#: The reconciler's query. Its cost follows the silent jobs, not the table: it range-scans the
#: partial index ``jobs_overdue`` (active jobs only, by ``last_event_at``). Left to itself the
#: planner prefers ``jobs_state_id`` (two equality lookups), which reads *every* active job, so
#: ``INDEXED BY`` pins the index; if the ``state IN`` term ever stops matching the index's WHERE
#: verbatim, SQLite fails the query ("no query solution") instead of silently scanning.
JOBS_OVERDUE_SQL: Final = f"""
SELECT {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_overdue
WHERE {migrations.ACTIVE_STATES_SQL}
  AND last_event_at <= :cutoff
  AND (next_poll_at IS NULL OR next_poll_at <= :now)
ORDER BY last_event_at
LIMIT :limit
"""
JOBS_DUE_FOR_SUBMIT_SQL: Final = f"""
SELECT {_JOB_COLUMNS} FROM jobs
WHERE (state = 'queued' OR (state = 'submitting' AND video_id IS NULL))
  AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
ORDER BY id
LIMIT :limit
"""
EXPIRED_SUBMISSIONS_SQL: Final = f"""
SELECT {_JOB_COLUMNS} FROM jobs
WHERE state = 'submitting' AND video_id IS NULL
  AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
ORDER BY id LIMIT :limit
"""
DUE_QUEUED_SQL: Final = f"""
SELECT {_JOB_COLUMNS} FROM jobs
WHERE state = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
ORDER BY id LIMIT :limit
"""
IN_FLIGHT_SQL: Final = "SELECT count(*) FROM jobs WHERE state IN ('submitting', 'generating')"
CLAIM_TASKS_SQL: Final = f"""
UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_until = :lease_until,
                 updated_at = :now
WHERE id IN (
    SELECT id FROM (
        SELECT id, run_after AS due FROM tasks WHERE state = 'pending' AND run_after <= :now
        UNION ALL
        SELECT id, lease_until AS due FROM tasks WHERE state = 'running' AND lease_until <= :now
    ) ORDER BY due LIMIT :limit
)
RETURNING {_TASK_COLUMNS}
"""
#: Finishing a run: only while the run still holds its lease (``:attempt`` is the attempts
#: count its claim returned), or unconditionally when no attempt is given.
_HOLDS_LEASE: Final = "(:attempt IS NULL OR (state = 'running' AND attempts = :attempt))"
COMPLETE_TASK_SQL: Final = f"""
UPDATE tasks SET state = 'succeeded', lease_until = NULL, updated_at = :now
WHERE id = :id AND {_HOLDS_LEASE}
RETURNING {_TASK_COLUMNS}
"""
FAIL_TASK_SQL: Final = f"""
UPDATE tasks SET state = :state, run_after = coalesce(:retry_at, run_after), lease_until = NULL,
                 last_error = :error, updated_at = :now
WHERE id = :id AND {_HOLDS_LEASE}
RETURNING {_TASK_COLUMNS}
"""
INSERT_TASK_RUN_SQL: Final = """
INSERT INTO task_runs (task_id, attempt, outcome, error, started_at, finished_at)
VALUES (:id, :run_attempt, :outcome, :error, :started_at, :now)
"""

_UPDATABLE: Final = records.UPDATABLE_JOB_FIELDS
_check_limit = records.check_limit
_job = records.job
_transition = records.transition
_task = records.task
_task_run = records.task_run
_delivery = records.delivery


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    keys = [column[0] for column in cursor.description]
    return [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]


def _one_job(db: Database, sql: str, params: Sequence[Any]) -> Job | None:
    rows = _dicts(db.execute(sql, params))
    return _job(rows[0]) if rows else None


class SQLiteStore:
    """The :class:`~service.store.base.Store` on one SQLite file.

    >>> store = SQLiteStore("pixhook.db")          # doctest: +SKIP
    >>> async with store:                           # doctest: +SKIP
    ...     job = await store.create_job(kind="text_to_video", params={"prompt": "a cat"})

    :param path: a file path, or ``":memory:"`` for a private in-memory database.
    :param clock: returns the time (epoch seconds) recorded as ``created_at`` and the like;
        tests pass a fake.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        readers: int = DEFAULT_READERS,
        max_batch: int = DEFAULT_MAX_BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        self.memory = self.path == MEMORY
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._clock = clock
        self._writer = LoopWriter(
            self._connect_writer, setup=self._setup, max_batch=max_batch,
            busy_timeout=busy_timeout,
            checkpoint=None if self.memory else self._connect_checkpointer,
        )
        self._readers = None if self.memory else ReaderPool(self._connect_reader,
                                                            max_workers=readers)
        self._open = False
        self._max_batch = max_batch
        #: Webhooks handed in this loop turn, and the batches being written (see
        #: :meth:`ingest_webhook`).
        self._ingest_waiting: list[tuple[sqlite_ingest.IngestRequest,
                                         asyncio.Future[WebhookIngest]]] = []
        self._ingest_tasks: set[asyncio.Task[None]] = set()
        #: Webhook batches formed so far: ``operations`` counts webhooks here.
        self.ingest_stats = WriterStats()
        #: Set when this process queues or revives a task, to wake :meth:`wait_for_tasks`.
        self._tasks_ready = asyncio.Event()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, enable WAL, run pending migrations and start serving."""
        if self._open:
            return
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise StorageError(
                f"SQLite {sqlite3.sqlite_version} is too old; pixhook needs "
                f"{'.'.join(map(str, MIN_SQLITE_VERSION))} or newer"
            )
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        await self._writer.start()
        self._open = True

    async def close(self) -> None:
        """Let queued writes commit, then close every connection."""
        if not self._open:
            return
        # Webhooks already handed in are written, as the writer's own queue is, before it stops.
        while self._ingest_waiting or self._ingest_tasks:
            if self._ingest_waiting:
                self._start_ingest_batch()
            await asyncio.gather(*self._ingest_tasks, return_exceptions=True)
        self._open = False
        await self._writer.stop()
        if self._readers is not None:
            await self._readers.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def writer_stats(self) -> WriterStats:
        """Batches and operations committed so far (group commit at work)."""
        return self._writer.stats

    def _connection(self, *, check_same_thread: bool) -> Database:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=check_same_thread,
            cached_statements=STATEMENT_CACHE_SIZE,
        )
        db = Database(conn, recursive_triggers=False, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        db.execute("PRAGMA foreign_keys = ON")
        # After a burst the WAL file would keep its largest size; shrink it back on reset.
        db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        return db

    def _connect_writer(self) -> Database:
        # Opened on a thread by LoopWriter.start, then used on the event loop only.
        db = self._connection(check_same_thread=False)
        if not self.memory:
            db.enable_wal()
        # With WAL, NORMAL skips the fsync per commit but stays crash-safe (module docstring).
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _connect_checkpointer(self) -> Database:
        return self._connection(check_same_thread=True)

    def _connect_reader(self) -> Database:
        # Closed by the pool from another thread at shutdown, hence check_same_thread=False.
        db = self._connection(check_same_thread=False)
        db.execute("PRAGMA query_only = ON")
        return db

    def _setup(self, db: Database) -> None:
        applied = migrations.migrate(db)
        if applied:
            logger.info("migrated %s: %s", self.path, ", ".join(applied),
                        extra={"action": "store_migrated"})

    async def _write(self, op: Callable[[Database], Any]) -> Any:
        if not self._open:
            raise StoreClosedError("the store is not open")
        return await self._writer.submit(op)

    async def _read(self, op: Callable[[Database], Any]) -> Any:
        if not self._open:
            raise StoreClosedError("the store is not open")
        if self._readers is None:
            return await self._writer.submit(op)
        return await self._readers.run(op)

    # -- jobs ------------------------------------------------------------------------------

    async def create_job(
        self,
        *,
        kind: str,
        params: Mapping[str, Any],
        trace_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        callback_url: str | None = None,
        then: Sequence[Mapping[str, Any]] | None = None,
        parent_job_id: str | None = None,
    ) -> Job:
        values = records.new_job_row(kind=kind, params=params, trace_id=trace_id, labels=labels,
                                     callback_url=callback_url, then=then,
                                     parent_job_id=parent_job_id)

        def op(db: Database) -> Job:
            now = self._clock()
            db.execute(INSERT_JOB_SQL, {**values, "now": now})
            db.execute(INSERT_TRANSITION_SQL, records.created_transition_row(values["id"], now))
            job = _one_job(db, SELECT_JOB_SQL, [values["id"]])
            assert job is not None
            return job

        job: Job = await self._write(op)
        return job

    async def get_job(self, job_id: str) -> Job | None:
        job: Job | None = await self._read(lambda db: _one_job(db, SELECT_JOB_SQL, [job_id]))
        return job

    async def get_job_by_video_id(self, video_id: int) -> Job | None:
        job: Job | None = await self._read(
            lambda db: _one_job(db, SELECT_JOB_BY_VIDEO_SQL, [video_id])
        )
        return job

    async def get_job_by_trace_id(self, trace_id: str) -> Job | None:
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE trace_id = ?"
        job: Job | None = await self._read(lambda db: _one_job(db, sql, [trace_id]))
        return job

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        _check_limit(limit)
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit + 1}
        if state is not None:
            where.append("state = :state")
            params["state"] = JobState(state).value
        if kind is not None:
            where.append("kind = :kind")
            params["kind"] = kind
        if cursor is not None:
            where.append("id < :cursor")
            params["cursor"] = cursor
        sql = _newest_first_sql(_JOB_COLUMNS, "jobs", where)
        rows: list[dict[str, Any]] = await self._read(lambda db: _dicts(db.execute(sql, params)))
        jobs = [_job(row) for row in rows[:limit]]
        next_cursor = jobs[-1].id if len(rows) > limit else None
        return jobs, next_cursor

    async def jobs_updated_since(self, since: float, *, limit: int = 100) -> list[Job]:
        _check_limit(limit)
        sql = (f"SELECT {_JOB_COLUMNS} FROM jobs WHERE updated_at > ? "
               "ORDER BY updated_at, id LIMIT ?")
        jobs: list[Job] = await self._read(
            lambda db: [_job(row) for row in _dicts(db.execute(sql, [since, limit]))])
        return jobs

    async def update_job(self, job_id: str, **fields: Unpack[JobUpdate]) -> Job:
        unknown = set(fields) - set(_UPDATABLE)
        if unknown:
            raise TypeError(f"update_job() cannot set {', '.join(sorted(unknown))}")
        assignments = [f"{_UPDATABLE[name]} = :{name}" for name in fields]
        sql = f"UPDATE jobs SET {', '.join([*assignments, 'updated_at = :now'])} WHERE id = :id"

        def op(db: Database) -> Job:
            cursor = db.execute(sql, {**fields, "now": self._clock(), "id": job_id})
            if cursor.rowcount == 0:
                raise JobNotFoundError(job_id)
            job = _one_job(db, SELECT_JOB_SQL, [job_id])
            assert job is not None
            return job

        job: Job = await self._write(op)
        return job

    async def jobs_overdue(self, now: float, grace: float, *, limit: int = 100) -> list[Job]:
        params = {"cutoff": now - grace, "now": now, "limit": _check_limit(limit)}
        rows: list[dict[str, Any]] = await self._read(
            lambda db: _dicts(db.execute(JOBS_OVERDUE_SQL, params))
        )
        return [_job(row) for row in rows]

    async def claim_submissions(
        self, now: float, *, limit: int, lease_seconds: float, max_in_flight: int = 0,
        tasks_for: TaskPlanner | None = None,
    ) -> list[SubmissionClaim]:
        lease_until = now + lease_seconds

        def op(db: Database) -> list[SubmissionClaim]:
            # The single writer makes the count and the claims one atomic step.
            claimed = [SubmissionClaim(records.job(row), None) for row in _dicts(db.execute(
                EXPIRED_SUBMISSIONS_SQL, {"now": now, "limit": limit}))]
            room = limit - len(claimed)
            if max_in_flight:
                in_flight = db.execute(IN_FLIGHT_SQL).fetchone()[0]
                room = min(room, max_in_flight - in_flight)
            if room > 0:
                for job in [records.job(row) for row in _dicts(db.execute(
                        DUE_QUEUED_SQL, {"now": now, "limit": room}))]:
                    result = self._transition_in(
                        db, job, JobState.SUBMITTING, source=TransitionSource.SUBMIT,
                        payload=None, received_at=None, tasks_for=tasks_for, delivery_id=None)
                    claimed.append(SubmissionClaim(result.job, result))
            for claim in claimed:
                db.execute("UPDATE jobs SET next_attempt_at = ? WHERE id = ?",
                           [lease_until, claim.job.id])
            return [replace(claim, job=replace(claim.job, next_attempt_at=lease_until))
                    for claim in claimed]

        claims: list[SubmissionClaim] = await self._write(op)
        return claims

    async def claim_overdue(self, now: float, grace: float, *, hold_seconds: float,
                            limit: int = 100) -> list[Job]:
        params = {"cutoff": now - grace, "now": now, "limit": records.check_limit(limit),
                  "hold": now + hold_seconds}

        def op(db: Database) -> list[Job]:
            jobs = [records.job(row) for row in _dicts(db.execute(JOBS_OVERDUE_SQL, params))]
            for job in jobs:
                db.execute("UPDATE jobs SET next_poll_at = ? WHERE id = ?",
                           [params["hold"], job.id])
            return [replace(job, next_poll_at=params["hold"]) for job in jobs]

        claimed: list[Job] = await self._write(op)
        return claimed

    async def count_jobs(self, states: Sequence[JobState]) -> int:
        marks = ", ".join("?" for _ in states)
        sql = f"SELECT count(*) FROM jobs WHERE state IN ({marks})"
        count: int = await self._read(
            lambda db: db.execute(sql, [JobState(s).value for s in states]).fetchone()[0]
        )
        return count

    async def count_jobs_by_state(
        self, states: Sequence[JobState] | None = None
    ) -> dict[JobState, int]:
        values = [JobState(s).value for s in (JobState if states is None else states)]
        sql = (f"SELECT state, count(*) FROM jobs WHERE state IN "
               f"({', '.join('?' for _ in values)}) GROUP BY state")
        rows: list[tuple[str, int]] = await self._read(
            lambda db: db.execute(sql, values).fetchall())
        return {JobState(state): count for state, count in rows}

    async def jobs_due_for_submit(self, now: float, *, limit: int = 100) -> list[Job]:
        params = {"now": now, "limit": _check_limit(limit)}
        rows: list[dict[str, Any]] = await self._read(
            lambda db: _dicts(db.execute(JOBS_DUE_FOR_SUBMIT_SQL, params))
        )
        return [_job(row) for row in rows]

    # -- transitions -----------------------------------------------------------------------

    async def apply_transition(
        self,
        job_id: str,
        proposed: JobState,
        *,
        source: TransitionSource,
        payload: Mapping[str, Any] | str | None = None,
        received_at: float | None = None,
        tasks_for: TaskPlanner | None = None,
        delivery_id: int | None = None,
    ) -> TransitionResult:
        proposed = JobState(proposed)
        source = TransitionSource(source)
        raw_payload = planning.encode_payload(payload)

        def op(db: Database) -> TransitionResult:
            job = _one_job(db, SELECT_JOB_SQL, [job_id])
            if job is None:
                raise JobNotFoundError(job_id)
            return self._transition_in(db, job, proposed, source=source, payload=raw_payload,
                                       received_at=received_at, tasks_for=tasks_for,
                                       delivery_id=delivery_id)

        result: TransitionResult = await self._write(op)
        if result.tasks:
            self._tasks_ready.set()
        return result

    def _transition_in(
        self,
        db: Database,
        job: Job,
        proposed: JobState,
        *,
        source: TransitionSource,
        payload: str | None,
        received_at: float | None,
        tasks_for: TaskPlanner | None,
        delivery_id: int | None,
    ) -> TransitionResult:
        """The body of :meth:`apply_transition`, run by the writer inside a transaction
        that callers may extend (:meth:`claim_submissions`)."""
        return sqlite_ingest.apply_transition(
            db.conn, job, proposed, source=source, payload=payload, received_at=received_at,
            delivery_id=delivery_id, tasks_for=tasks_for, now=self._clock())


    async def get_transition(self, transition_id: int) -> Transition | None:
        sql = f"SELECT {_TRANSITION_COLUMNS} FROM transitions WHERE id = ?"
        rows: list[dict[str, Any]] = await self._read(
            lambda db: _dicts(db.execute(sql, [transition_id]))
        )
        return _transition(rows[0]) if rows else None

    async def list_transitions(self, job_id: str) -> list[Transition]:
        sql = f"SELECT {_TRANSITION_COLUMNS} FROM transitions WHERE job_id = ? ORDER BY id"
        rows: list[dict[str, Any]] = await self._read(
            lambda db: _dicts(db.execute(sql, [job_id]))
        )
        return [_transition(row) for row in rows]

    # -- webhook deliveries ----------------------------------------------------------------

    async def record_webhook_delivery(
        self,
        *,
        body: bytes,
        headers: Mapping[str, str],
        outcome: DeliveryOutcome,
        received_at: float,
        video_id: int | None = None,
        job_id: str | None = None,
        nonce: str | None = None,
        timestamp: float | None = None,
        error: str | None = None,
    ) -> WebhookDelivery:
        values = records.delivery_row(body=body, headers=headers, outcome=outcome,
                                      received_at=received_at, video_id=video_id,
                                      job_id=job_id, nonce=nonce, timestamp=timestamp,
                                      error=error)

        def op(db: Database) -> WebhookDelivery:
            return _delivery(_dicts(db.execute(INSERT_DELIVERY_SQL, values))[0])

        delivery: WebhookDelivery = await self._write(op)
        return delivery

    async def ingest_webhook(
        self,
        *,
        body: bytes,
        headers: Mapping[str, str],
        nonce: str,
        timestamp: float,
        received_at: float,
        video_id: int,
        proposed: JobState,
        tasks_for: TaskPlanner | None = None,
    ) -> WebhookIngest:
        if not self._open:
            raise StoreClosedError("the store is not open")
        request = sqlite_ingest.IngestRequest(
            body=body, headers=headers, nonce=nonce, timestamp=timestamp,
            received_at=received_at, video_id=video_id, proposed=JobState(proposed),
            tasks_for=tasks_for)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WebhookIngest] = loop.create_future()
        self._ingest_waiting.append((request, future))
        if len(self._ingest_waiting) == 1:
            # call_soon: the webhooks the rest of this loop turn verifies join the batch.
            loop.call_soon(self._start_ingest_batch)
        ingest = await future
        if ingest.transition is not None and ingest.transition.tasks:
            self._tasks_ready.set()
        return ingest

    def _start_ingest_batch(self) -> None:
        waiting, self._ingest_waiting = self._ingest_waiting, []
        for start in range(0, len(waiting), self._max_batch):
            batch = waiting[start:start + self._max_batch]
            self.ingest_stats.count(len(batch))
            task = asyncio.create_task(self._ingest(batch))
            self._ingest_tasks.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(functools.partial(self._ingest_done, batch))

    def _ingest_done(self, batch: list[tuple[sqlite_ingest.IngestRequest,
                                             asyncio.Future[WebhookIngest]]],
                     task: asyncio.Task[None]) -> None:
        self._ingest_tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            # Cancelled (the loop shutting down), perhaps before it began: no caller may be
            # left waiting. Callers already answered are skipped. The writer may still commit
            # a batch cancelled while queued there; PixVerse's retry then finds its nonce used.
            lost = StorageError("webhook batch interrupted; it may not have been written")
            for _, future in batch:
                settle(future, lost, None)

    async def _ingest(self, batch: list[tuple[sqlite_ingest.IngestRequest,
                                              asyncio.Future[WebhookIngest]]]) -> None:
        """Write a batch of webhooks as one operation. If it fails, write each alone, so
        only the webhook at fault fails (its caller answers 503; PixVerse retries)."""
        requests = [request for request, _ in batch]
        try:
            results = await self._write(
                lambda db: sqlite_ingest.ingest_batch(db.conn, requests, self._clock()))
        except Exception as exc:  # noqa: BLE001 -- the caller gets whatever it raised
            if len(batch) == 1:
                settle(batch[0][1], exc, None)
                return
            await asyncio.gather(*(self._ingest([item]) for item in batch))
            return
        for (_, future), result in zip(batch, results, strict=True):
            settle(future, None, result)

    async def get_webhook_delivery(self, delivery_id: int) -> WebhookDelivery | None:
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?"
        rows: list[dict[str, Any]] = await self._read(
            lambda db: _dicts(db.execute(sql, [delivery_id]))
        )
        return _delivery(rows[0]) if rows else None

    async def list_webhook_deliveries(
        self,
        *,
        video_id: int | None = None,
        outcome: DeliveryOutcome | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> tuple[list[WebhookDelivery], int | None]:
        _check_limit(limit)
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit + 1}
        if video_id is not None:
            where.append("video_id = :video_id")
            params["video_id"] = video_id
        if outcome is not None:
            where.append("outcome = :outcome")
            params["outcome"] = DeliveryOutcome(outcome).value
        if cursor is not None:
            where.append("id < :cursor")
            params["cursor"] = cursor
        sql = _newest_first_sql(_DELIVERY_COLUMNS, "webhook_deliveries", where)
        rows: list[dict[str, Any]] = await self._read(lambda db: _dicts(db.execute(sql, params)))
        deliveries = [_delivery(row) for row in rows[:limit]]
        next_cursor = deliveries[-1].id if len(rows) > limit else None
        return deliveries, next_cursor

    async def claim_nonce(self, nonce: str, timestamp: float | None) -> bool:
        def op(db: Database) -> bool:
            return db.execute(CLAIM_NONCE_SQL, [nonce, timestamp, self._clock()]).rowcount == 1

        claimed: bool = await self._write(op)
        return claimed

    async def prune_nonces(self, claimed_before: float) -> int:
        sql = "DELETE FROM webhook_nonces WHERE claimed_at < ?"
        count: int = await self._write(lambda db: db.execute(sql, [claimed_before]).rowcount)
        return count

    # -- handler tasks ---------------------------------------------------------------------

    async def claim_tasks(
        self, now: float, *, limit: int = 10, lease_seconds: float = 60.0
    ) -> list[Task]:
        params = {"now": now, "lease_until": now + lease_seconds, "limit": _check_limit(limit)}
        rows: list[dict[str, Any]] = await self._write(
            lambda db: _dicts(db.execute(CLAIM_TASKS_SQL, params))
        )
        return sorted((_task(row) for row in rows), key=lambda task: task.id)

    async def _finish_task(self, task_id: int, sql: str, params: dict[str, Any], *,
                           attempt: int | None, started_at: float | None,
                           outcome: TaskRunOutcome, error: str | None) -> Task:
        def op(db: Database) -> Task:
            now = self._clock()
            rows = _dicts(db.execute(sql, {**params, "id": task_id, "attempt": attempt,
                                           "now": now}))
            if not rows:
                if db.execute("SELECT 1 FROM tasks WHERE id = ?", [task_id]).fetchone():
                    raise LeaseLostError(task_id, attempt or 0)
                raise TaskNotFoundError(task_id)
            task = _task(rows[0])
            if started_at is not None:
                db.execute(INSERT_TASK_RUN_SQL, {
                    "id": task_id, "run_attempt": task.attempts, "outcome": outcome.value,
                    "error": error, "started_at": started_at, "now": now,
                })
            return task

        task: Task = await self._write(op)
        return task

    async def complete_task(self, task_id: int, *, attempt: int | None = None,
                            started_at: float | None = None) -> Task:
        return await self._finish_task(task_id, COMPLETE_TASK_SQL, {}, attempt=attempt,
                                       started_at=started_at,
                                       outcome=TaskRunOutcome.SUCCEEDED, error=None)

    async def fail_task(self, task_id: int, *, error: str, retry_at: float | None,
                        attempt: int | None = None, started_at: float | None = None) -> Task:
        state = TaskState.DEAD if retry_at is None else TaskState.PENDING
        task = await self._finish_task(
            task_id, FAIL_TASK_SQL, {"state": state.value, "retry_at": retry_at, "error": error},
            attempt=attempt, started_at=started_at, error=error,
            outcome=TaskRunOutcome.DEAD if retry_at is None else TaskRunOutcome.RETRY,
        )
        if retry_at is not None:
            self._tasks_ready.set()
        return task

    async def extend_task_lease(self, task_id: int, *, attempt: int, lease_until: float) -> bool:
        sql = (
            "UPDATE tasks SET lease_until = :lease_until, updated_at = :now "
            "WHERE id = :id AND state = 'running' AND attempts = :attempt"
        )
        params = {"id": task_id, "attempt": attempt, "lease_until": lease_until}
        count: int = await self._write(
            lambda db: db.execute(sql, {**params, "now": self._clock()}).rowcount
        )
        return count == 1

    async def release_task(self, task_id: int, *, attempt: int, run_after: float) -> bool:
        sql = (
            "UPDATE tasks SET state = 'pending', attempts = attempts - 1, lease_until = NULL, "
            "run_after = :run_after, updated_at = :now "
            "WHERE id = :id AND state = 'running' AND attempts = :attempt"
        )
        params = {"id": task_id, "attempt": attempt, "run_after": run_after}
        count: int = await self._write(
            lambda db: db.execute(sql, {**params, "now": self._clock()}).rowcount
        )
        return count == 1

    async def retry_task(self, task_id: int, *, now: float | None = None) -> Task:
        sql = (
            "UPDATE tasks SET state = 'pending', attempts = 0, run_after = :run_after, "
            f"lease_until = NULL, updated_at = :now WHERE id = :id AND state = 'dead' "
            f"RETURNING {_TASK_COLUMNS}"
        )

        def op(db: Database) -> Task:
            clock = self._clock()
            rows = _dicts(db.execute(sql, {"id": task_id, "now": clock,
                                           "run_after": clock if now is None else now}))
            if rows:
                return _task(rows[0])
            found = db.execute("SELECT state FROM tasks WHERE id = ?", [task_id]).fetchone()
            if found is None:
                raise TaskNotFoundError(task_id)
            raise TaskStateError(f"task {task_id} is {found[0]}; only dead tasks can be retried")

        task: Task = await self._write(op)
        self._tasks_ready.set()
        return task

    async def get_task(self, task_id: int) -> Task | None:
        sql = f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?"
        rows: list[dict[str, Any]] = await self._read(lambda db: _dicts(db.execute(sql, [task_id])))
        return _task(rows[0]) if rows else None

    async def list_tasks(
        self, *, job_id: str | None = None, state: TaskState | None = None,
        handler: str | None = None, limit: int = 1000,
    ) -> list[Task]:
        where: list[str] = []
        params: dict[str, Any] = {"limit": _check_limit(limit)}
        if job_id is not None:
            where.append("job_id = :job_id")
            params["job_id"] = job_id
        if state is not None:
            where.append("state = :state")
            params["state"] = TaskState(state).value
        if handler is not None:
            where.append("handler = :handler")
            params["handler"] = handler
        sql = (
            f"SELECT {_TASK_COLUMNS} FROM tasks"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY id LIMIT :limit"
        )
        rows: list[dict[str, Any]] = await self._read(lambda db: _dicts(db.execute(sql, params)))
        return [_task(row) for row in rows]

    async def list_task_runs(self, task_id: int) -> list[TaskRun]:
        sql = f"SELECT {_TASK_RUN_COLUMNS} FROM task_runs WHERE task_id = ? ORDER BY id"
        rows: list[dict[str, Any]] = await self._read(lambda db: _dicts(db.execute(sql, [task_id])))
        return [_task_run(row) for row in rows]

    async def count_tasks_by_state(
        self, states: Sequence[TaskState] | None = None
    ) -> dict[TaskState, int]:
        values = [TaskState(s).value for s in (TaskState if states is None else states)]
        # ``state IN (...)`` walks the tasks_state_id index; no table rows are read.
        sql = (f"SELECT state, count(*) FROM tasks WHERE state IN "
               f"({', '.join('?' for _ in values)}) GROUP BY state")
        rows: list[tuple[str, int]] = await self._read(
            lambda db: db.execute(sql, values).fetchall())
        return {TaskState(state): count for state, count in rows}

    async def next_task_due(self) -> float | None:
        sql = (
            "SELECT min(due) FROM ("
            "SELECT min(run_after) AS due FROM tasks WHERE state = 'pending' UNION ALL "
            "SELECT min(lease_until) FROM tasks WHERE state = 'running')"
        )
        due: float | None = await self._read(lambda db: db.execute(sql).fetchone()[0])
        return due

    async def wait_for_tasks(self, timeout: float) -> None:
        # Another process sharing the file cannot set this event; the timeout covers it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tasks_ready.wait(), timeout)
        self._tasks_ready.clear()
