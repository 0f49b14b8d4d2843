-- The submitter's queue (jobs still to be sent, oldest first) and the dashboard's live list
-- (what changed since its last look). PostgreSQL databases made before the schema was written
-- once have them already.
CREATE INDEX IF NOT EXISTS jobs_submittable ON jobs (id) WHERE {submittable};
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated_at, id);
