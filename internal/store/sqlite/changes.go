package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// changeLogKeep bounds the change log: each write prunes what is older
// than its last changeLogKeep changes. A watcher further behind than that
// is told to read everything again (a Change with no Kind).
const changeLogKeep = 10_000

// DefaultWatchEvery is how often Watch polls the change log by default:
// a write through another handle shows within about this long.
const DefaultWatchEvery = 250 * time.Millisecond

// watchBatch bounds the rows one poll reads; the next poll reads on.
const watchBatch = 500

// logChange records a write in tx, which must be the write's own
// transaction: the change commits, or rolls back, with it.
func logChange(ctx context.Context, tx *sql.Tx, kind api.ChangeKind, name string, deleted bool, version int64) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO changes(kind, name, deleted, version) VALUES (?, ?, ?, ?)`,
		string(kind), name, deleted, version)
	if err != nil {
		return fmt.Errorf("log %s change %q: %w", kind, name, err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("log %s change %q: %w", kind, name, err)
	}
	if seq > changeLogKeep {
		if _, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE seq <= ?`, seq-changeLogKeep); err != nil {
			return fmt.Errorf("prune change log: %w", err)
		}
	}
	return nil
}

// ChangeHead returns the seq of the last logged change (0 when none). A
// reader takes it, then loads the current state, then watches after it:
// a write between the two shows up as a change it already has, never as
// one it missed.
func (s *DB) ChangeHead(ctx context.Context) (int64, error) {
	var seq int64
	if err := s.SQL.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM changes`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read change log head: %w", err)
	}
	return seq, nil
}

// WatchOptions tune Watch.
type WatchOptions struct {
	// Every is the poll interval; 0 takes DefaultWatchEvery.
	Every time.Duration
	// Logger receives failed polls (retried at the next one); nil
	// discards them.
	Logger *slog.Logger
}

// Watch reports, in seq order, every change logged after seq after, by
// this handle or any other on the same database file, until ctx ends;
// then the channel is closed. One goroutine polls the log every
// opts.Every and is the channel's only sender; it stops when ctx ends,
// also while a slow reader holds it up. The first poll runs before Watch
// returns, so a store without a readable log fails here. A failed later
// poll is logged and retried.
//
// PostgreSQL would fill the same contract with LISTEN/NOTIFY: a trigger
// (or the writer) NOTIFYs after inserting into the same table, and the
// notification only wakes the reader, which still reads "seq > after"
// (a notification can be lost on reconnect; the log cannot).
func (s *DB) Watch(ctx context.Context, after int64, opts WatchOptions) (<-chan api.Change, error) {
	if after < 0 {
		return nil, fmt.Errorf("watch: after must be ≥ 0 (got %d)", after)
	}
	if opts.Every <= 0 {
		opts.Every = DefaultWatchEvery
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pending, err := s.changesAfter(ctx, after)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	ch := make(chan api.Change)
	go func() {
		defer close(ch)
		t := time.NewTicker(opts.Every)
		defer t.Stop()
		for {
			for _, c := range pending {
				select {
				case ch <- c:
					after = c.Seq
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var err error
			if pending, err = s.changesAfter(ctx, after); err != nil {
				if ctx.Err() != nil {
					return
				}
				logger.Warn("polling the change log failed; retrying", "after", after, "err", err)
			}
		}
	}()
	return ch, nil
}

// changesAfter reads up to watchBatch changes after seq after. When the
// log was pruned past after, a Change with no Kind, at the seq just
// before the oldest kept, comes first: the reader must read everything.
func (s *DB) changesAfter(ctx context.Context, after int64) ([]api.Change, error) {
	rows, err := s.SQL.QueryContext(ctx, `SELECT seq, kind, name, deleted, version FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`, after, watchBatch)
	if err != nil {
		return nil, fmt.Errorf("read change log: %w", err)
	}
	defer rows.Close()
	var out []api.Change
	for rows.Next() {
		var c api.Change
		var kind string
		if err := rows.Scan(&c.Seq, &kind, &c.Name, &c.Deleted, &c.Version); err != nil {
			return nil, fmt.Errorf("read change log: %w", err)
		}
		c.Kind = api.ChangeKind(kind)
		if len(out) == 0 && c.Seq > after+1 {
			out = append(out, api.Change{Seq: c.Seq - 1})
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read change log: %w", err)
	}
	return out, nil
}
