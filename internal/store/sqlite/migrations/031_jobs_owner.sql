-- The API key that created each job: a prediction is visible only to its
-- creator and to admins. Jobs from before this column have owner '' and
-- are visible to admins only.
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_owner ON jobs(owner, id);
