package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/store/storetest"
)

// testDSN returns a DSN for a fresh database of the test's own on the
// server EMBER_TEST_POSTGRES names (dropped when the test ends), or skips.
func testDSN(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("EMBER_TEST_POSTGRES")
	if admin == "" {
		t.Skip("EMBER_TEST_POSTGRES is unset: start a throwaway server with scripts/postgres-test.sh (.ci/run does) and export the DSN it prints")
	}
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatalf("EMBER_TEST_POSTGRES: %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "ember_test_" + hex.EncodeToString(b[:])
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatalf("EMBER_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	return strings.Replace(admin, "/"+dbName(admin)+"?", "/"+name+"?", 1)
}

// dbName is the database part of a URL DSN.
func dbName(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return ""
	}
	return cfg.Database
}

func open(t *testing.T, dsn string) *DB {
	t.Helper()
	db, err := Open(t.Context(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func handle(t *testing.T, dsn string) storetest.Handle {
	db := open(t, dsn)
	return storetest.Handle{Records: db, Jobs: NewJobs(db), Usage: NewUsage(db, UsageOptions{MaxRequests: storetest.UsageMaxRequests}),
		UsageWith: func(n, batch int) storetest.Usage {
			return NewUsage(db, UsageOptions{MaxRequests: n, PruneBatch: batch})
		},
		Watch: func(ctx context.Context, after int64) (<-chan api.Change, error) {
			return db.Watch(ctx, after, WatchOptions{})
		}}
}

// TestConformance runs the store suite shared with store/sqlite; the two
// handles are two pools on one database, as two nodes hold them.
func TestConformance(t *testing.T) {
	testDSN(t) // skip early, before the subtests
	storetest.Run(t, func(t *testing.T) (a, b storetest.Handle) {
		dsn := testDSN(t)
		return handle(t, dsn), handle(t, dsn)
	})
}

// TestMigrateConcurrently: nodes that start at once take turns under the
// advisory lock; every one opens, and the schema is applied once.
func TestMigrateConcurrently(t *testing.T) {
	dsn := testDSN(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() {
			db, err := Open(t.Context(), dsn, Options{MaxConns: 2})
			if err == nil {
				db.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db := open(t, dsn)
	var n, want int
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	entries, _ := migrations.ReadDir("migrations")
	want = len(entries)
	if n != want {
		t.Fatalf("%d migrations recorded, want %d", n, want)
	}
}

func TestOpenErrors(t *testing.T) {
	dsn := testDSN(t)
	db := open(t, dsn)
	if _, err := db.Pool.Exec(t.Context(), `INSERT INTO schema_migrations(name) VALUES ('999_from_the_future')`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dsn  string
		is   error
		want []string
	}{
		{"schema newer", dsn, ErrSchemaNewer, []string{"999_from_the_future", "newer than this binary"}},
		// Port 1 on loopback: nothing listens; the password must not show.
		{"unreachable", "postgres://ember:hunter2@127.0.0.1:1/ember?sslmode=disable&connect_timeout=2", nil,
			[]string{"unreachable", "ember@127.0.0.1:1/ember"}},
		{"unparsable", "postgres://ember:hunter2@[::1/ember", nil, []string{"does not parse"}},
		{"bad port", "postgres://ember:hunter2@db:port/ember", nil, []string{"does not parse"}},
		{"bad keyword form", "host=db password=hunter2 port=x", nil, []string{"does not parse"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(t.Context(), tc.dsn, Options{})
			if err == nil {
				t.Fatal("opened")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("err = %q, want it to say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the password is in the error: %q", err)
			}
		})
	}
}

// TestWatchWakesOnNotify: a deploy on one node reaches another node's
// Watch by NOTIFY, long before the fallback read (an hour here) would.
func TestWatchWakesOnNotify(t *testing.T) {
	dsn := testDSN(t)
	a, b := open(t, dsn), open(t, dsn)
	head, err := a.ChangeHead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := a.Watch(t.Context(), head, WatchOptions{Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		name := fmt.Sprintf("fn%d", i)
		if _, _, err := b.PutFunction(t.Context(), name, []byte(`{}`), time.Now()); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-ch:
			if c.Name != name || c.Kind != api.ChangeFunction {
				t.Fatalf("change %+v, want %s", c, name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("deploy %d not seen: the notification did not wake the watch", i)
		}
	}
}

// TestWatchSurvivesLostConnection: the listening connection is killed;
// the watch reconnects and a change made meanwhile still arrives.
func TestWatchSurvivesLostConnection(t *testing.T) {
	dsn := testDSN(t)
	a, b := open(t, dsn), open(t, dsn)
	ch, err := a.Watch(t.Context(), 0, WatchOptions{Every: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pool.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.PutFunction(t.Context(), "after", []byte(`{}`), time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-ch:
		if c.Name != "after" {
			t.Fatalf("change %+v", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("change not seen after the listening connection was cut")
	}
}
