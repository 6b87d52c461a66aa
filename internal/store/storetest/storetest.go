// Package storetest is the conformance suite of Ember's stores: one set of
// tests that every store adapter (store/sqlite, store/postgres) runs
// against itself, so the adapters cannot drift apart. It only uses the
// store interfaces the domain packages declare, plus the few methods app
// needs beside them.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/metering"
)

// Records is the store of functions, routes, secrets, keys, keep-warm
// state and the change log: the methods of controller.Store,
// controller.KeepWarmStore, routing.Store, gateway.SecretStore and
// auth.KeyStore, spelled out (only app may import controller and routing).
type Records interface {
	auth.KeyEnsurer
	PutFunction(ctx context.Context, name string, specJSON []byte, now time.Time) (api.Function, bool, error)
	DeleteFunction(ctx context.Context, name string) (bool, error)
	ListFunctions(ctx context.Context) ([]api.Function, error)
	FunctionVersions(ctx context.Context, name string, limit int) ([]api.FunctionVersion, error)
	LoadKeepWarm(ctx context.Context) (map[string][]byte, error)
	SaveKeepWarm(ctx context.Context, fn string, state []byte, now time.Time) error
	PutRoute(ctx context.Context, name string, specJSON []byte, now time.Time) (api.Route, bool, error)
	DeleteRoute(ctx context.Context, name string) (bool, error)
	ListRoutes(ctx context.Context) ([]api.Route, error)
	PutSecret(ctx context.Context, name string, value []byte, now time.Time) (api.Secret, bool, error)
	SecretValue(ctx context.Context, name string) ([]byte, bool, error)
	DeleteSecret(ctx context.Context, name string) (bool, error)
	ListSecrets(ctx context.Context) ([]api.Secret, error)
	Route(ctx context.Context, name string) (api.Route, error)
	ChangeHead(ctx context.Context) (int64, error)
}

// Jobs is the jobs store with the extras app and tools use.
type Jobs interface {
	jobs.Store
	Unfinished(ctx context.Context) ([]*jobs.Record, error)
	StreamTokenKey(ctx context.Context, generate func() (string, error)) (string, error)
}

// Usage is the metering store with request records.
type Usage interface {
	metering.Store
	Requests(ctx context.Context, fn string, from, to time.Time, limit int) ([]metering.Request, error)
}

// UsageMaxRequests is the bound on request records a Handle's Usage must
// be built with (the adapters' UsageOptions.MaxRequests), so the suite can
// see the oldest dropped.
const UsageMaxRequests = 5

// Handle is one open store: what one Ember node holds.
type Handle struct {
	Records Records
	Jobs    Jobs
	Usage   Usage // keeping at most UsageMaxRequests request records
	// UsageWith returns another usage store on the same database, built
	// with the adapter's UsageOptions.MaxRequests and PruneBatch.
	UsageWith func(maxRequests, pruneBatch int) Usage
	// Watch reports changes after seq after until ctx ends (the
	// adapter's Watch with a short poll interval for tests).
	Watch func(ctx context.Context, after int64) (<-chan api.Change, error)
}

// Open returns two handles on one fresh, empty database, as two nodes
// would hold them; both are closed when the test ends.
type Open func(t *testing.T) (a, b Handle)

// Run runs the whole suite, each test on a database of its own.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		run  func(t *testing.T, a, b Handle)
	}{
		{"Functions", testFunctions},
		{"FunctionVersions", testFunctionVersions},
		{"Routes", testRoutes},
		{"Secrets", testSecrets},
		{"Keys", testKeys},
		{"EnsureKeyRace", testEnsureKeyRace},
		{"KeepWarm", testKeepWarm},
		{"Usage", testUsage},
		{"ChangesAcrossHandles", testChanges},
		{"JobsLifecycle", testJobsLifecycle},
		{"JobsIdempotency", testJobsIdempotency},
		{"JobsExpiredLeaseReclaimed", testJobsExpiredLease},
		{"JobsList", testJobsList},
		{"JobsWebhookOutbox", testWebhookOutbox},
		{"JobsWebhookDeliveries", testWebhookDeliveries},
		{"JobsSettings", testJobsSettings},
		{"JobsRaceTwoNodes", testJobsRace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := open(t)
			tc.run(t, a, b)
		})
	}
}

// t0 has microsecond precision: every store keeps at least that.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

func ctx(t *testing.T) context.Context { return t.Context() }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
