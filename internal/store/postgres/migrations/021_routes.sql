-- Hybrid routes: spec is the JSON of route.Route.
CREATE TABLE routes (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
