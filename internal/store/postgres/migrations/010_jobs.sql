-- Durable async jobs (predictions), their idempotency keys and the webhook
-- outbox, as in SQLite's 010/031/055. Times are Unix nanoseconds (BIGINT),
-- the unit the lease arithmetic is written in; NULL means "not yet".
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,        -- sorts by creation time
    function         TEXT NOT NULL,
    version          TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL,           -- starting|processing|succeeded|failed|canceled|aborted
    input            TEXT,
    output           TEXT,
    error            TEXT NOT NULL DEFAULT '',
    logs             TEXT NOT NULL DEFAULT '',
    attempts         INTEGER NOT NULL DEFAULT 0,
    cold_start       BOOLEAN NOT NULL DEFAULT false,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    completed_at     BIGINT,
    predict_ns       BIGINT NOT NULL DEFAULT 0,
    deadline         BIGINT,
    webhook          TEXT NOT NULL DEFAULT '',
    webhook_events   TEXT NOT NULL DEFAULT '',
    idempotency_key  TEXT NOT NULL DEFAULT '',
    events           TEXT,
    data_removed     BOOLEAN NOT NULL DEFAULT false,
    owner            TEXT NOT NULL DEFAULT '',
    -- The lease: the worker that runs the job until lease_until, extended by
    -- its heartbeats. lease_token rises at every claim (a fencing token):
    -- a write naming an older token changes nothing.
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_until      BIGINT,
    lease_token      BIGINT NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX jobs_unfinished ON jobs(id) WHERE status IN ('starting', 'processing');
CREATE INDEX jobs_completed ON jobs(completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX jobs_function ON jobs(function, id);
CREATE INDEX jobs_owner ON jobs(owner, id);
CREATE INDEX jobs_lease ON jobs(lease_owner) WHERE status IN ('starting', 'processing');

CREATE TABLE job_idempotency (
    key        TEXT PRIMARY KEY,
    job_id     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX job_idempotency_created ON job_idempotency(created_at);

CREATE TABLE job_webhooks (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     TEXT NOT NULL,
    event      TEXT NOT NULL,
    url        TEXT NOT NULL,
    body       BYTEA NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX job_webhooks_job ON job_webhooks(job_id, id);
CREATE INDEX job_webhooks_next ON job_webhooks(next_at);

CREATE TABLE jobs_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
