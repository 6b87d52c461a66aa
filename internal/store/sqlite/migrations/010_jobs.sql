-- Durable async jobs (predictions), their idempotency keys and the webhook
-- outbox. Times are Unix nanoseconds; NULL means "not yet".
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,        -- sorts by creation time
    function        TEXT NOT NULL,
    version         TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL,           -- starting|processing|succeeded|failed|canceled|aborted
    input           TEXT,
    output          TEXT,
    error           TEXT NOT NULL DEFAULT '',
    logs            TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    cold_start      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    completed_at    INTEGER,
    predict_ns      INTEGER NOT NULL DEFAULT 0,
    deadline        INTEGER,
    webhook         TEXT NOT NULL DEFAULT '',
    webhook_events  TEXT NOT NULL DEFAULT '',  -- comma-separated filter, '' = all
    idempotency_key TEXT NOT NULL DEFAULT '',
    events          TEXT,                      -- JSON stream events, set at completion
    data_removed    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_unfinished ON jobs(status) WHERE status IN ('starting', 'processing');
CREATE INDEX jobs_completed ON jobs(completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX jobs_function ON jobs(function, id);

CREATE TABLE job_idempotency (
    key        TEXT PRIMARY KEY,
    job_id     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE job_webhooks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL,
    event      TEXT NOT NULL,
    url        TEXT NOT NULL,
    body       BLOB NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX job_webhooks_job ON job_webhooks(job_id, id);

CREATE TABLE jobs_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
