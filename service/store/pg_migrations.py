"""The PostgreSQL schema, as numbered migrations that run when the store opens.

The tables mean what SQLite's do (:mod:`service.store.migrations`; same columns, names,
checks and append-only history) in PostgreSQL's types: ``BIGINT`` identities and video ids,
``DOUBLE PRECISION`` epoch seconds, ``BYTEA`` bodies, and ``JSON`` for params, labels,
follow-up steps and headers. ``JSON`` (not ``JSONB``) keeps the text exactly as written, so a
record reads back identical to the SQLite one, key order included. Job ids sort with the
``"C"`` collation: cursor pagination compares them as bytes, as SQLite does.

Each applied migration is recorded in ``pixhook_migrations``. :func:`migrate` runs the whole
check-and-apply in one transaction under ``pg_advisory_xact_lock``, keyed on the schema, so
replicas starting together apply each migration once and the others wait, then find nothing
to do. Add a migration by appending to :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final

import psycopg

from service.lifecycle import ACTIVE_STATES, JobState, Outcome, TransitionSource
from service.store.base import DeliveryOutcome, TaskRunOutcome, TaskState
from service.store.errors import SchemaError

#: The advisory lock class for migrations ("pixm"); the other key is the schema's hash.
MIGRATION_LOCK_CLASS: Final = 0x7069786D


def _sql_list(values: Iterable[str]) -> str:
    """``('a', 'b')`` for a CHECK or IN clause. The values are our own enum members."""
    return "(" + ", ".join(f"'{value}'" for value in sorted(values)) + ")"


#: ``state IN (...)`` for the reconciler's partial index (and its query).
ACTIVE_STATES_SQL: Final = f"state IN {_sql_list(ACTIVE_STATES)}"
#: Jobs the submitter may (re)send: the predicate of ``jobs_due_for_submit`` and its index.
SUBMITTABLE_SQL: Final = "(state = 'queued' OR (state = 'submitting' AND video_id IS NULL))"

_JOB_STATES: Final = _sql_list(JobState)

_INITIAL: Final = f"""
CREATE TABLE jobs (
    id               TEXT COLLATE "C" PRIMARY KEY,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN {_JOB_STATES}),
    params           JSON NOT NULL DEFAULT '{{}}',
    trace_id         TEXT NOT NULL UNIQUE,
    video_id         BIGINT UNIQUE,
    labels           JSON NOT NULL DEFAULT '{{}}',
    callback_url     TEXT,
    then_steps       JSON NOT NULL DEFAULT '[]',
    parent_job_id    TEXT COLLATE "C" REFERENCES jobs (id),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  DOUBLE PRECISION,
    next_poll_at     DOUBLE PRECISION,
    created_at       DOUBLE PRECISION NOT NULL,
    updated_at       DOUBLE PRECISION NOT NULL,
    state_changed_at DOUBLE PRECISION NOT NULL,
    last_event_at    DOUBLE PRECISION NOT NULL,
    media_path       TEXT,
    media_sha256     TEXT,
    media_size       BIGINT
);
CREATE INDEX jobs_state_id ON jobs (state, id);
CREATE INDEX jobs_kind_id ON jobs (kind, id);
CREATE INDEX jobs_parent ON jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;
-- The reconciler's index: only jobs PixVerse owes news about, by silence.
CREATE INDEX jobs_overdue ON jobs (last_event_at) WHERE {ACTIVE_STATES_SQL};
-- The submitter's queue: only jobs still to be sent, oldest (smallest id) first.
CREATE INDEX jobs_submittable ON jobs (id) WHERE {SUBMITTABLE_SQL};
-- The dashboard's live list asks for what changed since its last look.
CREATE INDEX jobs_updated ON jobs (updated_at, id);

CREATE TABLE webhook_deliveries (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at DOUBLE PRECISION NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN {_sql_list(DeliveryOutcome)}),
    video_id    BIGINT,
    job_id      TEXT COLLATE "C" REFERENCES jobs (id),
    nonce       TEXT,
    timestamp   DOUBLE PRECISION,
    headers     JSON NOT NULL DEFAULT '{{}}',
    body        BYTEA NOT NULL,
    error       TEXT
);
CREATE INDEX webhook_deliveries_video ON webhook_deliveries (video_id, id)
    WHERE video_id IS NOT NULL;
CREATE INDEX webhook_deliveries_outcome ON webhook_deliveries (outcome, id);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE webhook_nonces (
    nonce      TEXT PRIMARY KEY,
    timestamp  DOUBLE PRECISION,
    claimed_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX webhook_nonces_claimed ON webhook_nonces (claimed_at);

CREATE TABLE transitions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      TEXT COLLATE "C" NOT NULL REFERENCES jobs (id),
    from_state  TEXT CHECK (from_state IN {_JOB_STATES}),
    to_state    TEXT NOT NULL CHECK (to_state IN {_JOB_STATES}),
    outcome     TEXT NOT NULL CHECK (outcome IN {_sql_list(Outcome)}),
    source      TEXT NOT NULL CHECK (source IN {_sql_list(TransitionSource)}),
    reason      TEXT NOT NULL,
    payload     TEXT,
    delivery_id BIGINT REFERENCES webhook_deliveries (id),
    received_at DOUBLE PRECISION NOT NULL,
    recorded_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX transitions_job ON transitions (job_id, id);
CREATE INDEX transitions_delivery ON transitions (delivery_id) WHERE delivery_id IS NOT NULL;
-- History is append-only; the database refuses anything else.
CREATE FUNCTION transitions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transitions are append-only' USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER transitions_no_change BEFORE UPDATE OR DELETE ON transitions
    FOR EACH ROW EXECUTE FUNCTION transitions_append_only();
CREATE TRIGGER transitions_no_truncate BEFORE TRUNCATE ON transitions
    FOR EACH STATEMENT EXECUTE FUNCTION transitions_append_only();

CREATE TABLE tasks (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          TEXT COLLATE "C" NOT NULL REFERENCES jobs (id),
    transition_id   BIGINT NOT NULL REFERENCES transitions (id),
    handler         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {_sql_list(TaskState)}),
    attempts        INTEGER NOT NULL DEFAULT 0,
    run_after       DOUBLE PRECISION NOT NULL,
    lease_until     DOUBLE PRECISION,
    last_error      TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL
);
-- The queue: claim_tasks reads each partial index in due order and locks with SKIP LOCKED.
CREATE INDEX tasks_pending ON tasks (run_after) WHERE state = 'pending';
CREATE INDEX tasks_running ON tasks (lease_until) WHERE state = 'running';
CREATE INDEX tasks_job ON tasks (job_id, id);
CREATE INDEX tasks_state_id ON tasks (state, id);

-- One row per finished run of a task: the attempts and errors people debug with.
CREATE TABLE task_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     BIGINT NOT NULL REFERENCES tasks (id),
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN {_sql_list(TaskRunOutcome)}),
    error       TEXT,
    started_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX task_runs_task ON task_runs (task_id, id);
"""

#: Every migration this code knows, in order: (name, SQL).
MIGRATIONS: Final[tuple[tuple[str, str], ...]] = (
    ("0001_initial", _INITIAL),
)
MIGRATION_NAMES: Final = [name for name, _ in MIGRATIONS]


async def migrate(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Apply pending migrations in one transaction; return the names applied.

    The connection must not be inside a transaction. Raises :class:`SchemaError` if the
    schema records a migration this code does not know (a newer pixhook wrote it).
    """
    async with conn.transaction():
        # Keyed on the schema, so only replicas sharing one wait for each other.
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                           [MIGRATION_LOCK_CLASS])
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS pixhook_migrations ("
            "name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        cursor = await conn.execute("SELECT name FROM pixhook_migrations ORDER BY name")
        applied = {str(_first(row)) for row in await cursor.fetchall()}
        unknown = sorted(applied - set(MIGRATION_NAMES))
        if unknown:
            raise SchemaError(
                f"database has migrations this pixhook does not know: {', '.join(unknown)}; "
                "it was written by a newer version"
            )
        pending = [(name, sql) for name, sql in MIGRATIONS if name not in applied]
        for name, sql in pending:
            await conn.execute(sql.encode())  # bytes: a script with no parameters
            await conn.execute(
                "INSERT INTO pixhook_migrations (name, applied_at) VALUES (%s, %s)",
                [name, time.time()],
            )
    return [name for name, _ in pending]


def _first(row: Any) -> Any:
    """The first column of a row, whatever the connection's row factory."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
