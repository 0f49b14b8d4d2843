-- Idempotency-Key on POST /api/jobs (Stripe's semantics). A key is claimed in the transaction
-- that creates its job: the primary key makes a second claim wait for the first transaction
-- and then find the row, so one key makes one job whatever the concurrency. caller is a
-- SHA-256 of the bearer token (never the token); request_hash a SHA-256 of the request's
-- canonical JSON (the same key with another request is refused); job_row the job's row as
-- created (JSON), which a replay answers with. Rows older than the TTL count as absent and
-- are pruned when a key is claimed. job_id is checked at commit (DEFERRABLE): the key is
-- claimed before its job is inserted, so a claim that loses waits before writing anything.
CREATE TABLE idempotency_keys (
    caller          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    job_id          {key} NOT NULL REFERENCES jobs (id) DEFERRABLE INITIALLY DEFERRED,
    job_row         {json},
    created_at      {real} NOT NULL,
    PRIMARY KEY (caller, idempotency_key)
) {strict_without_rowid};
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
