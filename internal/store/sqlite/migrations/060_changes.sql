-- Change log: one row per write to functions, routes, keys and secrets,
-- inserted in the writer's own transaction. Writers are serialised
-- (_txlock=immediate), so seq grows in commit order and a reader polling
-- "seq > last" misses nothing. AUTOINCREMENT never reuses a pruned seq.
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT NOT NULL,            -- function, route, key, secret
    name    TEXT NOT NULL,            -- a key's id for keys
    deleted INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0
);
