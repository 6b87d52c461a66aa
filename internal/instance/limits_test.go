package instance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/spec"
)

func limitedManager(t *testing.T, d *fakeDriver, opts Options, specs ...string) *Manager {
	t.Helper()
	m := New(d, slog.New(slog.NewTextHandler(io.Discard, nil)), opts)
	for i, s := range specs {
		f, err := spec.Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		m.Put(f, int64(i+1))
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m
}

// live counts m's instances that may hold a process.
func live(m *Manager) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.opts.MaxTotal - max(m.roomLocked(), 0)
}

// TestManagerNeverExceedsTotal: however much every function asks for, the
// manager never runs more than MaxTotal instances, refuses a function with
// none with ErrInstanceLimit, and starts again once room is made.
func TestManagerNeverExceedsTotal(t *testing.T) {
	d := &fakeDriver{}
	m := limitedManager(t, d, Options{MaxTotal: 5, MaxPerFunction: 4},
		"name: a\ncommand: [x]\nscaling: {max: 10}",
		"name: b\ncommand: [x]\nscaling: {max: 10}",
		"name: c\ncommand: [x]\nscaling: {max: 10}")
	now := time.Now()
	for range 3 {
		for _, fn := range []string{"a", "b"} {
			m.Reconcile(fn, 10, now)
			m.grow(fn, 100)
			if n := live(m); n > 5 {
				t.Fatalf("%d instances live, want ≤ MaxTotal 5", n)
			}
		}
	}
	waitFor(t, "5 starts", func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.started == 5 })
	if l, _ := m.Load("a"); l.Ready+l.Starting != 4 {
		t.Errorf("a has %d instances, want MaxPerFunction 4", l.Ready+l.Starting)
	}
	_, err := m.grow("c", 1)
	if !errors.Is(err, ErrInstanceLimit) {
		t.Fatalf("grow(c) at the total = %v, want ErrInstanceLimit", err)
	}
	if n, _, failing := m.Health("c"); n != 0 || !errors.Is(failing, ErrInstanceLimit) {
		t.Errorf("Health(c) = %d, %v; want 0 live and ErrInstanceLimit", n, failing)
	}
	// b gives its instance back: c may start.
	m.Remove(context.Background(), "b")
	if started, err := m.grow("c", 1); started != 1 || err != nil {
		t.Errorf("grow(c) after room was made = %d, %v; want 1 start", started, err)
	}
	if n := live(m); n > 5 {
		t.Fatalf("%d instances live, want ≤ 5", n)
	}
	d.mu.Lock()
	started := d.started
	d.mu.Unlock()
	if started > 6 {
		t.Errorf("driver saw %d starts, want 6", started)
	}
}

// TestManagerBoundsConcurrentStarts: with MaxStarting 2, a burst of demand
// reaches the driver two starts at a time; the rest wait their turn.
func TestManagerBoundsConcurrentStarts(t *testing.T) {
	d := &fakeDriver{gate: make(chan struct{})}
	m := limitedManager(t, d, Options{MaxStarting: 2}, "name: a\ncommand: [x]\nscaling: {max: 8, concurrency: 1}")
	if started, err := m.grow("a", 8); started != 8 || err != nil {
		t.Fatalf("grow = %d, %v; want 8 starting", started, err)
	}
	d.waitStarted(t, 2)
	d.mu.Lock()
	inDriver := d.started
	d.mu.Unlock()
	if inDriver != 2 {
		t.Fatalf("%d starts in the driver at once, want MaxStarting 2", inDriver)
	}
	close(d.gate) // every start may finish: the others follow
	waitFor(t, "all 8 ready", func() bool { l, _ := m.Load("a"); return l.Ready == 8 })
}
