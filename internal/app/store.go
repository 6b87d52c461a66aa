package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/controller"
	"github.com/ember-run/ember/internal/gateway"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/metering"
	"github.com/ember-run/ember/internal/routing"
	"github.com/ember-run/ember/internal/store/postgres"
	"github.com/ember-run/ember/internal/store/sqlite"
)

// records is the store of functions, routes, keys, secrets, keep-warm
// state and the change log, as the domain packages see it.
type records interface {
	controller.Store
	controller.KeepWarmStore
	routing.Store
	auth.KeyEnsurer
	gateway.SecretStore
	gateway.FunctionVersions
	ChangeHead(ctx context.Context) (int64, error)
}

// jobStore is the jobs store plus the stream-token key kept beside it.
type jobStore interface {
	jobs.Store
	StreamTokenKey(ctx context.Context, generate func() (string, error)) (string, error)
}

// stores is the store adapter --store picked.
type stores struct {
	records records
	jobs    jobStore
	usage   metering.Store
	// watch reports changes after seq after, reading the log at least
	// every poll.
	watch func(ctx context.Context, after int64, poll time.Duration, logger *slog.Logger) (<-chan api.Change, error)
	// kind is sqlite or postgres; where names the file or the server and
	// database, never a password.
	kind, where string
	// workerID names this server's job leases: unique among the servers
	// sharing the store, and the same across restarts.
	workerID string
	close    func()
}

// openStore opens the store cfg.Store names (validated by cfg.Validate).
func openStore(ctx context.Context, cfg config.Config) (*stores, error) {
	kind, where, err := cfg.StoreKind()
	if err != nil {
		return nil, err
	}
	switch kind {
	case "postgres":
		db, err := postgres.Open(ctx, where, postgres.Options{})
		if err != nil {
			return nil, err
		}
		return &stores{records: db, jobs: postgres.NewJobs(db), usage: postgres.NewUsage(db, postgres.UsageOptions{MaxRequests: maxRequests(cfg)}),
			watch: func(ctx context.Context, after int64, poll time.Duration, logger *slog.Logger) (<-chan api.Change, error) {
				return db.Watch(ctx, after, postgres.WatchOptions{Every: poll, Logger: logger})
			},
			kind: kind, where: postgres.Redact(where), workerID: workerID(cfg.DataDir),
			close: func() { db.Close() }}, nil
	default:
		db, err := sqlite.Open(ctx, where)
		if err != nil {
			return nil, err
		}
		js, err := sqlite.NewJobs(ctx, db)
		if err != nil {
			db.Close()
			return nil, err
		}
		return &stores{records: db, jobs: js, usage: sqlite.NewUsage(db, sqlite.UsageOptions{MaxRequests: maxRequests(cfg)}),
			watch: func(ctx context.Context, after int64, poll time.Duration, logger *slog.Logger) (<-chan api.Change, error) {
				return db.Watch(ctx, after, sqlite.WatchOptions{Every: poll, Logger: logger})
			},
			// One server per database file: the host name, as before.
			kind: kind, where: where,
			close: func() { js.Close(); db.Close() }}, nil
	}
}

// workerID is the host name and a digest of the data dir's absolute path:
// two servers on one host (different data dirs) differ, and a restarted
// server takes back at once the leases its crashed run held.
func workerID(dataDir string) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "ember"
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return fmt.Sprintf("%s/%s", host, hex.EncodeToString(sum[:4]))
}

// maxRequests is the usage store's bound on request records: the
// server's, where 0 keeps none (the stores' own 0 is their default).
func maxRequests(cfg config.Config) int {
	if cfg.RequestRecords == 0 {
		return -1
	}
	return cfg.RequestRecords
}
