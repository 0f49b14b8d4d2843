-- What PostgreSQL says differently (see queries.sql). Several processes write at once, so the
-- guarantees SQLite's single writer gives rest on row locks and advisory locks here.

-- name: for_update
FOR UPDATE

-- Concurrent claimers skip each other's rows instead of waiting for them or taking them twice.
-- name: skip_locked
FOR UPDATE SKIP LOCKED

-- name: overdue_index

-- name: pending_index
-- name: running_index

-- A transaction-scoped lock on a name, per schema (deployments and test runs that share a
-- database in separate schemas do not wait for each other).
-- name: advisory_lock
SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || :name, 0))

-- One snapshot for every statement of a read that builds a view from several (read only:
-- it can never fail to serialise).
-- name: begin_snapshot
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY

-- name: current_schema
SELECT current_schema() AS name

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS pixhook_migrations (
    name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)

-- name: applied_migrations
SELECT name FROM pixhook_migrations

-- name: record_migration
INSERT INTO pixhook_migrations (name, applied_at) VALUES (:name, :now)

-- schema types: JSON (not JSONB) keeps the text as written, so records read back identical to
-- SQLite's, key order included; ids sort bytewise ("C"), as SQLite compares them.
-- name: row_id
BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY
-- name: key
TEXT COLLATE "C"
-- name: bigint
BIGINT
-- name: real
DOUBLE PRECISION
-- name: json
JSON
-- name: blob
BYTEA
-- name: strict
-- name: strict_without_rowid

-- name: append_only_transitions
CREATE FUNCTION transitions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transitions are append-only' USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER transitions_no_change BEFORE UPDATE OR DELETE ON transitions
    FOR EACH ROW EXECUTE FUNCTION transitions_append_only();
CREATE TRIGGER transitions_no_truncate BEFORE TRUNCATE ON transitions
    FOR EACH STATEMENT EXECUTE FUNCTION transitions_append_only()

-- name: prunable_index

-- Retention may delete the history of a finished job, nothing else (0007).
-- name: prunable_transitions
CREATE FUNCTION transitions_prunable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM jobs WHERE id = OLD.job_id AND state IN {terminal_states}) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'transitions are append-only while their job is not finished'
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
DROP TRIGGER transitions_no_change ON transitions;
CREATE TRIGGER transitions_no_update BEFORE UPDATE ON transitions
    FOR EACH ROW EXECUTE FUNCTION transitions_append_only();
CREATE TRIGGER transitions_no_delete BEFORE DELETE ON transitions
    FOR EACH ROW EXECUTE FUNCTION transitions_prunable()

-- Autovacuum reclaims PostgreSQL's dead rows; retention's small batches keep them few.
-- name: incremental_vacuum
SELECT 1

-- name: free_pages
SELECT 0 AS freelist_count

-- A JSON array parameter as a set of values (retention's batch of job ids).
-- name: id_list
SELECT json_array_elements_text(CAST(:ids AS json)) COLLATE "C"
