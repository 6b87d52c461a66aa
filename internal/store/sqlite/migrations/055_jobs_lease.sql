-- Leases: a worker runs a job only while it holds the job's lease (owner id
-- and expiry, extended by heartbeats). lease_token is a fencing token, raised
-- at every claim: a write from a worker whose lease was taken over names an
-- old token and changes nothing. cancel_requested is a cancel asked for on a
-- node that does not hold the job; the holder sees it at its next heartbeat.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
ALTER TABLE jobs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_lease ON jobs(lease_owner) WHERE status IN ('starting', 'processing');
