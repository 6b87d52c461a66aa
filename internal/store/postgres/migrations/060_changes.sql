-- Change log: one row per write to functions, routes, keys and secrets,
-- inserted in the writer's own transaction after it takes the change-log
-- advisory lock, so seq grows in commit order and a reader of
-- "seq > last" misses nothing. The same transaction NOTIFYs ember_changes,
-- which only wakes readers; the log is the truth.
CREATE TABLE changes (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT false,
    version BIGINT NOT NULL DEFAULT 0
);
