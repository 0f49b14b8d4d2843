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

-- A claim leases the job for one attempt and counts it, before the call: an attempt cut
-- short by a crash stays counted.
-- name: lease_submission
UPDATE jobs SET next_attempt_at = :lease_until, attempts = attempts + 1 WHERE id = :id

-- PixVerse accepted the create call: the video id, and no retry pending. Not for a job
-- cancelled meanwhile (then no row comes back).
-- name: accept_submission
UPDATE jobs SET video_id = :video_id, last_error = NULL, next_attempt_at = NULL,
                updated_at = :now
WHERE id = :id AND cancelled_at IS NULL
RETURNING *

-- Deliveries of one :outcome (the orphans) for a video id, oldest first
-- (webhook_deliveries_video).
-- name: video_deliveries
SELECT * FROM webhook_deliveries WHERE video_id = :video_id AND outcome = :outcome ORDER BY id

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
    SELECT id, run_after AS due FROM tasks {pending_index}
    WHERE state = 'pending' AND run_after <= :now
    ORDER BY run_after LIMIT :limit {skip_locked}
), expired AS (
    SELECT id, lease_until AS due FROM tasks {running_index}
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

-- claim_tasks leaving out the handlers in :ids (a JSON array: those at their concurrency
-- limit), so their backlog does not hold the others' tasks back. Only the :window most
-- overdue pending tasks are looked through (no index leads with the handler), which keeps a
-- claim's cost flat in queue length; they are read without locks, and only the tasks picked
-- are locked, skipping any another claimer holds, and checked again once locked.
-- name: claim_tasks_skipping
WITH candidates AS (
    SELECT id, handler, run_after AS due FROM tasks {pending_index}
    WHERE state = 'pending' AND run_after <= :now
    ORDER BY run_after LIMIT :window
), pending AS (
    SELECT id, due FROM candidates WHERE handler NOT IN ({id_list})
), expired AS (
    SELECT id, lease_until AS due FROM tasks {running_index}
    WHERE state = 'running' AND lease_until <= :now AND handler NOT IN ({id_list})
    ORDER BY lease_until LIMIT :limit
), picked AS (
    SELECT id FROM (SELECT id, due FROM pending UNION ALL SELECT id, due FROM expired) AS due
    ORDER BY due LIMIT :limit
), locked AS (
    -- A CASE, not an OR of the two states: SQLite would read that through tasks_state_id.
    SELECT id FROM tasks
    WHERE id IN (SELECT id FROM picked)
      AND CASE state WHEN 'pending' THEN run_after <= :now
                     WHEN 'running' THEN lease_until <= :now ELSE FALSE END
    {skip_locked}
)
UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_until = :lease_until,
                 updated_at = :now
WHERE id IN (SELECT id FROM locked)
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
RETURNING *

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

-- When the next task becomes claimable: a pending one's run_after or a running one's lease,
-- each the first entry of its partial index (one index step, however long the queue).
-- name: next_task_due
SELECT min(due) AS due FROM (
    SELECT * FROM (SELECT run_after AS due FROM tasks {pending_index}
                   WHERE state = 'pending' ORDER BY run_after LIMIT 1) AS pending
    UNION ALL
    SELECT * FROM (SELECT lease_until AS due FROM tasks {running_index}
                   WHERE state = 'running' ORDER BY lease_until LIMIT 1) AS running
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

-- the operator's actions (service/store/operator.py) -----------------------------------------

-- A job an operator's search term names: its id, trace id or video id exactly, or a prompt or
-- label containing it (the JSON text of params and labels, case-folded; the patterns are
-- escaped; :label_pattern is "key":"value" for a key=value term).
-- name: job_matches
(id = :term OR trace_id = :term OR video_id = :video_id
 OR lower(CAST(params AS TEXT)) LIKE :pattern ESCAPE '\'
 OR lower(CAST(labels AS TEXT)) LIKE :label_pattern ESCAPE '\')

-- What a revived task is set to: pending now, with a fresh budget of attempts. Its runs stay,
-- so its history shows every run, the revived ones after the others.
-- name: revive_task
state = 'pending', attempts = 0, run_after = :now, lease_until = NULL, updated_at = :now

-- A finished task (succeeded or dead) runs again.
-- name: replay_task
UPDATE tasks SET {revive_task}
WHERE id = :id AND state IN ('succeeded', 'dead')
RETURNING *

-- name: list_job_deliveries
SELECT * FROM webhook_deliveries WHERE job_id = :job_id ORDER BY id LIMIT :limit

-- worker heartbeats (service/store/workers.py) -----------------------------------------------

-- name: beat_worker
INSERT INTO worker_heartbeats (id, host, pid, version, roles, started_at, beat_at, tasks_running)
VALUES (:id, :host, :pid, :version, :roles, :started_at, :beat_at, :tasks_running)
ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at,
                               tasks_running = excluded.tasks_running
RETURNING *

-- name: list_workers
SELECT * FROM worker_heartbeats ORDER BY beat_at DESC, id LIMIT :limit

-- name: forget_worker
DELETE FROM worker_heartbeats WHERE id = :id

-- name: prune_workers
DELETE FROM worker_heartbeats WHERE beat_at < :before

-- name: newest_worker_beat
SELECT max(beat_at) AS beat_at FROM worker_heartbeats

-- The task that has waited longest for a worker: due soonest among the pending ones.
-- name: oldest_due_task
SELECT min(run_after) AS due FROM tasks WHERE state = 'pending' AND run_after <= :now

-- the event log (service/store/event_log.py) ------------------------------------------------

-- name: insert_transition_event
INSERT INTO events (job_id, state, transition_id, recorded_at)
VALUES (:job_id, :state, :transition_id, :recorded_at)

-- The job's state as the run finished (read in the run's own transaction).
-- name: insert_task_run_event
INSERT INTO events (job_id, state, task_run_id, recorded_at)
SELECT k.job_id, j.state, :task_run_id, :recorded_at
FROM tasks k JOIN jobs j ON j.id = k.job_id
WHERE k.id = :task_id

-- name: last_event_sequence
SELECT max(id) AS sequence FROM events

-- retention (service/store/retention.py): history of jobs finished before :before ------------

-- A finished job not pruned yet, finished before :before (the jobs_prunable index).
-- name: prunable
state IN {terminal_states} AND pruned_at IS NULL AND state_changed_at < :before

-- A batch of them, skipping any whose handler tasks are still to run.
-- name: prunable_jobs
SELECT * FROM jobs {prunable_index}
WHERE {prunable}
  AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.id
                  AND t.state IN ('pending', 'running'))
ORDER BY state_changed_at LIMIT :limit {skip_locked}

-- In this order: each row goes before the rows it points at.
-- name: prune_task_runs
DELETE FROM task_runs WHERE task_id IN (SELECT id FROM tasks WHERE job_id IN ({id_list}))

-- name: prune_tasks
DELETE FROM tasks WHERE job_id IN ({id_list})

-- name: prune_transitions
DELETE FROM transitions WHERE job_id IN ({id_list})

-- The stream's log of the job's transitions and task runs, gone with them.
-- name: prune_events
DELETE FROM events WHERE job_id IN ({id_list})

-- name: prune_job_deliveries
DELETE FROM webhook_deliveries
WHERE job_id IN ({id_list})
  AND NOT EXISTS (SELECT 1 FROM transitions t WHERE t.delivery_id = webhook_deliveries.id)

-- name: mark_pruned
UPDATE jobs SET pruned_at = :now WHERE id IN ({id_list})

-- Deliveries no job claimed (refused, orphans never adopted).
-- name: prune_unmatched_deliveries
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.job_id IS NULL AND d.received_at < :before
      AND NOT EXISTS (SELECT 1 FROM transitions t WHERE t.delivery_id = d.id)
    ORDER BY d.received_at LIMIT :limit)

-- name: prune_nonces_batch
DELETE FROM webhook_nonces WHERE nonce IN (
    SELECT nonce FROM webhook_nonces WHERE claimed_at < :before
    ORDER BY claimed_at LIMIT :limit)

-- name: prune_idempotency_keys_batch
DELETE FROM idempotency_keys WHERE (caller, idempotency_key) IN (
    SELECT caller, idempotency_key FROM idempotency_keys WHERE created_at <= :before
    ORDER BY created_at LIMIT :limit)

-- Finished jobs whose downloaded video is older than :before (the jobs_media index).
-- name: media_to_prune
SELECT * FROM jobs
WHERE media_path IS NOT NULL AND state IN {terminal_states} AND state_changed_at < :before
ORDER BY state_changed_at LIMIT :limit

-- name: forget_media
UPDATE jobs SET media_path = NULL WHERE id = :id AND media_path = :media_path

-- What a pass would prune (`pixhook prune --dry-run`).
-- name: count_prunable
SELECT
    (SELECT count(*) FROM jobs WHERE {prunable}) AS jobs,
    (SELECT count(*) FROM transitions WHERE job_id IN (SELECT id FROM jobs WHERE {prunable}))
        AS transitions,
    (SELECT count(*) FROM webhook_deliveries
     WHERE job_id IN (SELECT id FROM jobs WHERE {prunable})
        OR (job_id IS NULL AND received_at < :before)) AS deliveries,
    (SELECT count(*) FROM tasks WHERE job_id IN (SELECT id FROM jobs WHERE {prunable}))
        AS tasks,
    (SELECT count(*) FROM task_runs WHERE task_id IN (
        SELECT id FROM tasks WHERE job_id IN (SELECT id FROM jobs WHERE {prunable})))
        AS task_runs,
    (SELECT count(*) FROM events WHERE job_id IN (SELECT id FROM jobs WHERE {prunable}))
        AS events,
    (SELECT count(*) FROM webhook_nonces WHERE claimed_at < :nonces_before) AS nonces,
    (SELECT count(*) FROM idempotency_keys WHERE created_at <= :keys_before)
        AS idempotency_keys,
    (SELECT count(*) FROM jobs WHERE media_path IS NOT NULL AND state IN {terminal_states}
        AND state_changed_at < :media_before) AS media_files

-- alerts (service/store/alerts.py) ------------------------------------------------------------

-- Seen now: a new or cleared cause starts over (raised now, not notified yet).
-- name: raise_alert
INSERT INTO alerts (cause, detail, raised_at, last_seen_at)
VALUES (:cause, :detail, :now, :now)
ON CONFLICT (cause) DO UPDATE SET
    detail = excluded.detail, last_seen_at = excluded.last_seen_at,
    raised_at = CASE WHEN alerts.cleared_at IS NULL THEN alerts.raised_at
                     ELSE excluded.raised_at END,
    notified_at = CASE WHEN alerts.cleared_at IS NULL THEN alerts.notified_at END,
    cleared_at = NULL
RETURNING *

-- One process wins the right to notify, at most once per :interval.
-- name: claim_alert_notification
UPDATE alerts SET notified_at = :now
WHERE cause = :cause AND cleared_at IS NULL
  AND (notified_at IS NULL OR notified_at <= :now - :interval)

-- name: clear_alert
UPDATE alerts SET cleared_at = :now
WHERE cause = :cause AND cleared_at IS NULL AND last_seen_at < :quiet_since
RETURNING *

-- name: active_alerts
SELECT * FROM alerts WHERE cleared_at IS NULL ORDER BY raised_at, cause

-- The job that has sat in submitting longest (the submitter stuck on it).
-- name: oldest_submitting
SELECT * FROM jobs WHERE state = 'submitting' ORDER BY state_changed_at LIMIT 1
