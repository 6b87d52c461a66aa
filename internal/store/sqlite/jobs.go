package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/jobs"
)

// Jobs is the jobs.Store on this database.
type Jobs struct {
	db    *DB
	stmts map[string]*sql.Stmt
}

var _ jobs.Store = (*Jobs)(nil)

const jobColumns = `id, function, version, status, input, output, error, logs, attempts, cold_start,
	created_at, started_at, completed_at, predict_ns, deadline, webhook, webhook_events, idempotency_key, events, data_removed, owner,
	lease_owner, lease_until, lease_token, cancel_requested`

// Statements prepared once (SQLite parses a statement at every unprepared
// call); the writes are bound to each write transaction.
var jobStatements = map[string]string{
	// The webhook deliverer's poll, several times a second.
	"hookDue": `SELECT id, job_id, event, url, body, attempts, next_at, created_at
		FROM job_webhooks WHERE id IN (SELECT min(id) FROM job_webhooks WHERE outcome = '' GROUP BY job_id) AND next_at <= ?
		ORDER BY next_at LIMIT ?`,
	"insert": `INSERT INTO jobs (` + jobColumns + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
	"keyGet": `SELECT job_id, created_at FROM job_idempotency WHERE key = ?`,
	"keyPut": `INSERT INTO job_idempotency (key, job_id, created_at) VALUES (?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET job_id = excluded.job_id, created_at = excluded.created_at`,
	"progress": `UPDATE jobs SET status = ?, attempts = ?, started_at = ?, cold_start = ?, logs = ?
		WHERE id = ? AND status IN ('starting', 'processing') AND lease_owner = ? AND lease_token = ?`,
	// A terminal job keeps no lease.
	"finish": `UPDATE jobs SET status = ?, output = ?, error = ?, logs = ?, attempts = ?, cold_start = ?,
		started_at = ?, completed_at = ?, predict_ns = ?, events = ?, lease_owner = '', lease_until = NULL
		WHERE id = ? AND status IN ('starting', 'processing') AND lease_owner = ? AND lease_token = ?`,
	// SQLite has one writer at a time, so the claim needs no row locks;
	// PostgreSQL adds FOR UPDATE SKIP LOCKED to the subquery.
	"claim": `UPDATE jobs SET lease_owner = ?, lease_until = ?, lease_token = lease_token + 1
		WHERE id IN (SELECT id FROM jobs WHERE status IN ('starting', 'processing')
			AND (lease_owner = '' OR (lease_owner != ? AND (lease_until IS NULL OR lease_until <= ?))) ORDER BY id LIMIT ?)
		RETURNING ` + jobColumns,
	"renew": `UPDATE jobs SET lease_until = ? WHERE lease_owner = ? AND status IN ('starting', 'processing')
		RETURNING id, lease_token, cancel_requested`,
	"release": `UPDATE jobs SET lease_owner = '', lease_until = NULL
		WHERE lease_owner = ? AND status IN ('starting', 'processing')`,
	"cancelRequest": `UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status IN ('starting', 'processing')`,
	"hookAdd":       `INSERT INTO job_webhooks (job_id, event, url, body, attempts, next_at, created_at) VALUES (?,?,?,?,?,?,?)`,
	// A settled delivery keeps its outcome, not its body.
	"hookDone": `UPDATE job_webhooks SET attempts = ?, outcome = ?, status_code = ?, last_error = ?, last_at = ?, body = x''
		WHERE id = ? AND outcome = '' RETURNING job_id`,
	// Keeps a job's newest settled deliveries (the first parameter twice).
	"hookPrune": `DELETE FROM job_webhooks WHERE job_id = ? AND outcome != '' AND id NOT IN
		(SELECT id FROM job_webhooks WHERE job_id = ? AND outcome != '' ORDER BY id DESC LIMIT ?)`,
	"hookRetry": `UPDATE job_webhooks SET attempts = ?, next_at = ?, status_code = ?, last_error = ?, last_at = ? WHERE id = ?`,
	"hookList": `SELECT id, event, url, outcome, attempts, status_code, last_error, last_at, next_at, created_at
		FROM job_webhooks WHERE job_id = ? ORDER BY id DESC LIMIT ?`,
}

// NewJobs prepares the jobs store on db.
func NewJobs(ctx context.Context, db *DB) (*Jobs, error) {
	j := &Jobs{db: db, stmts: make(map[string]*sql.Stmt, len(jobStatements))}
	for name, q := range jobStatements {
		st, err := db.SQL.PrepareContext(ctx, q)
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("prepare jobs statement %s: %w", name, err)
		}
		j.stmts[name] = st
	}
	return j, nil
}

// Close releases the prepared statements (the DB stays open).
func (j *Jobs) Close() error {
	for _, st := range j.stmts {
		st.Close()
	}
	return nil
}

// Update runs fn in one IMMEDIATE transaction.
func (j *Jobs) Update(ctx context.Context, fn func(jobs.Tx) error) error {
	tx, err := j.db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	jt := &jobTx{ctx: ctx, tx: tx, j: j, bound: make(map[string]*sql.Stmt)}
	if err := fn(jt); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

type jobTx struct {
	ctx   context.Context
	tx    *sql.Tx
	j     *Jobs
	bound map[string]*sql.Stmt
}

func (t *jobTx) stmt(name string) *sql.Stmt {
	st, ok := t.bound[name]
	if !ok {
		st = t.tx.StmtContext(t.ctx, t.j.stmts[name])
		t.bound[name] = st
	}
	return st
}

func (t *jobTx) Insert(r *jobs.Record, keySince time.Time) (string, error) {
	if r.IdempotencyKey != "" {
		var id string
		var created int64
		err := t.stmt("keyGet").QueryRowContext(t.ctx, r.IdempotencyKey).Scan(&id, &created)
		switch {
		case err == nil && created >= keySince.UnixNano():
			return id, nil
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return "", err
		}
		if _, err := t.stmt("keyPut").ExecContext(t.ctx, r.IdempotencyKey, r.ID, r.CreatedAt.UnixNano()); err != nil {
			return "", err
		}
	}
	_, err := t.stmt("insert").ExecContext(t.ctx, r.ID, r.Function, r.Version, r.Status, text(r.Input), text(r.Output),
		r.Error, r.Logs, r.Attempts, r.ColdStart, r.CreatedAt.UnixNano(), nanos(r.StartedAt), nanos(r.CompletedAt),
		int64(r.PredictTime), nanos(r.Deadline), r.Webhook, strings.Join(r.WebhookEvents, ","), r.IdempotencyKey,
		text(r.Events), r.DataRemoved, r.Owner, r.Lease.Owner, nanos(r.Lease.Until), r.Lease.Token, r.CancelRequested)
	return "", err
}

func (t *jobTx) Claim(owner string, now, until time.Time, limit int) ([]*jobs.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := t.stmt("claim").QueryContext(t.ctx, owner, until.UnixNano(), owner, now.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	recs, err := scanJobs(rows)
	// RETURNING gives no order: hand them out oldest first.
	slices.SortFunc(recs, func(a, b *jobs.Record) int { return strings.Compare(a.ID, b.ID) })
	return recs, err
}

func (t *jobTx) Renew(owner string, until time.Time) ([]jobs.LeaseState, error) {
	rows, err := t.stmt("renew").QueryContext(t.ctx, until.UnixNano(), owner)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jobs.LeaseState
	for rows.Next() {
		var l jobs.LeaseState
		if err := rows.Scan(&l.ID, &l.Token, &l.CancelRequested); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func (t *jobTx) Release(owner string) error {
	_, err := t.stmt("release").ExecContext(t.ctx, owner)
	return err
}

func (t *jobTx) RequestCancel(id string) (bool, error) {
	res, err := t.stmt("cancelRequest").ExecContext(t.ctx, id)
	return affected(res, err)
}

func (t *jobTx) Progress(r *jobs.Record) (bool, error) {
	res, err := t.stmt("progress").ExecContext(t.ctx, r.Status, r.Attempts, nanos(r.StartedAt), r.ColdStart, r.Logs, r.ID,
		r.Lease.Owner, r.Lease.Token)
	return affected(res, err)
}

func (t *jobTx) Finish(r *jobs.Record) (bool, error) {
	res, err := t.stmt("finish").ExecContext(t.ctx, r.Status, text(r.Output), r.Error, r.Logs, r.Attempts, r.ColdStart,
		nanos(r.StartedAt), nanos(r.CompletedAt), int64(r.PredictTime), text(r.Events), r.ID, r.Lease.Owner, r.Lease.Token)
	return affected(res, err)
}

func (t *jobTx) AddWebhook(w *jobs.Webhook) error {
	_, err := t.stmt("hookAdd").ExecContext(t.ctx, w.JobID, w.Event, w.URL, w.Body, w.Attempts, w.NextAt.UnixNano(), w.CreatedAt.UnixNano())
	return err
}

func (t *jobTx) WebhookDone(id int64, attempts int, outcome string, a jobs.Attempt) error {
	var jobID string
	err := t.stmt("hookDone").QueryRowContext(t.ctx, attempts, outcome, a.StatusCode, a.Error, a.At.UnixNano(), id).Scan(&jobID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // settled already (or swept)
	}
	if err != nil {
		return err
	}
	_, err = t.stmt("hookPrune").ExecContext(t.ctx, jobID, jobID, jobs.DeliveriesKept)
	return err
}

func (t *jobTx) WebhookRetry(id int64, attempts int, next time.Time, a jobs.Attempt) error {
	_, err := t.stmt("hookRetry").ExecContext(t.ctx, attempts, next.UnixNano(), a.StatusCode, a.Error, a.At.UnixNano(), id)
	return err
}

func (t *jobTx) Sweep(purgeBefore, deleteBefore, keysBefore time.Time) (int, error) {
	res, err := t.tx.ExecContext(t.ctx, `UPDATE jobs SET input = NULL, output = NULL, logs = '', events = NULL, data_removed = 1
		WHERE completed_at IS NOT NULL AND completed_at < ? AND data_removed = 0`, purgeBefore.UnixNano())
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	// Settled deliveries go with their job; pending ones are still sent.
	if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM job_webhooks WHERE outcome != '' AND job_id IN
		(SELECT id FROM jobs WHERE completed_at IS NOT NULL AND completed_at < ?)`, deleteBefore.UnixNano()); err != nil {
		return 0, err
	}
	if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM jobs WHERE completed_at IS NOT NULL AND completed_at < ?`, deleteBefore.UnixNano()); err != nil {
		return 0, err
	}
	if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM job_idempotency WHERE created_at < ?`, keysBefore.UnixNano()); err != nil {
		return 0, err
	}
	return int(n), nil
}

// Get returns one job.
func (j *Jobs) Get(ctx context.Context, id string) (*jobs.Record, error) {
	rows, err := j.db.SQL.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	recs, err := scanJobs(rows)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	return recs[0], nil
}

// List returns jobs newest first.
func (j *Jobs) List(ctx context.Context, q jobs.ListQuery) ([]*jobs.Record, error) {
	var where []string
	var args []any
	if q.Before != "" {
		where, args = append(where, "id < ?"), append(args, q.Before)
	}
	if q.Function != "" {
		where, args = append(where, "function = ?"), append(args, q.Function)
	}
	if q.Owner != "" {
		where, args = append(where, "owner = ?"), append(args, q.Owner)
	}
	cols := jobColumns
	if q.MaxField > 0 {
		// octet_length reads a value's size without its content, so a
		// page over jobs with 40 MB inputs loads none of them.
		cols = listColumns
		args = append([]any{q.MaxField, q.MaxField, q.MaxField}, args...)
	}
	query := `SELECT ` + cols + ` FROM jobs`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id DESC LIMIT ?"
	args = append(args, max(q.Limit, 1))
	rows, err := j.db.SQL.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return scanJobs(rows, q.MaxField > 0)
}

// listColumns are jobColumns for a list: input, output and logs only up to
// a size (three parameters), events never, and the three sizes after.
const listColumns = `id, function, version, status,
	CASE WHEN octet_length(input) <= ? THEN input END,
	CASE WHEN octet_length(output) <= ? THEN output END,
	error, CASE WHEN octet_length(logs) <= ? THEN logs ELSE '' END,
	attempts, cold_start, created_at, started_at, completed_at, predict_ns, deadline, webhook, webhook_events,
	idempotency_key, NULL, data_removed, owner, lease_owner, lease_until, lease_token, cancel_requested,
	octet_length(input), octet_length(output), octet_length(logs)`

// Unfinished returns jobs not yet terminal, oldest first (for tools and
// tests: workers find their jobs with Claim).
func (j *Jobs) Unfinished(ctx context.Context) ([]*jobs.Record, error) {
	rows, err := j.db.SQL.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE status IN ('starting', 'processing') ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return scanJobs(rows)
}

// DueWebhooks returns each job's oldest undelivered webhook when it is due.
func (j *Jobs) DueWebhooks(ctx context.Context, now time.Time, limit int) ([]*jobs.Webhook, error) {
	rows, err := j.stmts["hookDue"].QueryContext(ctx, now.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*jobs.Webhook
	for rows.Next() {
		var w jobs.Webhook
		var next, created int64
		if err := rows.Scan(&w.ID, &w.JobID, &w.Event, &w.URL, &w.Body, &w.Attempts, &next, &created); err != nil {
			return nil, err
		}
		w.NextAt, w.CreatedAt = time.Unix(0, next), time.Unix(0, created)
		out = append(out, &w)
	}
	return out, rows.Err()
}

// Deliveries returns jobID's newest limit webhooks, oldest first.
func (j *Jobs) Deliveries(ctx context.Context, jobID string, limit int) ([]*jobs.Delivery, error) {
	rows, err := j.stmts["hookList"].QueryContext(ctx, jobID, max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("read webhook deliveries: %w", err)
	}
	defer rows.Close()
	var out []*jobs.Delivery
	for rows.Next() {
		var d jobs.Delivery
		var last sql.NullInt64
		var next, created int64
		if err := rows.Scan(&d.ID, &d.Event, &d.URL, &d.Outcome, &d.Attempts, &d.StatusCode, &d.LastError, &last, &next, &created); err != nil {
			return nil, fmt.Errorf("read webhook deliveries: %w", err)
		}
		if d.Outcome == "" {
			d.Outcome = api.DeliveryPending
		}
		if last.Valid {
			d.LastAttemptAt = time.Unix(0, last.Int64)
		}
		d.NextAt, d.CreatedAt = time.Unix(0, next), time.Unix(0, created)
		out = append(out, &d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read webhook deliveries: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// WebhookSecret returns the stored secret, storing generate's first.
func (j *Jobs) WebhookSecret(ctx context.Context, generate func() (string, error)) (string, error) {
	return j.secret(ctx, "webhook_secret", generate)
}

// StreamTokenKey returns the key that signs stream tokens (a separate
// key from the webhook secret, which admins may read), storing
// generate's first.
func (j *Jobs) StreamTokenKey(ctx context.Context, generate func() (string, error)) (string, error) {
	return j.secret(ctx, "stream_token_key", generate)
}

// secret returns the jobs setting name, storing generate's value first.
func (j *Jobs) secret(ctx context.Context, name string, generate func() (string, error)) (string, error) {
	var s string
	err := j.db.SQL.QueryRowContext(ctx, `SELECT value FROM jobs_settings WHERE key = ?`, name).Scan(&s)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", err
	}
	gen, err := generate()
	if err != nil {
		return "", err
	}
	// INSERT OR IGNORE then read back: two servers racing agree on one.
	if _, err := j.db.SQL.ExecContext(ctx, `INSERT OR IGNORE INTO jobs_settings (key, value) VALUES (?, ?)`, name, gen); err != nil {
		return "", err
	}
	err = j.db.SQL.QueryRowContext(ctx, `SELECT value FROM jobs_settings WHERE key = ?`, name).Scan(&s)
	return s, err
}

// scanJobs reads jobColumns, or listColumns when sized.
func scanJobs(rows *sql.Rows, sized ...bool) ([]*jobs.Record, error) {
	withSizes := len(sized) > 0 && sized[0]
	defer rows.Close()
	var out []*jobs.Record
	for rows.Next() {
		var r jobs.Record
		var input, output, events sql.NullString
		var created int64
		var started, completed, deadline sql.NullInt64
		var predict int64
		var hookEvents string
		var leaseUntil sql.NullInt64
		dest := []any{&r.ID, &r.Function, &r.Version, &r.Status, &input, &output, &r.Error, &r.Logs,
			&r.Attempts, &r.ColdStart, &created, &started, &completed, &predict, &deadline, &r.Webhook,
			&hookEvents, &r.IdempotencyKey, &events, &r.DataRemoved, &r.Owner,
			&r.Lease.Owner, &leaseUntil, &r.Lease.Token, &r.CancelRequested}
		var inSize, outSize, logSize sql.NullInt64
		if withSizes {
			dest = append(dest, &inSize, &outSize, &logSize)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		for _, f := range []struct {
			name string
			size sql.NullInt64
			got  bool
		}{{"input", inSize, input.Valid}, {"output", outSize, output.Valid}, {"logs", logSize, logSize.Int64 == int64(len(r.Logs))}} {
			if f.size.Valid && !f.got {
				if r.Omitted == nil {
					r.Omitted = map[string]int64{}
				}
				r.Omitted[f.name] = f.size.Int64
			}
		}
		r.CreatedAt = time.Unix(0, created)
		r.StartedAt, r.CompletedAt, r.Deadline = fromNanos(started), fromNanos(completed), fromNanos(deadline)
		r.PredictTime = time.Duration(predict)
		r.Lease.Until = fromNanos(leaseUntil)
		if input.Valid {
			r.Input = []byte(input.String)
		}
		if output.Valid {
			r.Output = []byte(output.String)
		}
		if events.Valid {
			r.Events = []byte(events.String)
		}
		if hookEvents != "" {
			r.WebhookEvents = strings.Split(hookEvents, ",")
		}
		out = append(out, &r)
	}
	return out, rows.Err()
}

func affected(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// text stores JSON as TEXT, nil as NULL.
func text(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64)
}
