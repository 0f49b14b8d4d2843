-- Every statement the store runs, by name (service/store/sql/__init__.py reads this file).
-- Parameters are :name; {name} is a fragment below or in sqlite.sql / postgres.sql, or a
-- vocabulary from the code's enums ({active_states}). Rows are read by column name, so
-- statements select and return whole rows (*).

-- jobs -------------------------------------------------------------------------------------

-- name: insert_job
INSERT INTO jobs (id, kind, state, params, trace_id, labels, callback_url, then_steps,
                  parent_job_id, created_at, updated_at, state_changed_at, last_event_at)
VALUES (:id, :kind, :state, :params, :trace_id, :labels, :callback_url, :then_steps,
        :parent_job_id, :now, :now, :now, :now)
RETURNING *

-- name: get_job
SELECT * FROM jobs WHERE id = :id

-- name: lock_job
SELECT * FROM jobs WHERE id = :id {for_update}

-- name: get_job_by_video
SELECT * FROM jobs WHERE video_id = :video_id

-- name: lock_job_by_video
SELECT * FROM jobs WHERE video_id = :video_id {for_update}

-- name: get_job_by_trace
SELECT * FROM jobs WHERE trace_id = :trace_id

-- name: jobs_updated_since
SELECT * FROM jobs WHERE updated_at > :since ORDER BY updated_at, id LIMIT :limit

-- name: count_jobs_by_state
SELECT state, count(*) AS n FROM jobs GROUP BY state

-- name: count_in_flight
SELECT count(*) AS n FROM jobs WHERE state IN {active_states}

-- Jobs PixVerse owes news about, silent since :cutoff, whose poll backoff has passed.
-- name: overdue
state IN {active_states}
  AND last_event_at <= :cutoff
  AND (next_poll_at IS NULL OR next_poll_at <= :now)

-- name: jobs_overdue
SELECT * FROM jobs {overdue_index} WHERE {overdue} ORDER BY last_event_at LIMIT :limit

-- Reconcilers on several replicas split the overdue jobs: rows another one is claiming are
-- skipped, and the claimed ones are not due again until the hold runs out.
-- name: claim_overdue
UPDATE jobs SET next_poll_at = :hold
WHERE id IN (SELECT id FROM jobs {overdue_index} WHERE {overdue}
             ORDER BY last_event_at LIMIT :limit {skip_locked})
RETURNING *

-- Jobs the submitter may (re)send; the predicate of the jobs_submittable index.
-- name: submittable
(state = 'queued' OR (state = 'submitting' AND video_id IS NULL))

-- name: jobs_due_for_submit
SELECT * FROM jobs
WHERE {submittable} AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
ORDER BY id LIMIT :limit

-- An attempt cut short (a crash, an ambiguous answer): its lease, next_attempt_at, ran out.
-- name: expired_submissions
SELECT * FROM jobs
WHERE state = 'submitting' AND video_id IS NULL
  AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
ORDER BY id LIMIT :limit {skip_locked}

-- name: due_queued
SELECT * FROM jobs
WHERE state = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
ORDER BY id LIMIT :limit {skip_locked}

-- name: lease_submission
UPDATE jobs SET next_attempt_at = :lease_until WHERE id = :id

-- :last_error is NULL for a job PixVerse accepted (its error, if any, stays).
-- name: cancel_job
UPDATE jobs SET cancelled_at = :now, last_error = coalesce(:last_error, last_error),
                updated_at = :now
WHERE id = :id
RETURNING *

-- the ledger --------------------------------------------------------------------------------

-- name: insert_transition
INSERT INTO transitions (job_id, from_state, to_state, outcome, source, reason, payload,
                         delivery_id, received_at, recorded_at)
VALUES (:job_id, :from_state, :to_state, :outcome, :source, :reason, :payload,
        :delivery_id, :received_at, :recorded_at)
RETURNING *

-- name: apply_job_state
UPDATE jobs SET state = :state, state_changed_at = :state_changed_at,
                last_event_at = :last_event_at, next_poll_at = NULL, updated_at = :updated_at
WHERE id = :id

-- name: touch_job
UPDATE jobs SET last_event_at = :last_event_at WHERE id = :id

-- name: insert_task
INSERT INTO tasks (job_id, transition_id, handler, idempotency_key, state, run_after,
                   created_at, updated_at)
VALUES (:job_id, :transition_id, :handler, :idempotency_key, 'pending', :now, :now, :now)
RETURNING *

-- name: list_transitions
SELECT * FROM transitions WHERE job_id = :job_id ORDER BY id

-- name: get_transition
SELECT * FROM transitions WHERE id = :id

-- webhook deliveries -------------------------------------------------------------------------

-- name: insert_delivery
INSERT INTO webhook_deliveries (received_at, outcome, video_id, job_id, nonce, timestamp,
                                headers, body, error)
VALUES (:received_at, :outcome, :video_id, :job_id, :nonce, :timestamp, :headers, :body,
        :error)
RETURNING *

-- name: get_delivery
SELECT * FROM webhook_deliveries WHERE id = :id

-- name: claim_nonce
INSERT INTO webhook_nonces (nonce, timestamp, claimed_at) VALUES (:nonce, :timestamp, :now)
ON CONFLICT (nonce) DO NOTHING

-- name: prune_nonces
DELETE FROM webhook_nonces WHERE claimed_at < :before

-- dashboard sessions (by the SHA-256 of their id) ---------------------------------------------

-- name: insert_dashboard_session
INSERT INTO dashboard_sessions (id_sha256, token_fingerprint, created_at, expires_at)
VALUES (:id_sha256, :token_fingerprint, :now, :expires_at)
RETURNING *

-- name: live_dashboard_session
SELECT * FROM dashboard_sessions
WHERE id_sha256 = :id_sha256 AND revoked_at IS NULL AND expires_at > :now

-- name: revoke_dashboard_session
UPDATE dashboard_sessions SET revoked_at = :now
WHERE id_sha256 = :id_sha256 AND revoked_at IS NULL

-- name: prune_dashboard_sessions
DELETE FROM dashboard_sessions WHERE expires_at <= :before

-- the task queue -----------------------------------------------------------------------------

-- Each branch walks its partial index in due order (and, on PostgreSQL, locks what it reads,
-- skipping rows another claimer holds); the most overdue :limit of both are leased.
-- name: claim_tasks
WITH pending AS (
    SELECT id, run_after AS due FROM tasks
    WHERE state = 'pending' AND run_after <= :now
    ORDER BY run_after LIMIT :limit {skip_locked}
), expired AS (
    SELECT id, lease_until AS due FROM tasks
    WHERE state = 'running' AND lease_until <= :now
    ORDER BY lease_until LIMIT :limit {skip_locked}
), picked AS (
    SELECT id FROM (SELECT id, due FROM pending UNION ALL SELECT id, due FROM expired) AS due
    ORDER BY due LIMIT :limit
)
UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_until = :lease_until,
                 updated_at = :now
WHERE id IN (SELECT id FROM picked)
RETURNING *

-- Finishing a run: only while it still holds its lease (:attempt is the attempts count its
-- claim returned), or unconditionally when no attempt is given.
-- name: holds_lease
(CAST(:attempt AS INTEGER) IS NULL OR (state = 'running' AND attempts = :attempt))

-- name: complete_task
UPDATE tasks SET state = 'succeeded', lease_until = NULL, updated_at = :now
WHERE id = :id AND {holds_lease}
RETURNING *

-- name: fail_task
UPDATE tasks SET state = :state, run_after = coalesce(:retry_at, run_after),
                 lease_until = NULL, last_error = :error, updated_at = :now
WHERE id = :id AND {holds_lease}
RETURNING *

-- name: insert_task_run
INSERT INTO task_runs (task_id, attempt, outcome, error, started_at, finished_at)
VALUES (:task_id, :attempt, :outcome, :error, :started_at, :finished_at)

-- name: extend_task_lease
UPDATE tasks SET lease_until = :lease_until, updated_at = :now
WHERE id = :id AND state = 'running' AND attempts = :attempt

-- A claim given back unrun does not count as an attempt.
-- name: release_task
UPDATE tasks SET state = 'pending', attempts = attempts - 1, lease_until = NULL,
                 run_after = :run_after, updated_at = :now
WHERE id = :id AND state = 'running' AND attempts = :attempt

-- name: retry_task
UPDATE tasks SET state = 'pending', attempts = 0, run_after = :run_after,
                 lease_until = NULL, updated_at = :now
WHERE id = :id AND state = 'dead'
RETURNING *

-- name: get_task
SELECT * FROM tasks WHERE id = :id

-- name: list_task_runs
SELECT * FROM task_runs WHERE task_id = :task_id ORDER BY id

-- name: count_tasks_by_state
SELECT state, count(*) AS n FROM tasks GROUP BY state

-- When the next task becomes claimable: a pending one's run_after or a running one's lease.
-- name: next_task_due
SELECT min(due) AS due FROM (
    SELECT min(run_after) AS due FROM tasks WHERE state = 'pending'
    UNION ALL
    SELECT min(lease_until) AS due FROM tasks WHERE state = 'running'
) AS due

-- idempotency keys (POST /api/jobs with Idempotency-Key; service/store/idempotency.py) -------

-- name: prune_idempotency_keys
DELETE FROM idempotency_keys WHERE created_at <= :expired_before

-- Another transaction claiming the same key waits here until the first commits (PostgreSQL:
-- the primary key), then claims nothing, and reads the row instead.
-- name: claim_idempotency_key
INSERT INTO idempotency_keys (caller, idempotency_key, request_hash, job_id, created_at)
VALUES (:caller, :idempotency_key, :request_hash, :job_id, :now)
ON CONFLICT (caller, idempotency_key) DO NOTHING
RETURNING *

-- name: get_idempotency_key
SELECT * FROM idempotency_keys WHERE caller = :caller AND idempotency_key = :idempotency_key

-- name: keep_idempotent_job
UPDATE idempotency_keys SET job_row = :job_row
WHERE caller = :caller AND idempotency_key = :idempotency_key
