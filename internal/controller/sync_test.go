package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ember-run/ember/internal/spec"
	"github.com/ember-run/ember/internal/store/sqlite"
)

// countingScaler records every Put and Remove in order.
type countingScaler struct {
	mu  sync.Mutex // guards log
	log []string
}

func (s *countingScaler) record(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, e)
}
func (s *countingScaler) Put(fn *spec.Function, version int64) {
	s.record(fmt.Sprintf("put %s v%d retries=%d", fn.Name, version, fn.Retries))
}
func (s *countingScaler) Remove(ctx context.Context, name string) { s.record("remove " + name) }
func (s *countingScaler) Demanded(string, time.Time)              {}

func (s *countingScaler) ReconcileIdle(fn string, desired int, extra, last time.Duration, now time.Time) {
}
func (s *countingScaler) Health(fn string) (int, time.Time, error) { return 0, time.Time{}, nil }
func (s *countingScaler) Limit(fn string, n int, why string)       {}
func (s *countingScaler) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.log
	s.log = nil
	return out
}

func TestSyncAppliesOnlyChangesMadeElsewhere(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ember.db")
	open := func() *sqlite.DB {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	scA := &countingScaler{}
	a := New(open(), scA, &fixedDemand{}, logger, Options{})
	b := New(open(), &countingScaler{}, &fixedDemand{}, logger, Options{})
	deploy := func(c *Controller, doc string) {
		t.Helper()
		f, err := spec.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Deploy(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name   string
		do     func()
		want   []string // A's scaler calls after Sync
		exists bool     // whether A then has "sim"
	}{
		{"deployed elsewhere", func() { deploy(b, `{name: sim, command: [x]}`) }, []string{"put sim v1 retries=0"}, true},
		{"nothing new", func() {}, nil, true},
		{"updated elsewhere", func() { deploy(b, `{name: sim, command: [x], retries: 2}`) }, []string{"put sim v2 retries=2"}, true},
		// A's own deploy is installed once, by Deploy; Sync leaves it.
		{"updated here", func() { deploy(a, `{name: sim, command: [x], retries: 3}`) }, []string{"put sim v3 retries=3"}, true},
		{"deleted elsewhere", func() {
			if err := b.Delete(ctx, "sim"); err != nil {
				t.Fatal(err)
			}
		}, []string{"remove sim"}, false},
		// Version 1 again: the creation time tells it from the old v1.
		{"re-created elsewhere", func() { deploy(b, `{name: sim, command: [x], retries: 1}`) }, []string{"put sim v1 retries=1"}, true},
	}
	for _, st := range steps {
		st.do()
		if err := a.Sync(ctx); err != nil {
			t.Fatalf("%s: Sync: %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, scA.take()); diff != "" {
			t.Errorf("%s: A's scaler calls (-want +got):\n%s", st.name, diff)
		}
		if _, _, ok := a.Get("sim"); ok != st.exists {
			t.Errorf("%s: A has sim = %v, want %v", st.name, ok, st.exists)
		}
	}
}
