-- Keys of scope metrics (read /metrics only). SQLite cannot change a CHECK
-- constraint, so the table is rebuilt with the same columns and rows.
CREATE TABLE api_keys_new (
    id              TEXT PRIMARY KEY,           -- public part of the key (ember_<id>_...)
    name            TEXT NOT NULL,
    hash            TEXT NOT NULL,              -- hex SHA-256 of the whole key
    scope           TEXT NOT NULL CHECK (scope IN ('admin', 'invoke', 'metrics')),
    functions       TEXT NOT NULL DEFAULT '[]', -- JSON array of name patterns; empty = all
    rate_per_sec    REAL NOT NULL DEFAULT 0,
    burst           INTEGER NOT NULL DEFAULT 0,
    max_concurrency INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    expires_at      TEXT,                       -- NULL: never
    revoked_at      TEXT                        -- NULL: active
);
INSERT INTO api_keys_new SELECT id, name, hash, scope, functions, rate_per_sec, burst, max_concurrency, created_at, expires_at, revoked_at FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_new RENAME TO api_keys;
