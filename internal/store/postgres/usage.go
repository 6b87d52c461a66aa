package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

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

// Usage is the metering.Store on this database. Every node adds its own
// deltas; the rollups are the sum over nodes.
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

var usageColumnList = []string{"loading_s", "busy_s", "idle_s", "gpu_s", "cost_usd", "starts", "requests", "errors",
	"cold_starts", "duration_s", "queue_s", "attributed_usd", "busy_periods"}

var usageColumns = strings.Join(usageColumnList, ", ")

// usageUpsert adds a delta to a rollup row, creating it if needed; the
// row lock makes concurrent flushes from several nodes add up.
func usageUpsert(table string) string {
	var set, params []string
	for i, c := range usageColumnList {
		set = append(set, c+" = t."+c+" + excluded."+c)
		params = append(params, fmt.Sprintf("$%d", i+4))
	}
	return `INSERT INTO ` + table + ` AS t (function, hardware, start, ` + usageColumns + `)
		VALUES ($1, $2, $3, ` + strings.Join(params, ", ") + `)
		ON CONFLICT (function, hardware, start) DO UPDATE SET ` + strings.Join(set, ", ")
}

var (
	upsertHourly = usageUpsert("usage_hourly")
	upsertDaily  = usageUpsert("usage_daily")
)

// AddUsage adds hourly deltas to the hourly and daily rollups and appends
// request records in one transaction (one round trip, batched); then it
// drops request records older than KeepRequests and those beyond the
// newest MaxRequests.
func (u *Usage) AddUsage(ctx context.Context, buckets []metering.Bucket, reqs []metering.Request) error {
	err := pgx.BeginFunc(ctx, u.db.Pool, func(tx pgx.Tx) error {
		var b pgx.Batch
		for _, k := range buckets {
			args := func(start time.Time) []any {
				return []any{k.Function, k.Hardware, start.Unix(),
					k.Seconds.Loading, k.Seconds.Busy, k.Seconds.Idle, k.GPUSeconds, k.CostUSD,
					k.Starts, k.Requests, k.Errors, k.ColdStarts, k.DurationSeconds, k.QueueSeconds, k.AttributedUSD, k.BusyPeriods}
			}
			b.Queue(upsertHourly, args(metering.Truncate(k.Start, metering.ByHour))...)
			b.Queue(upsertDaily, args(metering.Truncate(k.Start, metering.ByDay))...)
		}
		if u.opts.MaxRequests < 0 {
			reqs = nil
			if !u.purged.Load() {
				b.Queue(`DELETE FROM usage_requests`)
			}
		}
		var latest time.Time
		for _, r := range reqs {
			b.Queue(`INSERT INTO usage_requests (function, hardware, at, status, duration_ns, queue_ns, cold, cost_usd)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, r.Function, r.Hardware, r.At.UnixNano(), r.Status,
				int64(r.Duration), int64(r.Queue), r.Cold, r.CostUSD)
			if r.At.After(latest) {
				latest = r.At
			}
		}
		if len(reqs) > 0 {
			// Retention rides on writes, measured from the newest record.
			b.Queue(`DELETE FROM usage_requests WHERE at < $1`, latest.Add(-u.opts.KeepRequests).UnixNano())
			// The count bound, by identity: ids grow with each insert, so
			// the newest MaxRequests are within MaxRequests of the largest.
			// A rolled-back insert leaves a gap (PostgreSQL does not reuse
			// the ids), so fewer are kept until the gap ages out; counting
			// the rows instead would scan MaxRequests index entries per
			// write. One write drops at most PruneBatch, the oldest.
			b.Queue(`DELETE FROM usage_requests WHERE id <= LEAST(
				(SELECT max(id) FROM usage_requests) - $1, (SELECT min(id) FROM usage_requests) + $2 - 1)`,
				int64(u.opts.MaxRequests), int64(u.opts.PruneBatch))
		}
		if b.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	if u.opts.MaxRequests < 0 {
		u.purged.Store(true)
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
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.Function != "" {
		where = append(where, "function = "+arg(q.Function))
	}
	if !q.From.IsZero() {
		// A period that starts before From but overlaps it is included.
		where = append(where, "start >= "+arg(metering.Truncate(q.From, by).Unix()))
	}
	if !q.To.IsZero() {
		where = append(where, "start < "+arg(q.To.Unix()))
	}
	query := `SELECT function, hardware, start, ` + usageColumns + ` FROM ` + table
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY start, function, hardware"
	rows, err := u.db.Pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (metering.Bucket, error) {
		var b metering.Bucket
		var start int64
		err := r.Scan(&b.Function, &b.Hardware, &start,
			&b.Seconds.Loading, &b.Seconds.Busy, &b.Seconds.Idle, &b.GPUSeconds, &b.CostUSD,
			&b.Starts, &b.Requests, &b.Errors, &b.ColdStarts, &b.DurationSeconds, &b.QueueSeconds, &b.AttributedUSD, &b.BusyPeriods)
		b.Start = time.Unix(start, 0).UTC()
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	return out, nil
}

// Requests returns up to limit request records of fn (all functions when
// empty) that ended in [from, to), newest first.
func (u *Usage) Requests(ctx context.Context, fn string, from, to time.Time, limit int) ([]metering.Request, error) {
	query := `SELECT function, hardware, at, status, duration_ns, queue_ns, cold, cost_usd FROM usage_requests WHERE at >= $1 AND at < $2`
	args := []any{from.UnixNano(), to.UnixNano()}
	if fn != "" {
		query += " AND function = $3"
		args = append(args, fn)
	}
	query += fmt.Sprintf(" ORDER BY at DESC LIMIT $%d", len(args)+1)
	args = append(args, limit)
	rows, err := u.db.Pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("usage: requests: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (metering.Request, error) {
		var m metering.Request
		var at, d, q int64
		err := r.Scan(&m.Function, &m.Hardware, &at, &m.Status, &d, &q, &m.Cold, &m.CostUSD)
		m.At, m.Duration, m.Queue = time.Unix(0, at).UTC(), time.Duration(d), time.Duration(q)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("usage: requests: %w", err)
	}
	return out, nil
}
