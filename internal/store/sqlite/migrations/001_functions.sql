CREATE TABLE functions (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,            -- JSON of spec.Function
    version    INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
