"""The SQLite schema, as numbered migrations that run when the store opens.

sqlite-utils' :class:`~sqlite_utils.migrations.Migrations` records each applied migration in
``_sqlite_migrations`` (set ``pixhook``). :func:`migrate` runs the whole check-and-apply inside
one ``BEGIN IMMEDIATE`` transaction, so two processes opening the same file at once cannot both
apply a migration, and running it again is a no-op. Add a migration by appending a function;
never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from service.lifecycle import ACTIVE_STATES, JobState, Outcome, TransitionSource
from service.store.base import DeliveryOutcome, TaskRunOutcome, TaskState
from service.store.errors import SchemaError

migrations: Final = Migrations("pixhook")
#: Every migration this code knows, in order.
MIGRATION_NAMES: Final[list[str]] = []


def _migration(name: str) -> Callable[[Callable[[Database], None]], Callable[[Database], None]]:
    def register(fn: Callable[[Database], None]) -> Callable[[Database], None]:
        MIGRATION_NAMES.append(name)
        return migrations(name=name)(fn)

    return register


def _sql_list(values: Iterable[str]) -> str:
    """``('a', 'b')`` for a CHECK or IN clause, sorted so the text is the same wherever it is
    generated (SQLite matches a partial index to a query by the text of its WHERE terms).
    The values are our own enum members, never user input."""
    return "(" + ", ".join(f"'{value}'" for value in sorted(values)) + ")"


#: ``state IN (...)`` for the reconciler's partial index; the query must repeat it verbatim.
ACTIVE_STATES_SQL: Final = f"state IN {_sql_list(ACTIVE_STATES)}"


@_migration("0001_initial")
def _initial(db: Database) -> None:
    job_states = _sql_list(JobState)
    db.executescript(f"""
        CREATE TABLE jobs (
            id               TEXT PRIMARY KEY,
            kind             TEXT NOT NULL,
            state            TEXT NOT NULL CHECK (state IN {job_states}),
            params           TEXT NOT NULL DEFAULT '{{}}',
            trace_id         TEXT NOT NULL UNIQUE,
            video_id         INTEGER UNIQUE,
            labels           TEXT NOT NULL DEFAULT '{{}}',
            callback_url     TEXT,
            then_steps       TEXT NOT NULL DEFAULT '[]',
            parent_job_id    TEXT REFERENCES jobs (id),
            attempts         INTEGER NOT NULL DEFAULT 0,
            last_error       TEXT,
            next_attempt_at  REAL,
            next_poll_at     REAL,
            created_at       REAL NOT NULL,
            updated_at       REAL NOT NULL,
            state_changed_at REAL NOT NULL,
            last_event_at    REAL NOT NULL
        ) STRICT;
        CREATE INDEX jobs_state_id ON jobs (state, id);
        CREATE INDEX jobs_kind_id ON jobs (kind, id);
        CREATE INDEX jobs_parent ON jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;
        -- The reconciler's index: only jobs PixVerse owes news about, by silence.
        CREATE INDEX jobs_overdue ON jobs (last_event_at, next_poll_at)
            WHERE {ACTIVE_STATES_SQL};

        CREATE TABLE webhook_deliveries (
            id          INTEGER PRIMARY KEY,
            received_at REAL NOT NULL,
            outcome     TEXT NOT NULL CHECK (outcome IN {_sql_list(DeliveryOutcome)}),
            video_id    INTEGER,
            job_id      TEXT REFERENCES jobs (id),
            nonce       TEXT,
            timestamp   REAL,
            headers     TEXT NOT NULL DEFAULT '{{}}',
            body        BLOB NOT NULL,
            error       TEXT
        ) STRICT;
        CREATE INDEX webhook_deliveries_video ON webhook_deliveries (video_id, id)
            WHERE video_id IS NOT NULL;
        CREATE INDEX webhook_deliveries_outcome ON webhook_deliveries (outcome, id);
        CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id)
            WHERE job_id IS NOT NULL;

        CREATE TABLE webhook_nonces (
            nonce      TEXT PRIMARY KEY,
            timestamp  REAL,
            claimed_at REAL NOT NULL
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX webhook_nonces_claimed ON webhook_nonces (claimed_at);

        CREATE TABLE transitions (
            id          INTEGER PRIMARY KEY,
            job_id      TEXT NOT NULL REFERENCES jobs (id),
            from_state  TEXT CHECK (from_state IN {job_states}),
            to_state    TEXT NOT NULL CHECK (to_state IN {job_states}),
            outcome     TEXT NOT NULL CHECK (outcome IN {_sql_list(Outcome)}),
            source      TEXT NOT NULL CHECK (source IN {_sql_list(TransitionSource)}),
            reason      TEXT NOT NULL,
            payload     TEXT,
            delivery_id INTEGER REFERENCES webhook_deliveries (id),
            received_at REAL NOT NULL,
            recorded_at REAL NOT NULL
        ) STRICT;
        CREATE INDEX transitions_job ON transitions (job_id, id);
        CREATE INDEX transitions_delivery ON transitions (delivery_id)
            WHERE delivery_id IS NOT NULL;
        -- History is append-only; the database refuses anything else.
        CREATE TRIGGER transitions_no_update BEFORE UPDATE ON transitions
        BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;
        CREATE TRIGGER transitions_no_delete BEFORE DELETE ON transitions
        BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;

        CREATE TABLE tasks (
            id              INTEGER PRIMARY KEY,
            job_id          TEXT NOT NULL REFERENCES jobs (id),
            transition_id   INTEGER NOT NULL REFERENCES transitions (id),
            handler         TEXT NOT NULL,
            idempotency_key TEXT NOT NULL UNIQUE,
            state           TEXT NOT NULL DEFAULT 'pending'
                            CHECK (state IN {_sql_list(TaskState)}),
            attempts        INTEGER NOT NULL DEFAULT 0,
            run_after       REAL NOT NULL,
            lease_until     REAL,
            last_error      TEXT,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL
        ) STRICT;
        CREATE INDEX tasks_pending ON tasks (run_after) WHERE state = 'pending';
        CREATE INDEX tasks_running ON tasks (lease_until) WHERE state = 'running';
        CREATE INDEX tasks_job ON tasks (job_id, id);
    """)


@_migration("0002_task_runs_and_media")
def _task_runs_and_media(db: Database) -> None:
    db.executescript(f"""
        ALTER TABLE jobs ADD COLUMN media_path TEXT;
        ALTER TABLE jobs ADD COLUMN media_sha256 TEXT;
        ALTER TABLE jobs ADD COLUMN media_size INTEGER;

        -- One row per finished run of a task: the attempts and errors people debug with.
        CREATE TABLE task_runs (
            id          INTEGER PRIMARY KEY,
            task_id     INTEGER NOT NULL REFERENCES tasks (id),
            attempt     INTEGER NOT NULL,
            outcome     TEXT NOT NULL CHECK (outcome IN {_sql_list(TaskRunOutcome)}),
            error       TEXT,
            started_at  REAL NOT NULL,
            finished_at REAL NOT NULL
        ) STRICT;
        CREATE INDEX task_runs_task ON task_runs (task_id, id);
        CREATE INDEX tasks_state_id ON tasks (state, id);
    """)


def migrate(db: Database) -> list[str]:
    """Apply pending migrations in one write transaction; return the names applied.

    The connection must not be inside a transaction. Raises :class:`SchemaError` if the
    database records a migration this code does not know (a newer pixhook wrote it).
    """
    known = set(MIGRATION_NAMES)
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        unknown = [m.name for m in migrations.applied(db) if m.name not in known]
        if unknown:
            raise SchemaError(
                f"database has migrations this pixhook does not know: {', '.join(unknown)}; "
                "it was written by a newer version"
            )
        pending = [migration.name for migration in migrations.pending(db)]
        # Inside our transaction, sqlite-utils nests each migration in a savepoint.
        migrations.apply(db)
        db.conn.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    return pending
