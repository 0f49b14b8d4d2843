-- What SQLite says differently (see queries.sql). One writer holds the write lock for a whole
-- transaction, so rows need no locks of their own.

-- name: for_update
-- name: skip_locked

-- The planner would rather read every active job through jobs_state_id; pin the partial
-- index (if the WHERE ever stops matching it, SQLite fails the query instead of scanning).
-- name: overdue_index
INDEXED BY jobs_overdue

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
