-- The schema, written once for both databases: {real}, {json} and the like are each
-- dialect's types (sqlite.sql, postgres.sql). Shipped migrations are never edited; append one.

CREATE TABLE jobs (
    id               {key} PRIMARY KEY,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN {job_states}),
    params           {json} NOT NULL DEFAULT '{}',
    trace_id         TEXT NOT NULL UNIQUE,
    video_id         {bigint} UNIQUE,
    labels           {json} NOT NULL DEFAULT '{}',
    callback_url     TEXT,
    then_steps       {json} NOT NULL DEFAULT '[]',
    parent_job_id    {key} REFERENCES jobs (id),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  {real},
    next_poll_at     {real},
    created_at       {real} NOT NULL,
    updated_at       {real} NOT NULL,
    state_changed_at {real} NOT NULL,
    last_event_at    {real} NOT NULL,
    media_path       TEXT,
    media_sha256     TEXT,
    media_size       {bigint}
) {strict};
CREATE INDEX jobs_state_id ON jobs (state, id);
CREATE INDEX jobs_kind_id ON jobs (kind, id);
CREATE INDEX jobs_parent ON jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;
-- The reconciler's index: only jobs PixVerse owes news about, by silence.
CREATE INDEX jobs_overdue ON jobs (last_event_at, next_poll_at) WHERE state IN {active_states};

CREATE TABLE webhook_deliveries (
    id          {row_id},
    received_at {real} NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN {delivery_outcomes}),
    video_id    {bigint},
    job_id      {key} REFERENCES jobs (id),
    nonce       TEXT,
    timestamp   {real},
    headers     {json} NOT NULL DEFAULT '{}',
    body        {blob} NOT NULL,
    error       TEXT
) {strict};
CREATE INDEX webhook_deliveries_video ON webhook_deliveries (video_id, id)
    WHERE video_id IS NOT NULL;
CREATE INDEX webhook_deliveries_outcome ON webhook_deliveries (outcome, id);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE webhook_nonces (
    nonce      TEXT PRIMARY KEY,
    timestamp  {real},
    claimed_at {real} NOT NULL
) {strict_without_rowid};
CREATE INDEX webhook_nonces_claimed ON webhook_nonces (claimed_at);

CREATE TABLE transitions (
    id          {row_id},
    job_id      {key} NOT NULL REFERENCES jobs (id),
    from_state  TEXT CHECK (from_state IN {job_states}),
    to_state    TEXT NOT NULL CHECK (to_state IN {job_states}),
    outcome     TEXT NOT NULL CHECK (outcome IN {outcomes}),
    source      TEXT NOT NULL CHECK (source IN {sources}),
    reason      TEXT NOT NULL,
    payload     TEXT,
    delivery_id {bigint} REFERENCES webhook_deliveries (id),
    received_at {real} NOT NULL,
    recorded_at {real} NOT NULL
) {strict};
CREATE INDEX transitions_job ON transitions (job_id, id);
CREATE INDEX transitions_delivery ON transitions (delivery_id) WHERE delivery_id IS NOT NULL;
-- History is append-only; the database refuses anything else.
{append_only_transitions};

CREATE TABLE tasks (
    id              {row_id},
    job_id          {key} NOT NULL REFERENCES jobs (id),
    transition_id   {bigint} NOT NULL REFERENCES transitions (id),
    handler         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {task_states}),
    attempts        INTEGER NOT NULL DEFAULT 0,
    run_after       {real} NOT NULL,
    lease_until     {real},
    last_error      TEXT,
    created_at      {real} NOT NULL,
    updated_at      {real} NOT NULL
) {strict};
-- The queue: claim_tasks reads each partial index in due order.
CREATE INDEX tasks_pending ON tasks (run_after) WHERE state = 'pending';
CREATE INDEX tasks_running ON tasks (lease_until) WHERE state = 'running';
CREATE INDEX tasks_job ON tasks (job_id, id);
CREATE INDEX tasks_state_id ON tasks (state, id);

-- One row per finished run of a task: the attempts and errors people debug with.
CREATE TABLE task_runs (
    id          {row_id},
    task_id     {bigint} NOT NULL REFERENCES tasks (id),
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN {run_outcomes}),
    error       TEXT,
    started_at  {real} NOT NULL,
    finished_at {real} NOT NULL
) {strict};
CREATE INDEX task_runs_task ON task_runs (task_id, id);
