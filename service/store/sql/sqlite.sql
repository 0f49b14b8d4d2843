-- What SQLite says differently (see queries.sql). One writer holds the write lock for a whole
-- transaction, so rows need no locks of their own.

-- name: for_update
-- name: skip_locked

-- The planner would rather read every active job through jobs_state_id; pin the partial
-- index (if the WHERE ever stops matching it, SQLite fails the query instead of scanning).
-- name: overdue_index
INDEXED BY jobs_overdue

-- Without ANALYZE statistics the planner reads the queue through tasks_state_id and sorts
-- every due task (0.7 s at 1M pending); pin the partial indexes that hold them in due order.
-- name: pending_index
INDEXED BY tasks_pending
-- name: running_index
INDEXED BY tasks_running

-- sqlite-utils' table, which the first releases' migrations were recorded in.
-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS _sqlite_migrations (
    migration_set TEXT, name TEXT, applied_at TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS idx__sqlite_migrations_migration_set_name
    ON _sqlite_migrations (migration_set, name)

-- name: applied_migrations
SELECT name FROM _sqlite_migrations WHERE migration_set = 'pixhook'

-- name: record_migration
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('pixhook', :name, :now)

-- schema types ------------------------------------------------------------------------------
-- name: row_id
INTEGER PRIMARY KEY
-- name: key
TEXT
-- name: bigint
INTEGER
-- name: real
REAL
-- name: json
TEXT
-- name: blob
BLOB
-- name: strict
STRICT
-- name: strict_without_rowid
STRICT, WITHOUT ROWID

-- name: append_only_transitions
CREATE TRIGGER transitions_no_update BEFORE UPDATE ON transitions
BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;
CREATE TRIGGER transitions_no_delete BEFORE DELETE ON transitions
BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END

-- Without statistics the planner would read every finished job through jobs_state_id and
-- sort them; the partial index holds only the unpruned ones, already in order.
-- name: prunable_index
INDEXED BY jobs_prunable

-- Retention may delete the history of a finished job, nothing else (0007).
-- name: prunable_transitions
DROP TRIGGER transitions_no_delete;
CREATE TRIGGER transitions_no_delete BEFORE DELETE ON transitions
WHEN coalesce((SELECT state FROM jobs WHERE id = OLD.job_id) NOT IN {terminal_states}, 1)
BEGIN SELECT RAISE(ABORT, 'transitions are append-only while their job is not finished'); END

-- Hands one free page back to the file system (Python's sqlite3 steps a pragma once, so a
-- larger count would still free one); a no-op unless the file was made with auto_vacuum =
-- INCREMENTAL (new files are; `pixhook prune --vacuum` converts an older one).
-- name: incremental_vacuum
PRAGMA incremental_vacuum(1)

-- name: free_pages
PRAGMA freelist_count

-- A JSON array parameter as a set of values (retention's batch of job ids).
-- name: id_list
SELECT value FROM json_each(:ids)
