-- Metering rollups per function and hardware class, per UTC hour and day,
-- added to by every node's flush (INSERT … ON CONFLICT DO UPDATE adds).
-- start is Unix seconds.
CREATE TABLE usage_hourly (
    function       TEXT   NOT NULL,
    hardware       TEXT   NOT NULL,
    start          BIGINT NOT NULL,
    loading_s      DOUBLE PRECISION NOT NULL DEFAULT 0,
    busy_s         DOUBLE PRECISION NOT NULL DEFAULT 0,
    idle_s         DOUBLE PRECISION NOT NULL DEFAULT 0,
    gpu_s          DOUBLE PRECISION NOT NULL DEFAULT 0,
    cost_usd       DOUBLE PRECISION NOT NULL DEFAULT 0,
    starts         BIGINT NOT NULL DEFAULT 0,
    requests       BIGINT NOT NULL DEFAULT 0,
    errors         BIGINT NOT NULL DEFAULT 0,
    cold_starts    BIGINT NOT NULL DEFAULT 0,
    duration_s     DOUBLE PRECISION NOT NULL DEFAULT 0,
    queue_s        DOUBLE PRECISION NOT NULL DEFAULT 0,
    attributed_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    busy_periods   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (function, hardware, start)
);
CREATE INDEX usage_hourly_start ON usage_hourly(start);

CREATE TABLE usage_daily (
    function       TEXT   NOT NULL,
    hardware       TEXT   NOT NULL,
    start          BIGINT NOT NULL,
    loading_s      DOUBLE PRECISION NOT NULL DEFAULT 0,
    busy_s         DOUBLE PRECISION NOT NULL DEFAULT 0,
    idle_s         DOUBLE PRECISION NOT NULL DEFAULT 0,
    gpu_s          DOUBLE PRECISION NOT NULL DEFAULT 0,
    cost_usd       DOUBLE PRECISION NOT NULL DEFAULT 0,
    starts         BIGINT NOT NULL DEFAULT 0,
    requests       BIGINT NOT NULL DEFAULT 0,
    errors         BIGINT NOT NULL DEFAULT 0,
    cold_starts    BIGINT NOT NULL DEFAULT 0,
    duration_s     DOUBLE PRECISION NOT NULL DEFAULT 0,
    queue_s        DOUBLE PRECISION NOT NULL DEFAULT 0,
    attributed_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    busy_periods   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (function, hardware, start)
);
CREATE INDEX usage_daily_start ON usage_daily(start);

-- One row per invocation, kept for a limited time; at is Unix nanoseconds
-- of the request's end.
CREATE TABLE usage_requests (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    function    TEXT    NOT NULL,
    hardware    TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    status      INTEGER NOT NULL,
    duration_ns BIGINT  NOT NULL,
    queue_ns    BIGINT  NOT NULL,
    cold        BOOLEAN NOT NULL,
    cost_usd    DOUBLE PRECISION NOT NULL
);
CREATE INDEX usage_requests_function ON usage_requests(function, at);
CREATE INDEX usage_requests_at ON usage_requests(at);
