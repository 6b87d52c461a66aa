-- Secrets: values that specs and route headers refer to by name. A value
-- is only read to start an instance or send a routed call; no API returns
-- it. The database file is readable only by the server's user.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
