-- Workers you can see: each worker process upserts its row every few seconds (heartbeat.py),
-- and readiness, `pixhook workers` and the dashboard read them. A row whose beat is old is a
-- worker that froze or died without saying goodbye; a clean stop deletes its row, and
-- retention forgets rows silent for a day.
CREATE TABLE worker_heartbeats (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    version       TEXT NOT NULL,
    roles         TEXT NOT NULL,
    started_at    {real} NOT NULL,
    beat_at       {real} NOT NULL,
    tasks_running INTEGER NOT NULL DEFAULT 0
) {strict_without_rowid};
CREATE INDEX worker_heartbeats_beat ON worker_heartbeats (beat_at);

-- Retention (service/store/retention.py) prunes the history of jobs finished longer ago than
-- PIXHOOK_RETENTION_DAYS, and marks each job it pruned (pruned_at), so that a pass walks only
-- jobs not pruned yet: the partial index holds just those, and shrinks as they are pruned.
ALTER TABLE jobs ADD COLUMN pruned_at {real};
CREATE INDEX jobs_prunable ON jobs (state_changed_at)
    WHERE state IN {terminal_states} AND pruned_at IS NULL;
-- Downloaded videos kept (PIXHOOK_MEDIA_RETENTION_DAYS removes old ones).
CREATE INDEX jobs_media ON jobs (state_changed_at) WHERE media_path IS NOT NULL;
-- Deliveries no job claimed (refused, orphans), pruned by age.
CREATE INDEX webhook_deliveries_unmatched ON webhook_deliveries (received_at)
    WHERE job_id IS NULL;
-- History stays append-only while its job can still change; once the job is finished, its
-- rows may be deleted (by retention), never updated.
{prunable_transitions};

-- Alerts (service/alerts.py): one row per cause, shared by every process, so a cause is
-- raised, notified (at most once per PIXHOOK_ALERT_INTERVAL, whichever process sees it) and
-- cleared once for the whole deployment, and the dashboard banner shows the same thing
-- everywhere. last_seen_at is when a process last saw the cause; a cause quiet for
-- PIXHOOK_ALERT_CLEAR_AFTER is cleared (cleared_at) and "recovered" is sent.
CREATE TABLE alerts (
    cause        TEXT PRIMARY KEY,
    detail       TEXT NOT NULL,
    raised_at    {real} NOT NULL,
    last_seen_at {real} NOT NULL,
    notified_at  {real},
    cleared_at   {real}
) {strict_without_rowid};
