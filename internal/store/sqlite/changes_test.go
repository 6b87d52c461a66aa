package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
)

// twoHandles opens the same database file twice, as two servers sharing
// a store would.
func twoHandles(t *testing.T) (a, b *DB) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ember.db")
	a, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// collect reads n changes from ch, failing after a deadline.
func collect(t *testing.T, ch <-chan api.Change, n int) []api.Change {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var out []api.Change
	for len(out) < n {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d of %d changes: %+v", len(out), n, out)
			}
			out = append(out, c)
		case <-deadline:
			t.Fatalf("got %d of %d changes within 10s: %+v", len(out), n, out)
		}
	}
	return out
}

func TestWatchReportsWritesOfEveryHandleInOrder(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := twoHandles(t)
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	// A write before the head is not reported.
	if _, _, err := a.PutFunction(ctx, "old", []byte(`{"name":"old"}`), now); err != nil {
		t.Fatal(err)
	}
	head, err := a.ChangeHead(ctx)
	if err != nil || head != 1 {
		t.Fatalf("ChangeHead = %d, %v; want 1", head, err)
	}
	ch, err := a.Watch(ctx, head, WatchOptions{Every: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := auth.Generate(auth.NewKey{Name: "ci", Scope: auth.ScopeInvoke}, now)
	if err != nil {
		t.Fatal(err)
	}
	writes := []func() error{
		func() error { _, _, err := b.PutFunction(ctx, "sim", []byte(`{"name":"sim"}`), now); return err },
		func() error { _, _, err := a.PutRoute(ctx, "chat", []byte(`{"name":"chat"}`), now); return err },
		func() error {
			_, _, err := b.PutFunction(ctx, "sim", []byte(`{"name":"sim","retries":1}`), now)
			return err
		},
		func() error { _, err := a.DeleteFunction(ctx, "sim"); return err },
		func() error { _, err := b.DeleteRoute(ctx, "nothing"); return err }, // not stored: nothing logged
		func() error { _, err := b.DeleteRoute(ctx, "chat"); return err },
		func() error { _, _, err := b.PutSecret(ctx, "token", []byte("s3cret"), now); return err },
		func() error { return b.CreateKey(ctx, key) },
		func() error { return a.RevokeKey(ctx, key.ID, now) },
		func() error { _, err := a.DeleteSecret(ctx, "token"); return err },
	}
	for i, w := range writes {
		if err := w(); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	want := []api.Change{
		{Kind: api.ChangeFunction, Name: "sim", Version: 1},
		{Kind: api.ChangeRoute, Name: "chat", Version: 1},
		{Kind: api.ChangeFunction, Name: "sim", Version: 2},
		{Kind: api.ChangeFunction, Name: "sim", Deleted: true},
		{Kind: api.ChangeRoute, Name: "chat", Deleted: true},
		{Kind: api.ChangeSecret, Name: "token"},
		{Kind: api.ChangeKey, Name: key.ID},
		{Kind: api.ChangeKey, Name: key.ID},
		{Kind: api.ChangeSecret, Name: "token", Deleted: true},
	}
	got := collect(t, ch, len(want))
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(api.Change{}, "Seq")); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	for i, c := range got {
		if c.Seq != head+int64(i)+1 {
			t.Errorf("change %d: seq = %d, want %d (consecutive after the head)", i, c.Seq, head+int64(i)+1)
		}
	}
	// A write that fails (a duplicate key id) rolls back its change with
	// it: the next change follows without a gap.
	if err := b.CreateKey(ctx, key); err == nil {
		t.Fatal("creating a key twice succeeded")
	}
	if _, _, err := b.PutFunction(ctx, "late", []byte(`{}`), now); err != nil {
		t.Fatal(err)
	}
	if c := collect(t, ch, 1)[0]; c.Name != "late" || c.Seq != got[len(got)-1].Seq+1 {
		t.Errorf("next change = %+v, want late at seq %d", c, got[len(got)-1].Seq+1)
	}
}

func TestWatchResumesAfterSeq(t *testing.T) {
	ctx := context.Background()
	a, b := twoHandles(t)
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, name := range []string{"one", "two", "three", "four"} {
		if _, _, err := b.PutFunction(ctx, name, []byte(`{}`), now); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		after int64
		want  []string
	}{
		{"from the start", 0, []string{"one", "two", "three", "four"}},
		{"after the second", 2, []string{"three", "four"}},
		{"after the last", 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wctx, cancel := context.WithCancel(ctx)
			ch, err := a.Watch(wctx, tt.after, WatchOptions{Every: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range collect(t, ch, len(tt.want)) {
				got = append(got, c.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			// Stopping: the channel closes once ctx ends, with nothing
			// more reported (there was nothing more).
			cancel()
			for c := range ch {
				t.Errorf("change after the last: %+v", c)
			}
		})
	}
}

func TestWatchBehindAPrunedLogAsksForEverything(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := twoHandles(t)
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, name := range []string{"one", "two", "three"} {
		if _, _, err := b.PutRoute(ctx, name, []byte(`{}`), now); err != nil {
			t.Fatal(err)
		}
	}
	// As logChange prunes when the log is longer than changeLogKeep.
	if _, err := b.SQL.ExecContext(ctx, `DELETE FROM changes WHERE seq <= 2`); err != nil {
		t.Fatal(err)
	}
	ch, err := a.Watch(ctx, 1, WatchOptions{Every: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Change{{Seq: 2}, {Seq: 3, Kind: api.ChangeRoute, Name: "three", Version: 1}}
	if diff := cmp.Diff(want, collect(t, ch, 2)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestWatchRejectsNegativeSeq(t *testing.T) {
	a, _ := twoHandles(t)
	if _, err := a.Watch(context.Background(), -1, WatchOptions{}); err == nil {
		t.Fatal("Watch(-1) succeeded, want an error naming after")
	}
}
