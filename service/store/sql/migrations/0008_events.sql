-- The event stream's log (GET /api/events): one row per transition and per finished task run,
-- written in the transaction that wrote the fact, numbered in commit order. The id is the
-- stream position clients resume from; on PostgreSQL writers take the "events" advisory lock
-- just before inserting here, so ids are handed out in commit order there too (service/store/
-- event_log.py says why). No foreign keys: the log only points at its facts.
CREATE TABLE events (
    id            {row_id},
    job_id        {key} NOT NULL,
    -- the job's state after the event (the stream's state filter)
    state         TEXT NOT NULL,
    transition_id {bigint},
    task_run_id   {bigint},
    recorded_at   {real} NOT NULL
) {strict};
CREATE INDEX events_job ON events (job_id, id);
CREATE INDEX events_state ON events (state, id);

-- The history recorded before the log existed, oldest first.
INSERT INTO events (job_id, state, transition_id, task_run_id, recorded_at)
SELECT job_id, state, transition_id, task_run_id, recorded_at FROM (
    SELECT t.job_id AS job_id,
           CASE WHEN t.outcome = 'applied' THEN t.to_state ELSE coalesce(t.from_state, t.to_state)
           END AS state,
           t.id AS transition_id, NULL AS task_run_id, t.recorded_at AS recorded_at,
           0 AS part, t.id AS part_id
    FROM transitions t
    UNION ALL
    SELECT k.job_id, j.state, NULL, r.id, r.finished_at, 1, r.id
    FROM task_runs r JOIN tasks k ON k.id = r.task_id JOIN jobs j ON j.id = k.job_id
) AS history
ORDER BY recorded_at, part, part_id;
