package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ember-run/ember/internal/api"
)

// changeLogKeep bounds the change log: each write prunes what is older
// than its last changeLogKeep changes. A watcher further behind than that
// is told to read everything again (a Change with no Kind).
const changeLogKeep = 10_000

// channel is the NOTIFY channel of the change log.
const channel = "ember_changes"

// DefaultWatchEvery is how often Watch reads the log when no notification
// woke it: notifications are lost while the listening connection is down,
// so this bounds how late a change can show after a reconnect.
const DefaultWatchEvery = 2 * time.Second

// watchBatch bounds the rows one read takes; the next read goes on.
const watchBatch = 500

// logChange records a write in tx, the write's own transaction. The
// change-log lock, held to commit, serialises writers so seq order is
// commit order (an identity value is drawn at insert, not at commit: two
// writers could otherwise commit 8 before 7, and a reader that saw 8 would
// skip 7). pg_notify is delivered at commit, and only then.
func logChange(ctx context.Context, tx pgx.Tx, kind api.ChangeKind, name string, deleted bool, version int64) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockChanges); err != nil {
		return fmt.Errorf("log %s change %q: %w", kind, name, err)
	}
	var seq int64
	if err := tx.QueryRow(ctx, `INSERT INTO changes(kind, name, deleted, version) VALUES ($1, $2, $3, $4) RETURNING seq`,
		string(kind), name, deleted, version).Scan(&seq); err != nil {
		return fmt.Errorf("log %s change %q: %w", kind, name, err)
	}
	if seq > changeLogKeep {
		if _, err := tx.Exec(ctx, `DELETE FROM changes WHERE seq <= $1`, seq-changeLogKeep); err != nil {
			return fmt.Errorf("prune change log: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, fmt.Sprint(seq)); err != nil {
		return fmt.Errorf("notify %s change %q: %w", kind, name, err)
	}
	return nil
}

// ChangeHead returns the seq of the last logged change (0 when none).
func (db *DB) ChangeHead(ctx context.Context) (int64, error) {
	var seq int64
	if err := db.Pool.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM changes`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read change log head: %w", err)
	}
	return seq, nil
}

// WatchOptions tune Watch.
type WatchOptions struct {
	// Every is how often the log is read without a notification; 0
	// takes DefaultWatchEvery.
	Every time.Duration
	// Logger receives failed reads and lost connections (retried);
	// nil discards them.
	Logger *slog.Logger
}

// Watch reports, in seq order, every change logged after seq after, by
// any node on the database, until ctx ends; then the channel is closed.
// One goroutine, the channel's only sender, holds a connection of its own
// that LISTENs on the change channel; a notification (or opts.Every
// without one) makes it read "seq > last" from the log, so a lost
// notification delays a change but never loses it. It stops when ctx
// ends, also while a slow reader holds it up. The first read runs before
// Watch returns, so a store without a readable log fails here.
func (db *DB) Watch(ctx context.Context, after int64, opts WatchOptions) (<-chan api.Change, error) {
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
	conn, err := db.listen(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	// Listening before the first read: a change committed between the
	// two is read now or wakes the next read.
	pending, err := db.changesAfter(ctx, after)
	if err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("watch: %w", err)
	}
	ch := make(chan api.Change)
	go func() {
		defer close(ch)
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for {
			for _, c := range pending {
				select {
				case ch <- c:
					after = c.Seq
				case <-ctx.Done():
					return
				}
			}
			pending = nil
			if conn == nil {
				if conn, err = db.listen(ctx); err != nil {
					if ctx.Err() != nil {
						return
					}
					logger.Warn("listening for store changes failed; reading the log every interval until it is back", "every", opts.Every, "err", err)
				}
			}
			if err := wait(ctx, conn, opts.Every); err != nil {
				if ctx.Err() != nil {
					return
				}
				logger.Warn("the store's change notifications were cut; reconnecting", "err", err)
				conn.Close(context.Background())
				conn = nil
			}
			if pending, err = db.changesAfter(ctx, after); err != nil {
				if ctx.Err() != nil {
					return
				}
				logger.Warn("reading the change log failed; retrying", "after", after, "err", err)
			}
		}
	}()
	return ch, nil
}

// listen opens a connection of its own (not the pool's: a LISTEN lives on
// one session) and LISTENs on the change channel.
func (db *DB) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, db.cfg.ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("connect to listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("listen: %w", err)
	}
	return conn, nil
}

// wait returns after a notification, or after every without one; with no
// connection it only waits. An error means the connection is broken.
func wait(ctx context.Context, conn *pgx.Conn, every time.Duration) error {
	if conn == nil {
		t := time.NewTimer(every)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, every)
	defer cancel()
	_, err := conn.WaitForNotification(wctx)
	if err != nil && wctx.Err() != nil && !conn.IsClosed() {
		// The timeout (or ctx): pgx's deadline handler cuts the read
		// and keeps the connection.
		return nil
	}
	if err == nil && conn.IsClosed() {
		return errors.New("connection closed")
	}
	return err
}

// changesAfter reads up to watchBatch changes after seq after. When the
// log was pruned past after, a Change with no Kind, at the seq just
// before the oldest kept, comes first: the reader must read everything.
func (db *DB) changesAfter(ctx context.Context, after int64) ([]api.Change, error) {
	rows, err := db.Pool.Query(ctx, `SELECT seq, kind, name, deleted, version FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2`, after, watchBatch)
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
