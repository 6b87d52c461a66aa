-- Hybrid routes: the spec is the JSON of route.Route.
CREATE TABLE routes (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
