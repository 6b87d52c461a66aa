-- Keep-warm: each function's learned idle-time histogram (JSON).
CREATE TABLE keep_warm (
    function   TEXT PRIMARY KEY,
    state      BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
