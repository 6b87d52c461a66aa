package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/store/storetest"
)

// TestConformance runs the store suite shared with store/postgres; the
// two handles are two opens of one database file, as two processes would.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (a, b storetest.Handle) {
		path := filepath.Join(t.TempDir(), "ember.db")
		return handle(t, path), handle(t, path)
	})
}

func handle(t *testing.T, path string) storetest.Handle {
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJobs(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close(); db.Close() })
	return storetest.Handle{Records: db, Jobs: j, Usage: NewUsage(db, UsageOptions{MaxRequests: storetest.UsageMaxRequests}),
		UsageWith: func(n, batch int) storetest.Usage {
			return NewUsage(db, UsageOptions{MaxRequests: n, PruneBatch: batch})
		},
		Watch: func(ctx context.Context, after int64) (<-chan api.Change, error) {
			return db.Watch(ctx, after, WatchOptions{Every: 10 * time.Millisecond})
		}}
}
