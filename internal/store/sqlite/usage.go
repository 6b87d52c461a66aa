package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/internal/metering"
)

// UsageOptions configure the usage store.
type UsageOptions struct {
	// KeepRequests is how long per-request records are kept (default 7
	// days); the hourly and daily rollups are kept.
	KeepRequests time.Duration
	// MaxRequests bounds the per-request records kept: each write drops
	// those beyond the newest MaxRequests (default 1,000,000; at most
	// PruneBatch of them per write), so a busy function cannot fill the
	// disk within KeepRequests. Below 0 none are kept: records passed in
	// are not stored, and the first write drops any stored before.
	MaxRequests int
	// PruneBatch bounds the records one write drops for MaxRequests
	// (default 100,000), so that the first write over a large backlog (a
	// store from before the bound, or a bound lowered) does not hold the
	// store's locks for minutes; later writes that carry records drop the
	// rest. A flush adds at most as many (MaxPendingRequests, after an
	// outage) and usually far fewer, so the table converges to the bound.
	PruneBatch int
}

// Usage is the metering.Store on this database.
type Usage struct {
	db   *DB
	opts UsageOptions
	// purged is set once a write with MaxRequests below 0 has dropped the
	// records stored before: later writes need not.
	purged atomic.Bool
}

var _ metering.Store = (*Usage)(nil)

// NewUsage returns the usage store on db.
func NewUsage(db *DB, opts UsageOptions) *Usage {
	if opts.KeepRequests <= 0 {
		opts.KeepRequests = 7 * 24 * time.Hour
	}
	if opts.MaxRequests == 0 {
		opts.MaxRequests = 1_000_000
	}
	if opts.PruneBatch <= 0 {
		opts.PruneBatch = 100_000
	}
	return &Usage{db: db, opts: opts}
}

const usageColumns = `loading_s, busy_s, idle_s, gpu_s, cost_usd, starts, requests, errors, cold_starts,
	duration_s, queue_s, attributed_usd, busy_periods`

// usageUpsert adds a delta to a rollup row, creating it if needed.
func usageUpsert(table string) string {
	var set []string
	for _, c := range strings.Split(usageColumns, ",") {
		c = strings.TrimSpace(c)
		set = append(set, c+" = "+c+" + excluded."+c)
	}
	return `INSERT INTO ` + table + ` (function, hardware, start, ` + usageColumns + `)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(function, hardware, start) DO UPDATE SET ` + strings.Join(set, ", ")
}

var (
	upsertHourly = usageUpsert("usage_hourly")
	upsertDaily  = usageUpsert("usage_daily")
)

// AddUsage adds hourly deltas to the hourly and daily rollups and appends
// request records, in one transaction; then it drops request records older
// than KeepRequests and those beyond the newest MaxRequests.
func (u *Usage) AddUsage(ctx context.Context, buckets []metering.Bucket, reqs []metering.Request) error {
	tx, err := u.db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("usage: begin: %w", err)
	}
	defer tx.Rollback() // no-op after Commit
	hourly, err := tx.PrepareContext(ctx, upsertHourly)
	if err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	defer hourly.Close()
	daily, err := tx.PrepareContext(ctx, upsertDaily)
	if err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	defer daily.Close()
	for _, b := range buckets {
		args := func(start time.Time) []any {
			return []any{b.Function, b.Hardware, start.Unix(),
				b.Seconds.Loading, b.Seconds.Busy, b.Seconds.Idle, b.GPUSeconds, b.CostUSD,
				b.Starts, b.Requests, b.Errors, b.ColdStarts, b.DurationSeconds, b.QueueSeconds, b.AttributedUSD, b.BusyPeriods}
		}
		if _, err := hourly.ExecContext(ctx, args(metering.Truncate(b.Start, metering.ByHour))...); err != nil {
			return fmt.Errorf("usage: hourly rollup: %w", err)
		}
		if _, err := daily.ExecContext(ctx, args(metering.Truncate(b.Start, metering.ByDay))...); err != nil {
			return fmt.Errorf("usage: daily rollup: %w", err)
		}
	}
	purge := u.opts.MaxRequests < 0 && !u.purged.Load()
	if u.opts.MaxRequests < 0 {
		reqs = nil
	}
	if purge {
		if _, err := tx.ExecContext(ctx, `DELETE FROM usage_requests`); err != nil {
			return fmt.Errorf("usage: request records off: %w", err)
		}
	}
	if len(reqs) > 0 {
		if err := insertRequests(ctx, tx, reqs); err != nil {
			return err
		}
		var latest time.Time
		for _, r := range reqs {
			if r.At.After(latest) {
				latest = r.At
			}
		}
		// Retention rides on writes, measured from the newest record: no
		// clock and no extra goroutine.
		if _, err := tx.ExecContext(ctx, `DELETE FROM usage_requests WHERE at < ?`,
			latest.Add(-u.opts.KeepRequests).UnixNano()); err != nil {
			return fmt.Errorf("usage: request retention: %w", err)
		}
		// The count bound: ids grow with each insert (the rowid is the
		// largest plus one, and only the oldest are ever deleted), so the
		// newest MaxRequests are the ids within MaxRequests of the largest.
		// One write drops at most PruneBatch of the rest, the oldest.
		if _, err := tx.ExecContext(ctx, `DELETE FROM usage_requests WHERE id <= min(
			(SELECT max(id) FROM usage_requests) - ?, (SELECT min(id) FROM usage_requests) + ? - 1)`,
			u.opts.MaxRequests, u.opts.PruneBatch); err != nil {
			return fmt.Errorf("usage: request bound: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("usage: commit: %w", err)
	}
	if purge {
		u.purged.Store(true)
	}
	return nil
}

// requestsPerInsert is how many request records one INSERT carries: at
// thousands of calls a second, one statement per record cost more than
// the call's proxying (BenchmarkAddUsageRequests). 100 rows × 8 values
// stay far below SQLite's bound on variables per statement.
const requestsPerInsert = 100

const insertRequestsHead = `INSERT INTO usage_requests
	(function, hardware, at, status, duration_ns, queue_ns, cold, cost_usd) VALUES `

// insertRequests stores reqs in multi-row INSERTs of requestsPerInsert
// rows, prepared once per flush, and one for the remainder.
func insertRequests(ctx context.Context, tx *sql.Tx, reqs []metering.Request) error {
	stmt := func(rows int) string {
		return insertRequestsHead + strings.TrimSuffix(strings.Repeat("(?,?,?,?,?,?,?,?),", rows), ",")
	}
	var full *sql.Stmt
	args := make([]any, 0, 8*min(len(reqs), requestsPerInsert))
	for len(reqs) > 0 {
		chunk := reqs[:min(len(reqs), requestsPerInsert)]
		reqs = reqs[len(chunk):]
		args = args[:0]
		for _, r := range chunk {
			args = append(args, r.Function, r.Hardware, r.At.UnixNano(), r.Status,
				int64(r.Duration), int64(r.Queue), r.Cold, r.CostUSD)
		}
		var err error
		if len(chunk) == requestsPerInsert {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, stmt(requestsPerInsert)); err != nil {
					return fmt.Errorf("usage: %w", err)
				}
				defer full.Close()
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, stmt(len(chunk)), args...)
		}
		if err != nil {
			return fmt.Errorf("usage: request records: %w", err)
		}
	}
	return nil
}

// Usage returns the rollups q selects, ordered by period start, function
// and hardware.
func (u *Usage) Usage(ctx context.Context, q metering.Query) ([]metering.Bucket, error) {
	by, err := metering.ParseBy(q.By)
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	table := "usage_hourly"
	if by == metering.ByDay {
		table = "usage_daily"
	}
	var where []string
	var args []any
	if q.Function != "" {
		where, args = append(where, "function = ?"), append(args, q.Function)
	}
	if !q.From.IsZero() {
		// A period that starts before From but overlaps it is included.
		where, args = append(where, "start >= ?"), append(args, metering.Truncate(q.From, by).Unix())
	}
	if !q.To.IsZero() {
		where, args = append(where, "start < ?"), append(args, q.To.Unix())
	}
	query := `SELECT function, hardware, start, ` + usageColumns + ` FROM ` + table
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY start, function, hardware"
	rows, err := u.db.SQL.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	defer rows.Close()
	var out []metering.Bucket
	for rows.Next() {
		var b metering.Bucket
		var start int64
		if err := rows.Scan(&b.Function, &b.Hardware, &start,
			&b.Seconds.Loading, &b.Seconds.Busy, &b.Seconds.Idle, &b.GPUSeconds, &b.CostUSD,
			&b.Starts, &b.Requests, &b.Errors, &b.ColdStarts, &b.DurationSeconds, &b.QueueSeconds, &b.AttributedUSD, &b.BusyPeriods); err != nil {
			return nil, fmt.Errorf("usage: %w", err)
		}
		b.Start = time.Unix(start, 0).UTC()
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	return out, nil
}

// Requests returns up to limit request records of fn (all functions when
// empty) that ended in [from, to), newest first.
func (u *Usage) Requests(ctx context.Context, fn string, from, to time.Time, limit int) ([]metering.Request, error) {
	query := `SELECT function, hardware, at, status, duration_ns, queue_ns, cold, cost_usd FROM usage_requests WHERE at >= ? AND at < ?`
	args := []any{from.UnixNano(), to.UnixNano()}
	if fn != "" {
		query += " AND function = ?"
		args = append(args, fn)
	}
	query += " ORDER BY at DESC LIMIT ?"
	args = append(args, limit)
	rows, err := u.db.SQL.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("usage: requests: %w", err)
	}
	defer rows.Close()
	var out []metering.Request
	for rows.Next() {
		var r metering.Request
		var at, d, q int64
		if err := rows.Scan(&r.Function, &r.Hardware, &at, &r.Status, &d, &q, &r.Cold, &r.CostUSD); err != nil {
			return nil, fmt.Errorf("usage: requests: %w", err)
		}
		r.At, r.Duration, r.Queue = time.Unix(0, at).UTC(), time.Duration(d), time.Duration(q)
		out = append(out, r)
	}
	return out, rows.Err()
}
