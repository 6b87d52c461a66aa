// Package postgres is Ember's shared store: PostgreSQL through pgx, for
// several Ember nodes on one database. It implements the same store
// interfaces as store/sqlite (the conformance suite in store/storetest runs
// against both) and adds what several writers need: migrations under an
// advisory lock, a change log whose order is its commit order with
// LISTEN/NOTIFY to wake readers, and job claims with FOR UPDATE SKIP LOCKED.
// Only app imports it.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrSchemaNewer is returned by Open when the database holds migrations
// this binary does not know: a newer Ember migrated it, and this one
// would misread it.
var ErrSchemaNewer = errors.New("the database schema is newer than this binary")

// Advisory lock keys (pg_advisory_xact_lock): constants shared by every
// node, so the same lock is taken whatever the node.
const (
	lockMigrate int64 = 0x656d626572_01 // "ember" 1
	lockChanges int64 = 0x656d626572_02 // "ember" 2
)

// defaultMaxConns sizes the pool when neither Options nor the DSN's
// pool_max_conns does (pgx's own default, max(4, CPUs), queues job polls
// and group commits behind each other on small machines).
const defaultMaxConns = 16

// connectTimeout bounds the first connection when the DSN sets none, so an
// unreachable database fails start-up in seconds instead of hanging.
const connectTimeout = 10 * time.Second

// DB is a pool of connections to one PostgreSQL database.
type DB struct {
	Pool *pgxpool.Pool
	// cfg is the parsed DSN, for Watch's own listening connection.
	cfg *pgxpool.Config
}

// Options tune Open.
type Options struct {
	// MaxConns bounds the pool (default: the DSN's pool_max_conns, else
	// 16). The change watch holds one more connection of its own.
	MaxConns int32
}

// Open connects to the database dsn names (postgres:// or postgresql://
// URL, or key=value form) and applies pending migrations. The error
// names the server and database, never the password.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store: the DSN does not parse (expected postgres://user:password@host:port/database?sslmode=…)%s", parseDetail(dsn, err))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(dsn, "pool_max_conns"):
		cfg.MaxConns = defaultMaxConns
	}
	where := Where(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store %s: %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL at %s is unreachable: %w", where, err)
	}
	db := &DB{Pool: pool, cfg: cfg}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL store %s: %w", where, err)
	}
	return db, nil
}

// parseDetail is the reason pgx gives for a DSN that does not parse,
// unless it quotes the DSN's user info (url.Parse errors quote the whole
// URL, password included): then nothing.
func parseDetail(dsn string, err error) string {
	inner := errors.Unwrap(err)
	if inner == nil {
		return ""
	}
	msg := inner.Error()
	if _, rest, ok := strings.Cut(dsn, "://"); ok {
		if user, _, ok := strings.Cut(rest, "@"); ok && user != "" && strings.Contains(msg, user) {
			return ""
		}
	}
	return ": " + msg
}

// Where names the server and database of cfg (user@host:port/db) for
// logs and errors; it never includes the password.
func Where(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	host := c.Host
	if !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, strconv.Itoa(int(c.Port)))
	} else {
		host += ":" + strconv.Itoa(int(c.Port))
	}
	return c.User + "@" + host + "/" + c.Database
}

// Redact returns dsn as Where names it, or "(unparsable DSN)": for logs.
func Redact(dsn string) string {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return Where(cfg)
}

// Close closes the pool.
func (db *DB) Close() error {
	db.Pool.Close()
	return nil
}

// migrate applies every embedded migrations/NNN_name.sql not yet recorded,
// in name order, all in one transaction under an advisory lock: nodes that
// start together take turns, and the later ones find nothing to do. A
// recorded migration this binary lacks fails with ErrSchemaNewer.
func (db *DB) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	slices.Sort(names)
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockMigrate); err != nil {
			return fmt.Errorf("migrate: take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT name FROM schema_migrations`)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		known := map[string]bool{}
		for _, n := range names {
			known[strings.TrimSuffix(path.Base(n), ".sql")] = true
		}
		var unknown []string
		for _, a := range applied {
			if !known[a] {
				unknown = append(unknown, a)
			}
		}
		if len(unknown) > 0 {
			slices.Sort(unknown)
			return fmt.Errorf("%w: it has migration(s) %s, which this binary does not know; run the newer Ember, or restore a backup from before it", ErrSchemaNewer, strings.Join(unknown, ", "))
		}
		for _, name := range names {
			base := strings.TrimSuffix(path.Base(name), ".sql")
			if slices.Contains(applied, base) {
				continue
			}
			body, err := migrations.ReadFile(name)
			if err != nil {
				return fmt.Errorf("migrate %s: %w", base, err)
			}
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return fmt.Errorf("migrate %s: %w", base, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations(name) VALUES ($1)`, base); err != nil {
				return fmt.Errorf("migrate %s: %w", base, err)
			}
		}
		return nil
	})
}
