-- Webhook deliveries stay after they settle, with their outcome, so a job
-- shows its deliveries and attempts: outcome is '' while pending, then
-- 'delivered' or 'abandoned' (the body is emptied then). status_code is the
-- last attempt's HTTP status (0: no answer), last_at its time. Settled rows
-- are bounded per job (jobs.DeliveriesKept) and deleted with their job.
ALTER TABLE job_webhooks ADD COLUMN outcome TEXT NOT NULL DEFAULT '';
ALTER TABLE job_webhooks ADD COLUMN status_code INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_webhooks ADD COLUMN last_at INTEGER;
CREATE INDEX job_webhooks_pending ON job_webhooks(job_id, id) WHERE outcome = '';
