-- API keys: only the SHA-256 of each key is stored, never the key.
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    hash            TEXT NOT NULL,
    scope           TEXT NOT NULL CHECK (scope IN ('admin', 'invoke', 'metrics')),
    functions       TEXT NOT NULL DEFAULT '[]', -- JSON array of name patterns; empty = all
    rate_per_sec    DOUBLE PRECISION NOT NULL DEFAULT 0,
    burst           INTEGER NOT NULL DEFAULT 0,
    max_concurrency INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ,               -- NULL: never
    revoked_at      TIMESTAMPTZ                -- NULL: active
);
