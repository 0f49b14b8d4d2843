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

-- The webhook batch (service/store/postgres_webhook_batch.py) --------------------------------
-- Rows come in as one JSON array of objects per table (json_to_recordset: psycopg dumps a
-- JSON text in microseconds, where arrays of text cost it milliseconds a batch), each with its
-- position n in the batch. Every writer takes its locks in one order (nonces, then video ids,
-- then jobs, each sorted; the events lock last), so two batches never wait for each other
-- crosswise.

-- The batch's nonces (each once), claimed in order; returns those it claimed. A nonce another
-- transaction is claiming waits for it, as claim_nonce does.
-- name: webhook_batch_claim_nonces
INSERT INTO webhook_nonces (nonce, timestamp, claimed_at)
SELECT nonce, timestamp, CAST(:now AS float8)
FROM json_to_recordset(CAST(:nonces AS json)) AS u(nonce text, timestamp float8)
ORDER BY nonce
ON CONFLICT (nonce) DO NOTHING
RETURNING nonce

-- advisory_lock's "video:<id>" for each video id, in key order: ordered against the submitter
-- setting a video id (update_job), so a webhook either finds the job or leaves an orphan
-- before the id commits. A statement of its own: the jobs are read after it, in a newer
-- snapshot.
-- name: webhook_batch_lock_videos
SELECT count(pg_advisory_xact_lock(key)) AS locked
FROM (SELECT DISTINCT hashtextextended(current_schema() || ':' || 'video:' || video_id, 0) AS key
      FROM unnest(CAST(:video_ids AS bigint[])) AS video_id
      ORDER BY key) AS keys

-- name: webhook_batch_lock_jobs
SELECT * FROM jobs WHERE video_id = ANY(CAST(:video_ids AS bigint[])) ORDER BY video_id
FOR UPDATE

-- Every row the batch writes, in one statement: the deliveries, the transitions (each joined
-- to its delivery by nonce), the jobs, the tasks (joined to their transition through the
-- delivery) and the events, which take their ids in transition order; run under the events
-- lock (event_log.py). Rows are numbered in batch order (ORDER BY n); returns the ids given,
-- each with its natural key: a delivery's nonce, a transition's delivery id, a task's
-- idempotency key.
-- name: webhook_batch_write
WITH d AS (
    INSERT INTO webhook_deliveries (received_at, outcome, video_id, job_id, nonce, timestamp,
                                    headers, body)
    SELECT received_at, outcome, video_id, job_id, nonce, timestamp, CAST(headers AS json),
           decode(body, 'hex')
    FROM json_to_recordset(CAST(:deliveries AS json))
         AS u(n int, received_at float8, outcome text, video_id bigint, job_id text,
              nonce text, timestamp float8, headers text, body text)
    ORDER BY n
    RETURNING id, nonce
), t AS (
    INSERT INTO transitions (job_id, from_state, to_state, outcome, source, reason, payload,
                             delivery_id, received_at, recorded_at)
    SELECT u.job_id, u.from_state, u.to_state, u.outcome, u.source, u.reason, u.payload, d.id,
           u.received_at, u.recorded_at
    FROM json_to_recordset(CAST(:transitions AS json))
         AS u(n int, job_id text, from_state text, to_state text, outcome text, source text,
              reason text, payload text, nonce text, received_at float8, recorded_at float8)
    JOIN d ON d.nonce = u.nonce
    ORDER BY u.n
    RETURNING id, delivery_id, job_id, from_state, to_state, outcome, recorded_at
), j AS (
    UPDATE jobs SET state = v.state, state_changed_at = v.state_changed_at,
                    last_event_at = v.last_event_at, next_poll_at = v.next_poll_at,
                    updated_at = v.updated_at
    FROM json_to_recordset(CAST(:jobs AS json))
         AS v(id text, state text, state_changed_at float8, last_event_at float8,
              next_poll_at float8, updated_at float8)
    WHERE jobs.id = v.id
), k AS (
    INSERT INTO tasks (job_id, transition_id, handler, idempotency_key, state, run_after,
                       created_at, updated_at)
    SELECT u.job_id, t.id, u.handler, u.idempotency_key, u.state, u.run_after, u.created_at,
           u.updated_at
    FROM json_to_recordset(CAST(:tasks AS json))
         AS u(n int, job_id text, nonce text, handler text, idempotency_key text, state text,
              run_after float8, created_at float8, updated_at float8)
    JOIN d ON d.nonce = u.nonce
    JOIN t ON t.delivery_id = d.id
    ORDER BY u.n
    RETURNING id, idempotency_key
), e AS (
    INSERT INTO events (job_id, state, transition_id, recorded_at)
    SELECT job_id, CASE WHEN outcome = 'applied' THEN to_state
                        ELSE coalesce(from_state, to_state) END,
           id, recorded_at
    FROM t
    ORDER BY id
)
SELECT 'delivery' AS kind, id, nonce AS key FROM d
UNION ALL SELECT 'transition', id, CAST(delivery_id AS text) FROM t
UNION ALL SELECT 'task', id, idempotency_key FROM k
