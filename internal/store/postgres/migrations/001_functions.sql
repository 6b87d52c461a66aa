-- Deployed functions. spec is the JSON as written (TEXT, not jsonb, so it
-- reads back byte for byte); version rises at every write.
CREATE TABLE functions (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
