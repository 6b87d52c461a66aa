package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/jobs"
)

// Jobs is the jobs.Store on this database, shared by every node's workers.
type Jobs struct {
	db *DB
}

var _ jobs.Store = (*Jobs)(nil)

// NewJobs returns the jobs store on db.
func NewJobs(db *DB) *Jobs { return &Jobs{db: db} }

// Close is a no-op (the DB owns the pool); it matches store/sqlite.
func (j *Jobs) Close() error { return nil }

// webhookHold is how long DueWebhooks keeps an entry it handed out from
// every other node: the holder delivers it and deletes or reschedules it
// well within this; a holder that died leaves it to be sent again after.
const webhookHold = 2 * time.Minute

const jobColumns = `id, function, version, status, input, output, error, logs, attempts, cold_start,
	created_at, started_at, completed_at, predict_ns, deadline, webhook, webhook_events, idempotency_key, events, data_removed, owner,
	lease_owner, lease_until, lease_token, cancel_requested`

// Update runs fn in one READ COMMITTED transaction. Conditional updates
// (Progress, Finish) lock their row and recheck their condition against
// the latest committed version, so of two nodes racing to finish a job
// exactly one matches.
func (j *Jobs) Update(ctx context.Context, fn func(jobs.Tx) error) error {
	return pgx.BeginFunc(ctx, j.db.Pool, func(tx pgx.Tx) error {
		return fn(&jobTx{ctx: ctx, tx: tx})
	})
}

type jobTx struct {
	ctx context.Context
	tx  pgx.Tx
}

func (t *jobTx) Insert(r *jobs.Record, keySince time.Time) (string, error) {
	if r.IdempotencyKey != "" {
		// Two nodes submitting the same key take turns here, so exactly
		// one inserts and the other returns its job.
		if _, err := t.tx.Exec(t.ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "job-key:"+r.IdempotencyKey); err != nil {
			return "", err
		}
		var id string
		var created int64
		err := t.tx.QueryRow(t.ctx, `SELECT job_id, created_at FROM job_idempotency WHERE key = $1`, r.IdempotencyKey).Scan(&id, &created)
		switch {
		case err == nil && created >= keySince.UnixNano():
			return id, nil
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return "", err
		}
		if _, err := t.tx.Exec(t.ctx, `INSERT INTO job_idempotency (key, job_id, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, created_at = excluded.created_at`,
			r.IdempotencyKey, r.ID, r.CreatedAt.UnixNano()); err != nil {
			return "", err
		}
	}
	_, err := t.tx.Exec(t.ctx, `INSERT INTO jobs (`+jobColumns+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25)`,
		r.ID, r.Function, r.Version, r.Status, text(r.Input), text(r.Output),
		r.Error, r.Logs, r.Attempts, r.ColdStart, r.CreatedAt.UnixNano(), nanos(r.StartedAt), nanos(r.CompletedAt),
		int64(r.PredictTime), nanos(r.Deadline), r.Webhook, strings.Join(r.WebhookEvents, ","), r.IdempotencyKey,
		text(r.Events), r.DataRemoved, r.Owner, r.Lease.Owner, nanos(r.Lease.Until), r.Lease.Token, r.CancelRequested)
	return "", err
}

// Claim is River's dequeue: the subquery locks the claimable rows it
// picks and skips those another claimer holds, so concurrent claimers
// never wait on nor share a job.
func (t *jobTx) Claim(owner string, now, until time.Time, limit int) ([]*jobs.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := t.tx.Query(t.ctx, `UPDATE jobs SET lease_owner = $1, lease_until = $2, lease_token = lease_token + 1
		WHERE id IN (SELECT id FROM jobs WHERE status IN ('starting', 'processing')
			AND (lease_owner = '' OR (lease_owner <> $1 AND (lease_until IS NULL OR lease_until <= $3)))
			ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
		RETURNING `+jobColumns, owner, until.UnixNano(), now.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	recs, err := scanJobs(rows, false)
	// RETURNING gives no order: hand them out oldest first.
	slices.SortFunc(recs, func(a, b *jobs.Record) int { return strings.Compare(a.ID, b.ID) })
	return recs, err
}

func (t *jobTx) Renew(owner string, until time.Time) ([]jobs.LeaseState, error) {
	rows, err := t.tx.Query(t.ctx, `UPDATE jobs SET lease_until = $1 WHERE lease_owner = $2 AND status IN ('starting', 'processing')
		RETURNING id, lease_token, cancel_requested`, until.UnixNano(), owner)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (jobs.LeaseState, error) {
		var l jobs.LeaseState
		err := r.Scan(&l.ID, &l.Token, &l.CancelRequested)
		return l, err
	})
}

func (t *jobTx) Release(owner string) error {
	_, err := t.tx.Exec(t.ctx, `UPDATE jobs SET lease_owner = '', lease_until = NULL WHERE lease_owner = $1 AND status IN ('starting', 'processing')`, owner)
	return err
}

func (t *jobTx) RequestCancel(id string) (bool, error) {
	tag, err := t.tx.Exec(t.ctx, `UPDATE jobs SET cancel_requested = true WHERE id = $1 AND status IN ('starting', 'processing')`, id)
	return err == nil && tag.RowsAffected() == 1, err
}

func (t *jobTx) Progress(r *jobs.Record) (bool, error) {
	tag, err := t.tx.Exec(t.ctx, `UPDATE jobs SET status = $1, attempts = $2, started_at = $3, cold_start = $4, logs = $5
		WHERE id = $6 AND status IN ('starting', 'processing') AND lease_owner = $7 AND lease_token = $8`,
		r.Status, r.Attempts, nanos(r.StartedAt), r.ColdStart, r.Logs, r.ID, r.Lease.Owner, r.Lease.Token)
	return err == nil && tag.RowsAffected() == 1, err
}

// Finish is the one terminal transition: conditional on the job not being
// terminal and on the caller's lease (owner and fencing token).
func (t *jobTx) Finish(r *jobs.Record) (bool, error) {
	tag, err := t.tx.Exec(t.ctx, `UPDATE jobs SET status = $1, output = $2, error = $3, logs = $4, attempts = $5, cold_start = $6,
		started_at = $7, completed_at = $8, predict_ns = $9, events = $10, lease_owner = '', lease_until = NULL
		WHERE id = $11 AND status IN ('starting', 'processing') AND lease_owner = $12 AND lease_token = $13`,
		r.Status, text(r.Output), r.Error, r.Logs, r.Attempts, r.ColdStart,
		nanos(r.StartedAt), nanos(r.CompletedAt), int64(r.PredictTime), text(r.Events), r.ID, r.Lease.Owner, r.Lease.Token)
	return err == nil && tag.RowsAffected() == 1, err
}

func (t *jobTx) AddWebhook(w *jobs.Webhook) error {
	_, err := t.tx.Exec(t.ctx, `INSERT INTO job_webhooks (job_id, event, url, body, attempts, next_at, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
		w.JobID, w.Event, w.URL, w.Body, w.Attempts, w.NextAt.UnixNano(), w.CreatedAt.UnixNano())
	return err
}

// WebhookDone settles a delivery, keeping its outcome but not its body,
// and prunes the job's settled deliveries to jobs.DeliveriesKept.
func (t *jobTx) WebhookDone(id int64, attempts int, outcome string, a jobs.Attempt) error {
	var jobID string
	err := t.tx.QueryRow(t.ctx, `UPDATE job_webhooks SET attempts = $1, outcome = $2, status_code = $3, last_error = $4, last_at = $5, body = ''::bytea
		WHERE id = $6 AND outcome = '' RETURNING job_id`, attempts, outcome, a.StatusCode, a.Error, a.At.UnixNano(), id).Scan(&jobID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // settled already (or swept)
	}
	if err != nil {
		return err
	}
	_, err = t.tx.Exec(t.ctx, `DELETE FROM job_webhooks WHERE job_id = $1 AND outcome != '' AND id NOT IN
		(SELECT id FROM job_webhooks WHERE job_id = $1 AND outcome != '' ORDER BY id DESC LIMIT $2)`, jobID, jobs.DeliveriesKept)
	return err
}

func (t *jobTx) WebhookRetry(id int64, attempts int, next time.Time, a jobs.Attempt) error {
	_, err := t.tx.Exec(t.ctx, `UPDATE job_webhooks SET attempts = $1, next_at = $2, status_code = $3, last_error = $4, last_at = $5 WHERE id = $6`,
		attempts, next.UnixNano(), a.StatusCode, a.Error, a.At.UnixNano(), id)
	return err
}

func (t *jobTx) Sweep(purgeBefore, deleteBefore, keysBefore time.Time) (int, error) {
	tag, err := t.tx.Exec(t.ctx, `UPDATE jobs SET input = NULL, output = NULL, logs = '', events = NULL, data_removed = true
		WHERE completed_at IS NOT NULL AND completed_at < $1 AND NOT data_removed`, purgeBefore.UnixNano())
	if err != nil {
		return 0, err
	}
	// Settled deliveries go with their job; pending ones are still sent.
	if _, err := t.tx.Exec(t.ctx, `DELETE FROM job_webhooks WHERE outcome != '' AND job_id IN
		(SELECT id FROM jobs WHERE completed_at IS NOT NULL AND completed_at < $1)`, deleteBefore.UnixNano()); err != nil {
		return 0, err
	}
	if _, err := t.tx.Exec(t.ctx, `DELETE FROM jobs WHERE completed_at IS NOT NULL AND completed_at < $1`, deleteBefore.UnixNano()); err != nil {
		return 0, err
	}
	if _, err := t.tx.Exec(t.ctx, `DELETE FROM job_idempotency WHERE created_at < $1`, keysBefore.UnixNano()); err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// Get returns one job.
func (j *Jobs) Get(ctx context.Context, id string) (*jobs.Record, error) {
	rows, err := j.db.Pool.Query(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = $1`, id)
	if err != nil {
		return nil, err
	}
	recs, err := scanJobs(rows, false)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	return recs[0], nil
}

// listColumns are jobColumns for a list: input, output and logs only up to
// a size ($1), events never, and the three sizes after.
const listColumns = `id, function, version, status,
	CASE WHEN octet_length(input) <= $1 THEN input END,
	CASE WHEN octet_length(output) <= $1 THEN output END,
	error, CASE WHEN octet_length(logs) <= $1 THEN logs ELSE '' END,
	attempts, cold_start, created_at, started_at, completed_at, predict_ns, deadline, webhook, webhook_events,
	idempotency_key, NULL, data_removed, owner, lease_owner, lease_until, lease_token, cancel_requested,
	octet_length(input), octet_length(output), octet_length(logs)`

// List returns jobs newest first.
func (j *Jobs) List(ctx context.Context, q jobs.ListQuery) ([]*jobs.Record, error) {
	var where []string
	var args []any
	cols := jobColumns
	if q.MaxField > 0 {
		cols = listColumns
		args = append(args, q.MaxField)
	}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.Before != "" {
		where = append(where, "id < "+arg(q.Before))
	}
	if q.Function != "" {
		where = append(where, "function = "+arg(q.Function))
	}
	if q.Owner != "" {
		where = append(where, "owner = "+arg(q.Owner))
	}
	query := `SELECT ` + cols + ` FROM jobs`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id DESC LIMIT " + arg(max(q.Limit, 1))
	rows, err := j.db.Pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return scanJobs(rows, q.MaxField > 0)
}

// Unfinished returns jobs not yet terminal, oldest first (tools and tests).
func (j *Jobs) Unfinished(ctx context.Context) ([]*jobs.Record, error) {
	rows, err := j.db.Pool.Query(ctx, `SELECT `+jobColumns+` FROM jobs WHERE status IN ('starting', 'processing') ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return scanJobs(rows, false)
}

// DueWebhooks returns each job's oldest undelivered webhook when it is due,
// and holds what it returns from the other nodes for webhookHold (next_at
// moves on; the holder's WebhookDone or WebhookRetry settles it), so each
// entry is sent by one node at a time.
func (j *Jobs) DueWebhooks(ctx context.Context, now time.Time, limit int) ([]*jobs.Webhook, error) {
	rows, err := j.db.Pool.Query(ctx, `UPDATE job_webhooks SET next_at = $2
		WHERE id IN (SELECT w.id FROM job_webhooks w WHERE w.outcome = '' AND w.next_at <= $1
			AND NOT EXISTS (SELECT 1 FROM job_webhooks o WHERE o.job_id = w.job_id AND o.id < w.id AND o.outcome = '')
			ORDER BY w.next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING id, job_id, event, url, body, attempts, next_at, created_at`, now.UnixNano(), now.Add(webhookHold).UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*jobs.Webhook, error) {
		var w jobs.Webhook
		var created int64
		var next int64
		err := r.Scan(&w.ID, &w.JobID, &w.Event, &w.URL, &w.Body, &w.Attempts, &next, &created)
		// NextAt is when it was due, as the caller asked.
		w.NextAt, w.CreatedAt = now, time.Unix(0, created)
		return &w, err
	})
	slices.SortFunc(out, func(a, b *jobs.Webhook) int { return cmp.Compare(a.ID, b.ID) })
	return out, err
}

// Deliveries returns jobID's newest limit webhooks, oldest first.
func (j *Jobs) Deliveries(ctx context.Context, jobID string, limit int) ([]*jobs.Delivery, error) {
	rows, err := j.db.Pool.Query(ctx, `SELECT id, event, url, outcome, attempts, status_code, last_error, last_at, next_at, created_at
		FROM job_webhooks WHERE job_id = $1 ORDER BY id DESC LIMIT $2`, jobID, max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("read webhook deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*jobs.Delivery, error) {
		var d jobs.Delivery
		var last *int64
		var next, created int64
		err := r.Scan(&d.ID, &d.Event, &d.URL, &d.Outcome, &d.Attempts, &d.StatusCode, &d.LastError, &last, &next, &created)
		if d.Outcome == "" {
			d.Outcome = api.DeliveryPending
		}
		if last != nil {
			d.LastAttemptAt = time.Unix(0, *last)
		}
		d.NextAt, d.CreatedAt = time.Unix(0, next), time.Unix(0, created)
		return &d, err
	})
	if err != nil {
		return nil, fmt.Errorf("read webhook deliveries: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// WebhookSecret returns the stored secret, storing generate's first.
func (j *Jobs) WebhookSecret(ctx context.Context, generate func() (string, error)) (string, error) {
	return j.setting(ctx, "webhook_secret", generate)
}

// StreamTokenKey returns the key that signs stream tokens, storing
// generate's first.
func (j *Jobs) StreamTokenKey(ctx context.Context, generate func() (string, error)) (string, error) {
	return j.setting(ctx, "stream_token_key", generate)
}

// setting returns the jobs setting name, storing generate's value first;
// nodes racing agree on the first stored.
func (j *Jobs) setting(ctx context.Context, name string, generate func() (string, error)) (string, error) {
	var s string
	err := j.db.Pool.QueryRow(ctx, `SELECT value FROM jobs_settings WHERE key = $1`, name).Scan(&s)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", err
	}
	gen, err := generate()
	if err != nil {
		return "", err
	}
	if _, err := j.db.Pool.Exec(ctx, `INSERT INTO jobs_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, name, gen); err != nil {
		return "", err
	}
	err = j.db.Pool.QueryRow(ctx, `SELECT value FROM jobs_settings WHERE key = $1`, name).Scan(&s)
	return s, err
}

// scanJobs reads jobColumns, or listColumns when sized.
func scanJobs(rows pgx.Rows, sized bool) ([]*jobs.Record, error) {
	defer rows.Close()
	var out []*jobs.Record
	for rows.Next() {
		var r jobs.Record
		var input, output, events *string
		var created, predict int64
		var started, completed, deadline, leaseUntil *int64
		var hookEvents string
		dest := []any{&r.ID, &r.Function, &r.Version, &r.Status, &input, &output, &r.Error, &r.Logs,
			&r.Attempts, &r.ColdStart, &created, &started, &completed, &predict, &deadline, &r.Webhook,
			&hookEvents, &r.IdempotencyKey, &events, &r.DataRemoved, &r.Owner,
			&r.Lease.Owner, &leaseUntil, &r.Lease.Token, &r.CancelRequested}
		var inSize, outSize, logSize *int64
		if sized {
			dest = append(dest, &inSize, &outSize, &logSize)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		for _, f := range []struct {
			name string
			size *int64
			got  bool
		}{{"input", inSize, input != nil}, {"output", outSize, output != nil}, {"logs", logSize, logSize != nil && *logSize == int64(len(r.Logs))}} {
			if f.size != nil && !f.got {
				if r.Omitted == nil {
					r.Omitted = map[string]int64{}
				}
				r.Omitted[f.name] = *f.size
			}
		}
		r.CreatedAt = time.Unix(0, created)
		r.StartedAt, r.CompletedAt, r.Deadline = fromNanos(started), fromNanos(completed), fromNanos(deadline)
		r.PredictTime = time.Duration(predict)
		r.Lease.Until = fromNanos(leaseUntil)
		if input != nil {
			r.Input = []byte(*input)
		}
		if output != nil {
			r.Output = []byte(*output)
		}
		if events != nil {
			r.Events = []byte(*events)
		}
		if hookEvents != "" {
			r.WebhookEvents = strings.Split(hookEvents, ",")
		}
		out = append(out, &r)
	}
	return out, rows.Err()
}

// text stores JSON as TEXT, nil as NULL.
func text(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

func fromNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n)
}
