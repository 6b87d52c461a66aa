package instance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/spec"
)

// clock is a manual clock for the manager.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func clockedManager(t *testing.T, d *fakeDriver, scaling string) (*Manager, *clock) {
	t.Helper()
	f, err := spec.Parse([]byte("name: f\ncommand: [x]\nscaling: " + scaling))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := New(d, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Now: c.now})
	m.Put(f, 1)
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m, c
}

func (d *fakeDriver) starts() int { d.mu.Lock(); defer d.mu.Unlock(); return d.started }

// After a failed start, the controller's desired count (kept up for the
// idle timeout after traffic) does not restart the function on every
// backoff: only new demand, or min, does.
func TestFailedStartRetriesOnlyOnDemand(t *testing.T) {
	d := &fakeDriver{fail: errors.New("exit status 1")}
	m, c := clockedManager(t, d, "{min: 0, max: 1, idle_timeout: 5m}")
	m.Demanded("f", c.now())
	m.Reconcile("f", 1, c.now())
	waitFor(t, "failed", func() bool { return m.count(api.StateFailed) == 1 })
	if s, _ := m.Summary("f", c.now()); s.State != api.FunctionFailing {
		t.Errorf("state after a failed start = %q, want failing", s.State)
	}
	// Ticks through the idle timeout, every backoff long past: no start.
	// (A start is visible as a starting instance as soon as Reconcile
	// returns.)
	for i := range 10 {
		m.Reconcile("f", 1, c.add(31*time.Second))
		if n := m.count(api.StateStarting); n != 0 {
			t.Fatalf("tick %d, %s after the failure: %d starting without demand, want none", i+1, time.Duration(i+1)*31*time.Second, n)
		}
	}
	// A request waits: one more try.
	m.Demanded("f", c.add(time.Second))
	m.Reconcile("f", 1, c.now())
	waitFor(t, "retried", func() bool { return d.starts() == 2 })
}

// min keeps a failing function retrying, with backoff.
func TestFailedStartRetriesForMin(t *testing.T) {
	d := &fakeDriver{fail: errors.New("exit status 1")}
	m, c := clockedManager(t, d, "{min: 1, max: 1}")
	m.Reconcile("f", 1, c.now())
	waitFor(t, "failed", func() bool { return d.starts() == 1 && m.count(api.StateFailed) == 1 })
	m.Reconcile("f", 1, c.now()) // within the backoff
	if n := d.starts(); n != 1 {
		t.Fatalf("starts within the backoff = %d, want 1", n)
	}
	m.Reconcile("f", 1, c.add(time.Second))
	waitFor(t, "retried for min", func() bool { return d.starts() == 2 })
}

// Prove starts one instance of the version at min 0, and Rollout reports
// it complete once ready, or failed with the start error.
func TestProveAndRollout(t *testing.T) {
	d := &fakeDriver{}
	m, c := clockedManager(t, d, "{min: 0, max: 2}")
	if r, _ := m.Rollout("f"); r.State != api.RolloutProgressing || r.Want != 1 {
		t.Errorf("rollout before any start = %+v, want progressing, want 1", r)
	}
	m.Prove("f", 2) // not the current version: nothing
	m.Prove("f", 1)
	m.Prove("f", 1) // one is starting or ready already: nothing more
	waitFor(t, "ready", func() bool { r, _ := m.Rollout("f"); return r.State == api.RolloutComplete })
	if n := d.starts(); n != 1 {
		t.Errorf("starts = %d, want 1", n)
	}
	if s, _ := m.Summary("f", c.now()); s.State != api.FunctionReady {
		t.Errorf("state = %q, want ready", s.State)
	}

	// The new version's start fails, but only once the gate opens: until
	// then the rollout is under way, whatever the scheduler does.
	gate := make(chan struct{})
	d.mu.Lock()
	d.fail = errors.New("exit status 3")
	d.gate = gate
	d.mu.Unlock()
	f2, err := spec.Parse([]byte("name: f\ncommand: [next]\nscaling: {min: 0, max: 2}"))
	if err != nil {
		t.Fatal(err)
	}
	m.Put(f2, 2)
	if s, _ := m.Summary("f", c.now()); s.State != api.FunctionUpdating {
		t.Errorf("state during the rollout = %q, want updating", s.State)
	}
	d.waitStarted(t, 2) // the new version's start is at the gate
	close(gate)
	waitFor(t, "rollout failed", func() bool { r, _ := m.Rollout("f"); return r.State == api.RolloutFailed })
	r, _ := m.Rollout("f")
	if r.Version != 2 || r.Outdated != 1 || r.Error == "" || len(r.LastLogs) == 0 {
		t.Errorf("failed rollout = %+v, want version 2, one outdated serving, the error and logs", r)
	}
	if s, _ := m.Summary("f", c.now()); s.State != api.FunctionFailing || s.LastError == "" {
		t.Errorf("state after the failed rollout = %q (%q), want failing with the error", s.State, s.LastError)
	}
}
