-- API keys: only the SHA-256 of each key is stored, never the key.
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,           -- public part of the key (ember_<id>_...)
    name            TEXT NOT NULL,
    hash            TEXT NOT NULL,              -- hex SHA-256 of the whole key
    scope           TEXT NOT NULL CHECK (scope IN ('admin', 'invoke')),
    functions       TEXT NOT NULL DEFAULT '[]', -- JSON array of name patterns; empty = all
    rate_per_sec    REAL NOT NULL DEFAULT 0,
    burst           INTEGER NOT NULL DEFAULT 0,
    max_concurrency INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    expires_at      TEXT,                       -- NULL: never
    revoked_at      TEXT                        -- NULL: active
);
