"""Old history, fast: jobs finished long ago with their transitions and deliveries, written
with set-based SQL (a recursive counter), so a store can hold a million old transitions in
seconds. For retention tests and ``scripts/bench_prune``; works on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

#: Job ids of the filled jobs start with this (so they can be told apart from live ones).
PREFIX = "old_"


def fill_old_history(conn: Any, *, postgres: bool, jobs: int, transitions_per_job: int,
                     finished_at: float) -> None:
    """Add ``jobs`` jobs that succeeded at ``finished_at``, each with
    ``transitions_per_job`` transitions and one webhook delivery, in one transaction on a
    DB-API connection (sqlite3 in autocommit mode, or psycopg)."""
    mark = "%s" if postgres else "?"

    def run(sql: str, *params: Any) -> None:
        conn.execute(sql.replace("?", mark), params)

    counter = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
    run("BEGIN")
    run(counter + "INSERT INTO jobs (id, kind, state, params, trace_id, labels, then_steps, "
        "created_at, updated_at, state_changed_at, last_event_at) "
        f"SELECT '{PREFIX}' || i, 'text_to_video', 'succeeded', '{{}}', "
        f"'{PREFIX}trace_' || i, '{{}}', '[]', ?, ?, ?, ? FROM n",
        jobs, *[finished_at] * 4)
    run(counter + ", k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?) "
        "INSERT INTO transitions (job_id, from_state, to_state, outcome, source, "
        "reason, received_at, recorded_at) "
        f"SELECT '{PREFIX}' || n.i, 'generating', 'succeeded', 'applied', 'webhook', "
        "'status 1', ?, ? FROM n, k",
        jobs, transitions_per_job, finished_at, finished_at)
    run(counter + "INSERT INTO webhook_deliveries (received_at, outcome, job_id, headers, body)"
        f" SELECT ?, 'ok', '{PREFIX}' || i, '{{}}', ? FROM n",
        jobs, finished_at, b'{"status":1}')
    run("COMMIT")
    if postgres:
        # What autovacuum does soon after a bulk load; without it the planner guesses.
        run("ANALYZE")
