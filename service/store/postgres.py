"""The PostgreSQL store (psycopg 3, async, with a connection pool): pixhook across machines.

Same interface, same records, same rules as the SQLite store: the lifecycle rule and the task
plan come from :mod:`service.store.planning` (which calls :func:`service.lifecycle.decide`),
rows become records in :mod:`service.store.records`; only SQL lives here. Every method runs in
one transaction on one pooled connection (``READ COMMITTED``).

SQLite gets its guarantees from a single writer; here several web and worker processes write
at once, so each guarantee rests on a lock or a constraint instead:

* **A message is decided once.** :meth:`PostgresStore.apply_transition` and
  :meth:`~PostgresStore.ingest_webhook` read the job ``FOR UPDATE``; a second replica
  delivering the same event waits for the first to commit, then reads the new state and
  records a duplicate.
* **A nonce is claimed once.** ``INSERT ... ON CONFLICT DO NOTHING`` on its primary key: a
  concurrent claimer waits for the first transaction and inserts nothing if it committed (or
  takes the nonce if it rolled back, so a failed delivery can be retried).
* **A task runs in one place.** :meth:`~PostgresStore.claim_tasks` picks due rows
  ``FOR UPDATE SKIP LOCKED``: concurrent claimers skip each other's rows instead of waiting
  for them or taking them twice.
* **No orphan is missed.** The submitter sets a job's video id (:meth:`update_job`) and then
  adopts deliveries kept as orphans for that id; the receiver looks the job up by video id.
  Both take ``pg_advisory_xact_lock`` on the video id first, so either the receiver's
  transaction sees the id, or its orphan commits before the id does and the adoption that
  follows finds it (the order SQLite's single writer gives).

Waking workers: a transaction that queues or revives a task also runs ``NOTIFY
"pixhook_tasks:<schema>"``; each store keeps one connection outside the pool that
``LISTEN``\\ s, so :meth:`~PostgresStore.wait_for_tasks` returns as soon as any process commits
new work. Channels are per database, not per schema, hence the schema in the name: deployments
sharing a database in separate schemas do not wake each other. The caller's timeout still
bounds the wait if a notification is lost (the listener reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Final, LiteralString, Self, Unpack

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool

from service.lifecycle import JobState, TransitionSource
from service.store import pg_migrations, planning, records
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
    ConstraintError,
    JobNotFoundError,
    LeaseLostError,
    StorageError,
    StoreClosedError,
    TaskNotFoundError,
    TaskStateError,
)

logger = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[DictRow]

DEFAULT_POOL_MIN_SIZE: Final = 1
DEFAULT_POOL_MAX_SIZE: Final = 10
#: How long :meth:`PostgresStore.open` waits for the first connections, in seconds.
DEFAULT_OPEN_TIMEOUT_SECONDS: Final = 30.0
#: How long a method waits for a free pooled connection, in seconds.
DEFAULT_POOL_TIMEOUT_SECONDS: Final = 30.0
#: The NOTIFY channel that says "tasks may be due", before ":<schema>" is added.
TASKS_CHANNEL: Final = "pixhook_tasks"
#: How long the listener waits before reconnecting after losing its connection, in seconds.
LISTEN_RETRY_SECONDS: Final = 1.0
#: The advisory lock class for "this video id is being matched or assigned" ("pixv").
VIDEO_LOCK_CLASS: Final = 0x70697876
#: The advisory lock (one key) that serialises submission claims across replicas, so the
#: in-flight count and the claims it allows are one step ("pixs").
SUBMIT_LOCK_KEY: Final = 0x70697873
#: At close, operations already under way get this long to finish, in seconds.
CLOSE_GRACE_SECONDS: Final = 10.0

_J: Final = records.JOB_COLUMNS
_TR: Final = records.TRANSITION_COLUMNS
_T: Final = records.TASK_COLUMNS
_D: Final = records.DELIVERY_COLUMNS

INSERT_JOB_SQL: Final = f"""
INSERT INTO jobs (id, kind, state, params, trace_id, labels, callback_url, then_steps,
                  parent_job_id, created_at, updated_at, state_changed_at, last_event_at)
VALUES (%(id)s, %(kind)s, %(state)s, %(params)s, %(trace_id)s, %(labels)s, %(callback_url)s,
        %(then_steps)s, %(parent_job_id)s, %(now)s, %(now)s, %(now)s, %(now)s)
RETURNING {_J}
"""
INSERT_TRANSITION_SQL: Final = f"""
INSERT INTO transitions (job_id, from_state, to_state, outcome, source, reason, payload,
                         delivery_id, received_at, recorded_at)
VALUES (%(job_id)s, %(from_state)s, %(to_state)s, %(outcome)s, %(source)s, %(reason)s,
        %(payload)s, %(delivery_id)s, %(received_at)s, %(recorded_at)s)
RETURNING {_TR}
"""
INSERT_TASK_SQL: Final = f"""
INSERT INTO tasks (job_id, transition_id, handler, idempotency_key, state, run_after,
                   created_at, updated_at)
VALUES (%(job_id)s, %(transition_id)s, %(handler)s, %(idempotency_key)s, 'pending', %(now)s,
        %(now)s, %(now)s)
RETURNING {_T}
"""
SELECT_JOB_SQL: Final = f"SELECT {_J} FROM jobs WHERE id = %s"
LOCK_JOB_SQL: Final = f"SELECT {_J} FROM jobs WHERE id = %s FOR UPDATE"
LOCK_JOB_BY_VIDEO_SQL: Final = f"SELECT {_J} FROM jobs WHERE video_id = %s FOR UPDATE"
LOCK_VIDEO_SQL: Final = "SELECT pg_advisory_xact_lock(%s, hashtext(%s::bigint::text))"
APPLY_JOB_STATE_SQL: Final = """
UPDATE jobs SET state = %(state)s, state_changed_at = %(changed_at)s,
                last_event_at = %(event_at)s, next_poll_at = NULL, updated_at = %(now)s
WHERE id = %(id)s
"""
TOUCH_JOB_SQL: Final = "UPDATE jobs SET last_event_at = %(event_at)s WHERE id = %(id)s"
_DELIVERY_FIELDS: Final = ("received_at", "outcome", "video_id", "job_id", "nonce",
                           "timestamp", "headers", "body", "error")
INSERT_DELIVERY_SQL: Final = (
    f"INSERT INTO webhook_deliveries ({', '.join(_DELIVERY_FIELDS)}) "
    f"VALUES ({', '.join(f'%({name})s' for name in _DELIVERY_FIELDS)}) RETURNING {_D}"
)
CLAIM_NONCE_SQL: Final = (
    "INSERT INTO webhook_nonces (nonce, timestamp, claimed_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (nonce) DO NOTHING"
)
#: Matches the partial index ``jobs_overdue`` (by ``last_event_at``, active jobs only).
JOBS_OVERDUE_SQL: Final = f"""
SELECT {_J} FROM jobs
WHERE {pg_migrations.ACTIVE_STATES_SQL}
  AND last_event_at <= %(cutoff)s
  AND (next_poll_at IS NULL OR next_poll_at <= %(now)s)
ORDER BY last_event_at
LIMIT %(limit)s
"""
#: Reconcilers on several replicas split the overdue jobs: rows another one is claiming are
#: skipped, and the claimed ones are not due again until the hold runs out.
CLAIM_OVERDUE_SQL: Final = f"""
UPDATE jobs SET next_poll_at = %(hold)s
WHERE id IN (
    SELECT id FROM jobs
    WHERE {pg_migrations.ACTIVE_STATES_SQL}
      AND last_event_at <= %(cutoff)s
      AND (next_poll_at IS NULL OR next_poll_at <= %(now)s)
    ORDER BY last_event_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING {_J}
"""
#: Matches the partial index ``jobs_submittable``.
JOBS_DUE_FOR_SUBMIT_SQL: Final = f"""
SELECT {_J} FROM jobs
WHERE {pg_migrations.SUBMITTABLE_SQL}
  AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
ORDER BY id
LIMIT %(limit)s
"""
EXPIRED_SUBMISSIONS_SQL: Final = f"""
SELECT {_J} FROM jobs
WHERE state = 'submitting' AND video_id IS NULL
  AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
ORDER BY id LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
DUE_QUEUED_SQL: Final = f"""
SELECT {_J} FROM jobs
WHERE state = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
ORDER BY id LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
IN_FLIGHT_SQL: Final = (
    "SELECT count(*) AS n FROM jobs WHERE state IN ('submitting', 'generating')")
#: Each branch walks its partial index in due order and locks what it reads, skipping rows
#: another claimer holds; the most overdue ``limit`` of both are leased. (A locking clause
#: cannot sit inside a UNION, hence the two CTEs.)
CLAIM_TASKS_SQL: Final = f"""
WITH pending AS (
    SELECT id, run_after AS due FROM tasks
    WHERE state = 'pending' AND run_after <= %(now)s
    ORDER BY run_after LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id, lease_until AS due FROM tasks
    WHERE state = 'running' AND lease_until <= %(now)s
    ORDER BY lease_until LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id FROM (SELECT id, due FROM pending UNION ALL SELECT id, due FROM expired) AS due
    ORDER BY due LIMIT %(limit)s
)
UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_until = %(lease_until)s,
                 updated_at = %(now)s
WHERE id IN (SELECT id FROM picked)
RETURNING {_T}
"""
#: Finishing a run: only while the run still holds its lease (``attempt`` is the attempts
#: count its claim returned), or unconditionally when no attempt is given.
_HOLDS_LEASE: Final = (
    "(%(attempt)s::integer IS NULL OR (state = 'running' AND attempts = %(attempt)s))"
)
COMPLETE_TASK_SQL: Final = f"""
UPDATE tasks SET state = 'succeeded', lease_until = NULL, updated_at = %(now)s
WHERE id = %(id)s AND {_HOLDS_LEASE}
RETURNING {_T}
"""
FAIL_TASK_SQL: Final = f"""
UPDATE tasks SET state = %(state)s, run_after = coalesce(%(retry_at)s, run_after),
                 lease_until = NULL, last_error = %(error)s, updated_at = %(now)s
WHERE id = %(id)s AND {_HOLDS_LEASE}
RETURNING {_T}
"""
INSERT_TASK_RUN_SQL: Final = """
INSERT INTO task_runs (task_id, attempt, outcome, error, started_at, finished_at)
VALUES (%(id)s, %(run_attempt)s, %(outcome)s, %(error)s, %(started_at)s, %(now)s)
"""
EXTEND_LEASE_SQL: Final = """
UPDATE tasks SET lease_until = %(lease_until)s, updated_at = %(now)s
WHERE id = %(id)s AND state = 'running' AND attempts = %(attempt)s
"""
RELEASE_TASK_SQL: Final = """
UPDATE tasks SET state = 'pending', attempts = attempts - 1, lease_until = NULL,
                 run_after = %(run_after)s, updated_at = %(now)s
WHERE id = %(id)s AND state = 'running' AND attempts = %(attempt)s
"""
RETRY_TASK_SQL: Final = f"""
UPDATE tasks SET state = 'pending', attempts = 0, run_after = %(run_after)s,
                 lease_until = NULL, updated_at = %(now)s
WHERE id = %(id)s AND state = 'dead'
RETURNING {_T}
"""
NEXT_TASK_DUE_SQL: Final = """
SELECT least((SELECT min(run_after) FROM tasks WHERE state = 'pending'),
             (SELECT min(lease_until) FROM tasks WHERE state = 'running')) AS due
"""


def _where(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _masked(conninfo: str) -> str:
    """The connection string without its password, for ``repr`` and logs."""
    parts = urllib.parse.urlsplit(conninfo)
    if parts.password is None:
        return conninfo
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _channel_statement(verb: str, schema: str) -> sql.Composed:
    """``NOTIFY`` or ``LISTEN`` on this schema's task channel."""
    return sql.SQL(verb + " {}").format(sql.Identifier(f"{TASKS_CHANNEL}:{schema}"))


async def _configure(conn: Connection) -> None:
    # JSON columns come back as their text and go through the same json.loads as SQLite's.
    conn.adapters.register_loader("json", TextLoader)


class PostgresStore:
    """The :class:`~service.store.base.Store` on a PostgreSQL database.

    >>> store = PostgresStore("postgresql://pixhook@db.internal/pixhook")   # doctest: +SKIP
    >>> async with store:                                                    # doctest: +SKIP
    ...     job = await store.create_job(kind="text_to_video", params={"prompt": "a cat"})

    :param conninfo: a libpq connection string or ``postgresql://`` URL. The tables live in
        the first schema of the connection's ``search_path`` (``options=-c search_path=...``).
    :param min_size: connections the pool keeps open; ``max_size``: the most it opens.
    :param clock: returns the time (epoch seconds) recorded as ``created_at`` and the like;
        tests pass a fake.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = DEFAULT_POOL_MIN_SIZE,
        max_size: int = DEFAULT_POOL_MAX_SIZE,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT_SECONDS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= min_size <= max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, not {min_size}, {max_size}")
        self.conninfo = conninfo
        self.min_size = min_size
        self.max_size = max_size
        self._open_timeout = open_timeout
        self._pool_timeout = pool_timeout
        self._clock = clock
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._listener: asyncio.Task[None] | None = None
        # Set again at open(), once the schema is known (see the module docstring).
        self._notify_sql = _channel_statement("NOTIFY", "public")
        self._listen_sql = _channel_statement("LISTEN", "public")
        self._open = False
        #: Operations under way, so close() can let them finish.
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: Set when this or another process queues or revives a task (see wait_for_tasks).
        self._tasks_ready = asyncio.Event()

    def __repr__(self) -> str:
        return f"<PostgresStore {_masked(self.conninfo)!r}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Fill the pool, run pending migrations and start listening for new tasks."""
        if self._open:
            return
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.conninfo, connection_class=psycopg.AsyncConnection[DictRow],
            kwargs={"row_factory": dict_row}, min_size=self.min_size, max_size=self.max_size,
            open=False, configure=_configure, timeout=self._pool_timeout, name="pixhook",
            # An empty query before each checkout: a connection the server dropped (restart,
            # failover, idle timeout) is replaced instead of failing the caller's operation.
            check=AsyncConnectionPool.check_connection,
        )
        try:
            await pool.open(wait=True, timeout=self._open_timeout)
            async with pool.connection() as conn:
                applied = await pg_migrations.migrate(conn)
                row = await (await conn.execute("SELECT current_schema() AS name")).fetchone()
            schema = row["name"] if row else "public"
            self._notify_sql = _channel_statement("NOTIFY", schema)
            self._listen_sql = _channel_statement("LISTEN", schema)
            listening = await self._connect_listener()
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"cannot open {_masked(self.conninfo)}: {exc}") from exc
            raise
        if applied:
            logger.info("migrated %s: %s", _masked(self.conninfo), ", ".join(applied),
                        extra={"action": "store_migrated"})
        self._pool = pool
        self._listener = asyncio.create_task(self._listen(listening), name="pixhook-listen")
        self._open = True

    async def close(self) -> None:
        """Refuse new work, let operations under way finish, then close every connection."""
        if not self._open:
            return
        self._open = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), CLOSE_GRACE_SECONDS)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

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

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        """One pooled connection in one transaction: committed if the block returns, rolled
        back if it raises. Driver errors come out as the store's own."""
        if not self._open or self._pool is None:
            raise StoreClosedError("the store is not open")
        self._busy += 1
        self._idle.clear()
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.IntegrityError as exc:
            raise ConstraintError(str(exc)) from exc
        except psycopg.Error as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def _fetch(self, sql: LiteralString, params: Sequence[Any] | Mapping[str, Any] = (),
                     ) -> list[DictRow]:
        async with self._transaction() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    async def _one_job(self, sql: LiteralString, params: Sequence[Any]) -> Job | None:
        rows = await self._fetch(sql, params)
        return records.job(rows[0]) if rows else None

    # -- waking workers --------------------------------------------------------------------

    async def _connect_listener(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        try:
            await conn.execute(self._listen_sql)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Set the wake-up event on every notification; reconnect if the connection drops."""
        while True:
            try:
                async with conn:
                    async for _ in conn.notifies():
                        self._tasks_ready.set()
            except psycopg.Error as exc:
                logger.warning("lost the LISTEN connection (%s); reconnecting", exc,
                               extra={"action": "store_listen"})
            while True:
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                try:
                    conn = await self._connect_listener()
                except psycopg.Error as exc:
                    logger.warning("cannot LISTEN (%s); retrying", exc,
                                   extra={"action": "store_listen"})
                    continue
                # Notifications sent while nobody listened are gone: look once anyway.
                self._tasks_ready.set()
                break

    async def wait_for_tasks(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tasks_ready.wait(), timeout)
        self._tasks_ready.clear()

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
        async with self._transaction() as conn:
            now = self._clock()
            cursor = await conn.execute(INSERT_JOB_SQL, {**values, "now": now})
            row = await cursor.fetchone()
            await conn.execute(INSERT_TRANSITION_SQL,
                               records.created_transition_row(values["id"], now))
        assert row is not None
        return records.job(row)

    async def get_job(self, job_id: str) -> Job | None:
        return await self._one_job(SELECT_JOB_SQL, [job_id])

    async def get_job_by_video_id(self, video_id: int) -> Job | None:
        return await self._one_job(f"SELECT {_J} FROM jobs WHERE video_id = %s", [video_id])

    async def get_job_by_trace_id(self, trace_id: str) -> Job | None:
        return await self._one_job(f"SELECT {_J} FROM jobs WHERE trace_id = %s", [trace_id])

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        records.check_limit(limit)
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit + 1}
        if state is not None:
            where.append("state = %(state)s")
            params["state"] = JobState(state).value
        if kind is not None:
            where.append("kind = %(kind)s")
            params["kind"] = kind
        if cursor is not None:
            where.append("id < %(cursor)s")
            params["cursor"] = cursor
        rows = await self._fetch(
            f"SELECT {_J} FROM jobs{_where(where)} ORDER BY id DESC LIMIT %(limit)s", params)
        jobs = [records.job(row) for row in rows[:limit]]
        return jobs, jobs[-1].id if len(rows) > limit else None

    async def jobs_updated_since(self, since: float, *, limit: int = 100) -> list[Job]:
        records.check_limit(limit)
        rows = await self._fetch(f"SELECT {_J} FROM jobs WHERE updated_at > %s "
                                 "ORDER BY updated_at, id LIMIT %s", [since, limit])
        return [records.job(row) for row in rows]

    async def update_job(self, job_id: str, **fields: Unpack[JobUpdate]) -> Job:
        records.check_job_update(fields)
        assignments = [f"{records.UPDATABLE_JOB_FIELDS[name]} = %({name})s" for name in fields]
        sql = (f"UPDATE jobs SET {', '.join([*assignments, 'updated_at = %(now)s'])} "
               f"WHERE id = %(id)s RETURNING {_J}")
        video_id = fields.get("video_id")
        async with self._transaction() as conn:
            if video_id is not None:
                # Serialises with ingest_webhook's lookup of this id (module docstring).
                await conn.execute(LOCK_VIDEO_SQL, [VIDEO_LOCK_CLASS, video_id])
            cursor = await conn.execute(sql, {**fields, "now": self._clock(), "id": job_id})
            row = await cursor.fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return records.job(row)

    async def jobs_overdue(self, now: float, grace: float, *, limit: int = 100) -> list[Job]:
        params = {"cutoff": now - grace, "now": now, "limit": records.check_limit(limit)}
        return [records.job(row) for row in await self._fetch(JOBS_OVERDUE_SQL, params)]

    async def jobs_due_for_submit(self, now: float, *, limit: int = 100) -> list[Job]:
        params = {"now": now, "limit": records.check_limit(limit)}
        return [records.job(row) for row in await self._fetch(JOBS_DUE_FOR_SUBMIT_SQL, params)]

    async def claim_submissions(
        self, now: float, *, limit: int, lease_seconds: float, max_in_flight: int = 0,
        tasks_for: TaskPlanner | None = None,
    ) -> list[SubmissionClaim]:
        lease_until = now + lease_seconds
        async with self._transaction() as conn:
            # One claimer at a time across replicas: the in-flight count below stays true
            # until this transaction's claims commit.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", [SUBMIT_LOCK_KEY])
            cursor = await conn.execute(EXPIRED_SUBMISSIONS_SQL, {"now": now, "limit": limit})
            claimed = [SubmissionClaim(records.job(row), None)
                       for row in await cursor.fetchall()]
            room = limit - len(claimed)
            if max_in_flight:
                cursor = await conn.execute(IN_FLIGHT_SQL)
                row = await cursor.fetchone()
                assert row is not None
                room = min(room, max_in_flight - int(row["n"]))
            if room > 0:
                cursor = await conn.execute(DUE_QUEUED_SQL, {"now": now, "limit": room})
                for job in [records.job(row) for row in await cursor.fetchall()]:
                    result = await self._transition_in(
                        conn, job, JobState.SUBMITTING, source=TransitionSource.SUBMIT,
                        payload=None, received_at=None, tasks_for=tasks_for, delivery_id=None)
                    claimed.append(SubmissionClaim(result.job, result))
            if claimed:
                await conn.execute("UPDATE jobs SET next_attempt_at = %s WHERE id = ANY(%s)",
                                   [lease_until, [claim.job.id for claim in claimed]])
        return [replace(claim, job=replace(claim.job, next_attempt_at=lease_until))
                for claim in claimed]

    async def claim_overdue(self, now: float, grace: float, *, hold_seconds: float,
                            limit: int = 100) -> list[Job]:
        params = {"cutoff": now - grace, "now": now, "limit": records.check_limit(limit),
                  "hold": now + hold_seconds}
        rows = await self._fetch(CLAIM_OVERDUE_SQL, params)
        return sorted((records.job(row) for row in rows), key=lambda job: job.last_event_at)

    async def count_jobs(self, states: Sequence[JobState]) -> int:
        rows = await self._fetch("SELECT count(*) AS n FROM jobs WHERE state = ANY(%s)",
                                 [[JobState(s).value for s in states]])
        return int(rows[0]["n"])

    async def count_jobs_by_state(
        self, states: Sequence[JobState] | None = None
    ) -> dict[JobState, int]:
        values = [JobState(s).value for s in (JobState if states is None else states)]
        rows = await self._fetch("SELECT state, count(*) AS n FROM jobs "
                                 "WHERE state = ANY(%s) GROUP BY state", [values])
        return {JobState(row["state"]): int(row["n"]) for row in rows}

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
        async with self._transaction() as conn:
            cursor = await conn.execute(LOCK_JOB_SQL, [job_id])
            row = await cursor.fetchone()
            if row is None:
                raise JobNotFoundError(job_id)
            result = await self._transition_in(
                conn, records.job(row), proposed, source=source, payload=raw_payload,
                received_at=received_at, tasks_for=tasks_for, delivery_id=delivery_id)
        if result.tasks:
            self._tasks_ready.set()
        return result

    async def _transition_in(
        self,
        conn: Connection,
        job: Job,
        proposed: JobState,
        *,
        source: TransitionSource,
        payload: str | None,
        received_at: float | None,
        tasks_for: TaskPlanner | None,
        delivery_id: int | None,
    ) -> TransitionResult:
        """The body of :meth:`apply_transition`, inside a transaction that holds the job's
        row lock and that callers may extend (see :meth:`ingest_webhook`)."""
        step = planning.step_transition(job, proposed, now=self._clock(),
                                        received_at=received_at)
        decision, now, after = step.decision, step.recorded_at, step.job
        cursor = await conn.execute(INSERT_TRANSITION_SQL, {
            "job_id": job.id, "from_state": job.state.value, "to_state": proposed.value,
            "outcome": decision.outcome.value, "source": source.value,
            "reason": decision.reason, "payload": payload, "delivery_id": delivery_id,
            "received_at": step.received_at, "recorded_at": now,
        })
        row = await cursor.fetchone()
        assert row is not None
        transition = records.transition(row)
        if not decision.applied:
            await conn.execute(TOUCH_JOB_SQL, {"event_at": after.last_event_at, "id": job.id})
            return TransitionResult(decision, after, transition)
        await conn.execute(APPLY_JOB_STATE_SQL, {
            "state": proposed.value, "changed_at": after.state_changed_at,
            "event_at": after.last_event_at, "now": now, "id": job.id,
        })
        tasks = []
        for spec in planning.plan_tasks(after, transition, tasks_for):
            cursor = await conn.execute(INSERT_TASK_SQL, {
                "job_id": job.id, "transition_id": transition.id, "handler": spec.handler,
                "idempotency_key": spec.idempotency_key, "now": now,
            })
            task_row = await cursor.fetchone()
            assert task_row is not None
            tasks.append(records.task(task_row))
        if tasks:
            await conn.execute(self._notify_sql)
        return TransitionResult(decision, after, transition, tuple(tasks))

    async def list_transitions(self, job_id: str) -> list[Transition]:
        rows = await self._fetch(
            f"SELECT {_TR} FROM transitions WHERE job_id = %s ORDER BY id", [job_id])
        return [records.transition(row) for row in rows]

    async def get_transition(self, transition_id: int) -> Transition | None:
        rows = await self._fetch(f"SELECT {_TR} FROM transitions WHERE id = %s",
                                 [transition_id])
        return records.transition(rows[0]) if rows else None

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
        rows = await self._fetch(INSERT_DELIVERY_SQL, records.delivery_row(
            body=body, headers=headers, outcome=outcome, received_at=received_at,
            video_id=video_id, job_id=job_id, nonce=nonce, timestamp=timestamp, error=error))
        return records.delivery(rows[0])

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
        delivery_values = records.delivery_row(
            body=body, headers=headers, outcome=DeliveryOutcome.OK,
            received_at=received_at, video_id=video_id, job_id=None, nonce=nonce,
            timestamp=timestamp, error=None)
        proposed = JobState(proposed)
        async with self._transaction() as conn:
            claim = await conn.execute(CLAIM_NONCE_SQL, [nonce, timestamp, self._clock()])
            if claim.rowcount != 1:
                return WebhookIngest(DeliveryOutcome.DUPLICATE, None, None)
            # Either update_job's video id committed before this lookup, or this delivery
            # commits (as an orphan) before it: see the module docstring.
            await conn.execute(LOCK_VIDEO_SQL, [VIDEO_LOCK_CLASS, video_id])
            cursor = await conn.execute(LOCK_JOB_BY_VIDEO_SQL, [video_id])
            row = await cursor.fetchone()
            job = None if row is None else records.job(row)
            outcome = DeliveryOutcome.OK if job is not None else DeliveryOutcome.ORPHAN
            cursor = await conn.execute(INSERT_DELIVERY_SQL, {
                **delivery_values, "outcome": outcome.value,
                "job_id": job.id if job else None})
            delivery_row = await cursor.fetchone()
            assert delivery_row is not None
            delivery = records.delivery(delivery_row)
            if job is None:
                return WebhookIngest(outcome, delivery, None)
            result = await self._transition_in(
                conn, job, proposed, source=TransitionSource.WEBHOOK,
                payload=planning.encode_payload(body.decode("utf-8", "replace")),
                received_at=received_at, tasks_for=tasks_for, delivery_id=delivery.id,
            )
        if result.tasks:
            self._tasks_ready.set()
        return WebhookIngest(outcome, delivery, result)

    async def get_webhook_delivery(self, delivery_id: int) -> WebhookDelivery | None:
        rows = await self._fetch(f"SELECT {_D} FROM webhook_deliveries WHERE id = %s",
                                 [delivery_id])
        return records.delivery(rows[0]) if rows else None

    async def list_webhook_deliveries(
        self,
        *,
        video_id: int | None = None,
        outcome: DeliveryOutcome | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> tuple[list[WebhookDelivery], int | None]:
        records.check_limit(limit)
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit + 1}
        if video_id is not None:
            where.append("video_id = %(video_id)s")
            params["video_id"] = video_id
        if outcome is not None:
            where.append("outcome = %(outcome)s")
            params["outcome"] = DeliveryOutcome(outcome).value
        if cursor is not None:
            where.append("id < %(cursor)s")
            params["cursor"] = cursor
        rows = await self._fetch(f"SELECT {_D} FROM webhook_deliveries{_where(where)} "
                                 "ORDER BY id DESC LIMIT %(limit)s", params)
        deliveries = [records.delivery(row) for row in rows[:limit]]
        return deliveries, deliveries[-1].id if len(rows) > limit else None

    async def claim_nonce(self, nonce: str, timestamp: float | None) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(CLAIM_NONCE_SQL, [nonce, timestamp, self._clock()])
            return cursor.rowcount == 1

    async def prune_nonces(self, claimed_before: float) -> int:
        async with self._transaction() as conn:
            cursor = await conn.execute("DELETE FROM webhook_nonces WHERE claimed_at < %s",
                                        [claimed_before])
            return cursor.rowcount

    # -- handler tasks ---------------------------------------------------------------------

    async def claim_tasks(
        self, now: float, *, limit: int = 10, lease_seconds: float = 60.0
    ) -> list[Task]:
        params = {"now": now, "lease_until": now + lease_seconds,
                  "limit": records.check_limit(limit)}
        rows = await self._fetch(CLAIM_TASKS_SQL, params)
        return sorted((records.task(row) for row in rows), key=lambda task: task.id)

    async def _finish_task(self, task_id: int, sql: LiteralString, params: dict[str, Any], *,
                           attempt: int | None, started_at: float | None,
                           outcome: TaskRunOutcome, error: str | None, notify: bool) -> Task:
        async with self._transaction() as conn:
            now = self._clock()
            cursor = await conn.execute(sql, {**params, "id": task_id, "attempt": attempt,
                                              "now": now})
            row = await cursor.fetchone()
            if row is None:
                found = await conn.execute("SELECT 1 FROM tasks WHERE id = %s", [task_id])
                if await found.fetchone():
                    raise LeaseLostError(task_id, attempt or 0)
                raise TaskNotFoundError(task_id)
            task = records.task(row)
            if started_at is not None:
                await conn.execute(INSERT_TASK_RUN_SQL, {
                    "id": task_id, "run_attempt": task.attempts, "outcome": outcome.value,
                    "error": error, "started_at": started_at, "now": now,
                })
            if notify:
                await conn.execute(self._notify_sql)
        if notify:
            self._tasks_ready.set()
        return task

    async def complete_task(self, task_id: int, *, attempt: int | None = None,
                            started_at: float | None = None) -> Task:
        return await self._finish_task(task_id, COMPLETE_TASK_SQL, {}, attempt=attempt,
                                       started_at=started_at, outcome=TaskRunOutcome.SUCCEEDED,
                                       error=None, notify=False)

    async def fail_task(self, task_id: int, *, error: str, retry_at: float | None,
                        attempt: int | None = None, started_at: float | None = None) -> Task:
        state = TaskState.DEAD if retry_at is None else TaskState.PENDING
        return await self._finish_task(
            task_id, FAIL_TASK_SQL, {"state": state.value, "retry_at": retry_at, "error": error},
            attempt=attempt, started_at=started_at, error=error, notify=retry_at is not None,
            outcome=TaskRunOutcome.DEAD if retry_at is None else TaskRunOutcome.RETRY,
        )

    async def extend_task_lease(self, task_id: int, *, attempt: int, lease_until: float) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(EXTEND_LEASE_SQL, {
                "id": task_id, "attempt": attempt, "lease_until": lease_until,
                "now": self._clock()})
            return cursor.rowcount == 1

    async def release_task(self, task_id: int, *, attempt: int, run_after: float) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(RELEASE_TASK_SQL, {
                "id": task_id, "attempt": attempt, "run_after": run_after,
                "now": self._clock()})
            return cursor.rowcount == 1

    async def retry_task(self, task_id: int, *, now: float | None = None) -> Task:
        async with self._transaction() as conn:
            clock = self._clock()
            cursor = await conn.execute(RETRY_TASK_SQL, {
                "id": task_id, "now": clock, "run_after": clock if now is None else now})
            row = await cursor.fetchone()
            if row is None:
                found = await conn.execute("SELECT state FROM tasks WHERE id = %s", [task_id])
                state = await found.fetchone()
                if state is None:
                    raise TaskNotFoundError(task_id)
                raise TaskStateError(
                    f"task {task_id} is {state['state']}; only dead tasks can be retried")
            await conn.execute(self._notify_sql)
        self._tasks_ready.set()
        return records.task(row)

    async def get_task(self, task_id: int) -> Task | None:
        rows = await self._fetch(f"SELECT {_T} FROM tasks WHERE id = %s", [task_id])
        return records.task(rows[0]) if rows else None

    async def list_tasks(
        self, *, job_id: str | None = None, state: TaskState | None = None,
        handler: str | None = None, limit: int = 1000,
    ) -> list[Task]:
        where: list[str] = []
        params: dict[str, Any] = {"limit": records.check_limit(limit)}
        if job_id is not None:
            where.append("job_id = %(job_id)s")
            params["job_id"] = job_id
        if state is not None:
            where.append("state = %(state)s")
            params["state"] = TaskState(state).value
        if handler is not None:
            where.append("handler = %(handler)s")
            params["handler"] = handler
        rows = await self._fetch(
            f"SELECT {_T} FROM tasks{_where(where)} ORDER BY id LIMIT %(limit)s", params)
        return [records.task(row) for row in rows]

    async def list_task_runs(self, task_id: int) -> list[TaskRun]:
        rows = await self._fetch(f"SELECT {records.TASK_RUN_COLUMNS} FROM task_runs "
                                 "WHERE task_id = %s ORDER BY id", [task_id])
        return [records.task_run(row) for row in rows]

    async def count_tasks_by_state(
        self, states: Sequence[TaskState] | None = None
    ) -> dict[TaskState, int]:
        values = [TaskState(s).value for s in (TaskState if states is None else states)]
        rows = await self._fetch("SELECT state, count(*) AS n FROM tasks "
                                 "WHERE state = ANY(%s) GROUP BY state", [values])
        return {TaskState(row["state"]): int(row["n"]) for row in rows}

    async def next_task_due(self) -> float | None:
        rows = await self._fetch(NEXT_TASK_DUE_SQL)
        due: float | None = rows[0]["due"]
        return due
