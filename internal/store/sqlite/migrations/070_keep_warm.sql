-- Keep-warm: each function's learned idle-time histogram (idle_timeout:
-- auto), so a restart does not forget the traffic it learned from. Small
-- (a few hundred counters as JSON); written at most every few seconds.
CREATE TABLE keep_warm (
    function   TEXT PRIMARY KEY,
    state      BLOB NOT NULL,
    updated_at TEXT NOT NULL
);
