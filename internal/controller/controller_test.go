package controller

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/spec"
	"github.com/ember-run/ember/internal/store/sqlite"
)

type recordingScaler struct {
	mu      sync.Mutex
	desired map[string]int
	puts    map[string]int64
	limits  map[string]int
	live    int
}

func (s *recordingScaler) Put(fn *spec.Function, version int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts[fn.Name] = version
}
func (s *recordingScaler) Remove(ctx context.Context, name string) {}
func (s *recordingScaler) Demanded(string, time.Time)              {}

func (s *recordingScaler) ReconcileIdle(fn string, desired int, extra, last time.Duration, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.desired[fn] = desired
}
func (s *recordingScaler) Health(fn string) (int, time.Time, error) { return s.live, time.Time{}, nil }
func (s *recordingScaler) Limit(fn string, n int, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits[fn] = n
}

type fixedDemand struct{ avg float64 }

func (d *fixedDemand) Demand(fn string, now time.Time) (float64, int) { return d.avg, int(d.avg) }
func (d *fixedDemand) Forget(fn string)                               {}

func newController(t *testing.T) (*Controller, *recordingScaler, *fixedDemand, *sqlite.DB) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sc := &recordingScaler{desired: map[string]int{}, puts: map[string]int64{}, limits: map[string]int{}}
	dm := &fixedDemand{}
	return New(db, sc, dm, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{}), sc, dm, db
}

func TestScheduleWindowRaisesMin(t *testing.T) {
	c, sc, _, _ := newController(t)
	f, err := spec.Parse([]byte(`{name: office, command: [x], scaling: {min: 0, max: 5, schedule: [{cron: "0 9 * * 1-5", duration: 10h, min: 2}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Deploy(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	monday := func(h int) time.Time { return time.Date(2026, 11, 23, h, 0, 0, 0, time.Local) }
	for _, tt := range []struct {
		at   time.Time
		want int
	}{{monday(8), 0}, {monday(9), 2}, {monday(18), 2}, {monday(19), 0}} {
		c.tickOne("office", tt.at)
		if got := sc.desired["office"]; got != tt.want {
			t.Errorf("desired at %s = %d, want %d", tt.at.Format("15:04"), got, tt.want)
		}
	}
}

func TestDemandScalesAndDeploysPersist(t *testing.T) {
	c, sc, dm, db := newController(t)
	f, _ := spec.Parse([]byte(`{name: busy, command: [x], scaling: {max: 8, concurrency: 4, target: 0.5, idle_timeout: 30s}}`))
	if _, created, err := c.Deploy(context.Background(), f); err != nil || !created {
		t.Fatalf("deploy: %v created=%v", err, created)
	}
	dm.avg = 6 // 6 concurrent / (4 × 0.5) per instance → 3
	now := time.Now()
	for i := range 5 {
		c.tickOne("busy", now.Add(time.Duration(i)*time.Second))
	}
	if got := sc.desired["busy"]; got != 3 {
		t.Errorf("desired = %d, want 3", got)
	}
	// A second controller over the same store sees the function.
	c2 := New(db, sc, dm, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	if err := c2.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fns := c2.List(); len(fns) != 1 || fns[0].Name != "busy" {
		t.Errorf("loaded functions = %v, want [busy]", fns)
	}
	if err := c2.Delete(context.Background(), "busy"); err != nil {
		t.Fatal(err)
	}
	if err := c2.Delete(context.Background(), "busy"); err == nil {
		t.Error("second delete succeeded, want ErrNotFound")
	}
}

type fakeBudgets struct{ action string }

func (b *fakeBudgets) OverBudget(fn string, now time.Time) (string, float64) { return b.action, 1.5 }

func TestBudgetActions(t *testing.T) {
	c, sc, dm, _ := newController(t)
	b := &fakeBudgets{}
	c.opts.Budgets = b
	f, _ := spec.Parse([]byte(`{name: spendy, command: [x], scaling: {min: 2, max: 8}, budget: {usd_per_day: 1, action: cap}}`))
	if _, _, err := c.Deploy(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	dm.avg = 0
	for _, tt := range []struct {
		action       string
		desired, cap int
	}{{"", 2, -1}, {"warn", 2, -1}, {"cap", 1, 1}, {"scale-to-zero", 0, 0}, {"", 2, -1}} {
		b.action = tt.action
		c.tickOne("spendy", time.Now())
		if got := sc.desired["spendy"]; got != tt.desired {
			t.Errorf("action %q: desired = %d, want %d", tt.action, got, tt.desired)
		}
		if got := sc.limits["spendy"]; got != tt.cap {
			t.Errorf("action %q: limit = %d, want %d", tt.action, got, tt.cap)
		}
	}
}

// TestWakeSizesByTheRule: a poke applies autoscaler.Decide at once with the
// demand it carries; a plain tick right after keeps the count.
func TestWakeSizesByTheRule(t *testing.T) {
	tests := []struct {
		name    string
		scaling string
		demand  int
		want    int
	}{
		{"8 waiting, concurrency 4, target 0.7", "{max: 10, concurrency: 4, target: 0.7}", 8, 3},
		{"buffer counts too", "{max: 10, concurrency: 4, target: 0.7, buffer: 1}", 8, 4},
		{"within max", "{max: 2, concurrency: 4, target: 0.7}", 8, 2},
		{"one request", "{max: 10, concurrency: 4, target: 0.7}", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, sc, dm, _ := newController(t)
			f, err := spec.Parse([]byte(`{name: f, command: [x], scaling: ` + tt.scaling + `}`))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Unix(1000, 0)
			c.now = func() time.Time { return now }
			if _, _, err := c.Deploy(context.Background(), f); err != nil {
				t.Fatal(err)
			}
			c.Wake("f", tt.demand)
			if got := sc.desired["f"]; got != tt.want {
				t.Errorf("desired after Wake(%d) = %d, want %d", tt.demand, got, tt.want)
			}
			// The tick samples the same requests, waiting or in flight.
			sc.live, dm.avg = tt.want, float64(tt.demand)
			c.tickOne("f", now.Add(500*time.Millisecond))
			if got := sc.desired["f"]; got != tt.want {
				t.Errorf("desired at the next tick = %d, want %d", got, tt.want)
			}
		})
	}
}

// A gateway's controller is passive: a deploy (and a tick, and a sync from
// the store) installs the spec but never asks for instances, even with
// scaling.min; only the leader decides, so a min: 1 function gets one
// instance, not one per gateway.
func TestPassiveNeverReconciles(t *testing.T) {
	for _, passive := range []bool{false, true} {
		db, err := sqlite.Open(context.Background(), ":memory:")
		if err != nil {
			t.Fatal(err)
		}
		sc := &recordingScaler{desired: map[string]int{}, puts: map[string]int64{}, limits: map[string]int{}}
		c := New(db, sc, &fixedDemand{}, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Passive: passive})
		f, _ := spec.Parse([]byte(`{name: warm, command: [x], scaling: {min: 1, max: 1}}`))
		if _, _, err := c.Deploy(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		c.tickOne("warm", time.Now())
		_, reconciled := sc.desired["warm"]
		if reconciled == passive {
			t.Errorf("passive=%v: reconciled=%v (desired %v)", passive, reconciled, sc.desired)
		}
		if sc.puts["warm"] != 1 {
			t.Errorf("passive=%v: spec not installed (puts %v)", passive, sc.puts)
		}
		db.Close()
	}
}
