-- Deploy history: every function version as written, with its spec, time
-- and the key that deployed it ('' when unknown). Written in the same
-- transaction as functions; bounded (api.FunctionVersionsKept per
-- function, older ones pruned at each write) and removed with the function.
CREATE TABLE function_versions (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    spec        TEXT NOT NULL,
    deployed_at TEXT NOT NULL,
    deployed_by TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (name, version)
);
-- What is deployed now is the first entry of each history.
INSERT INTO function_versions (name, version, spec, deployed_at) SELECT name, version, spec, updated_at FROM functions;
