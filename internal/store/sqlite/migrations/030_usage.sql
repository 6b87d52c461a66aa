-- Metering rollups: instance-seconds by state, requests and cost per
-- function and hardware class, per UTC hour and per UTC day. Rows are
-- added to (upserted) by every metering flush. start is Unix seconds.
CREATE TABLE usage_hourly (
    function       TEXT    NOT NULL,
    hardware       TEXT    NOT NULL,
    start          INTEGER NOT NULL,
    loading_s      REAL    NOT NULL DEFAULT 0,
    busy_s         REAL    NOT NULL DEFAULT 0,
    idle_s         REAL    NOT NULL DEFAULT 0,
    gpu_s          REAL    NOT NULL DEFAULT 0,
    cost_usd       REAL    NOT NULL DEFAULT 0,
    starts         INTEGER NOT NULL DEFAULT 0,
    requests       INTEGER NOT NULL DEFAULT 0,
    errors         INTEGER NOT NULL DEFAULT 0,
    cold_starts    INTEGER NOT NULL DEFAULT 0,
    duration_s     REAL    NOT NULL DEFAULT 0,
    queue_s        REAL    NOT NULL DEFAULT 0,
    attributed_usd REAL    NOT NULL DEFAULT 0,
    busy_periods   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (function, hardware, start)
);
CREATE INDEX usage_hourly_start ON usage_hourly(start);

CREATE TABLE usage_daily (
    function       TEXT    NOT NULL,
    hardware       TEXT    NOT NULL,
    start          INTEGER NOT NULL,
    loading_s      REAL    NOT NULL DEFAULT 0,
    busy_s         REAL    NOT NULL DEFAULT 0,
    idle_s         REAL    NOT NULL DEFAULT 0,
    gpu_s          REAL    NOT NULL DEFAULT 0,
    cost_usd       REAL    NOT NULL DEFAULT 0,
    starts         INTEGER NOT NULL DEFAULT 0,
    requests       INTEGER NOT NULL DEFAULT 0,
    errors         INTEGER NOT NULL DEFAULT 0,
    cold_starts    INTEGER NOT NULL DEFAULT 0,
    duration_s     REAL    NOT NULL DEFAULT 0,
    queue_s        REAL    NOT NULL DEFAULT 0,
    attributed_usd REAL    NOT NULL DEFAULT 0,
    busy_periods   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (function, hardware, start)
);
CREATE INDEX usage_daily_start ON usage_daily(start);

-- One row per invocation, kept for a limited time (see sqlite.UsageOptions).
-- at is Unix nanoseconds of the request's end.
CREATE TABLE usage_requests (
    id          INTEGER PRIMARY KEY,
    function    TEXT    NOT NULL,
    hardware    TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    status      INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    queue_ns    INTEGER NOT NULL,
    cold        INTEGER NOT NULL,
    cost_usd    REAL    NOT NULL
);
CREATE INDEX usage_requests_function ON usage_requests(function, at);
CREATE INDEX usage_requests_at ON usage_requests(at);
