package instance

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/spec"
)

// prewarmDriver is a fakeDriver that can prepare instances ahead: it
// records what it prepared, what a Start took over and what was
// discarded without being taken.
type prewarmDriver struct {
	fakeDriver
	pmu       sync.Mutex
	prepared  map[string]int64 // instance id → spec version, until taken or discarded
	taken     []string
	discarded []string
	starts    []string // InstanceID of every Start
}

func (d *prewarmDriver) Prewarms(s driver.StartSpec) bool { return s.Resources.GPU.Count == 0 }

func (d *prewarmDriver) Prewarm(ctx context.Context, s driver.StartSpec) error {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	d.prepared[s.InstanceID] = s.Labels.Version
	return nil
}

func (d *prewarmDriver) Discard(ctx context.Context, s driver.StartSpec) {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	if _, ok := d.prepared[s.InstanceID]; ok {
		delete(d.prepared, s.InstanceID)
		d.discarded = append(d.discarded, s.InstanceID)
	}
}

func (d *prewarmDriver) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	d.pmu.Lock()
	d.starts = append(d.starts, s.InstanceID)
	if _, ok := d.prepared[s.InstanceID]; ok {
		delete(d.prepared, s.InstanceID)
		d.taken = append(d.taken, s.InstanceID)
	}
	d.pmu.Unlock()
	return d.fakeDriver.Start(ctx, s)
}

// snapshot returns the prepared ids (sorted) and copies of the logs.
func (d *prewarmDriver) snapshot() (prepared, taken, discarded, starts []string) {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	for id := range d.prepared {
		prepared = append(prepared, id)
	}
	slices.Sort(prepared)
	return prepared, slices.Clone(d.taken), slices.Clone(d.discarded), slices.Clone(d.starts)
}

func mustSpec(t *testing.T, src string) *spec.Function {
	t.Helper()
	f, err := spec.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPrewarmLifecycle follows one function's prepared instance: prepared
// at deploy (at zero), taken over by the next start under the same id,
// prepared again when the function is back at zero, replaced by a new
// version, discarded when the function is removed.
func TestPrewarmLifecycle(t *testing.T) {
	d := &prewarmDriver{prepared: map[string]int64{}}
	m := New(d, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{MaxPrewarmed: 4})
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	m.Put(mustSpec(t, "name: f\ncommand: [x]\nscaling: {max: 1, idle_timeout: 1s}"), 1)

	var first string
	waitFor(t, "an instance prepared at deploy", func() bool {
		p, _, _, _ := d.snapshot()
		if len(p) == 1 {
			first = p[0]
		}
		return len(p) == 1
	})
	if _, err := m.grow("f", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready", func() bool { return m.count(api.StateReady) == 1 })
	prepared, taken, discarded, starts := d.snapshot()
	if !slices.Equal(starts, []string{first}) || !slices.Equal(taken, []string{first}) || len(discarded) != 0 {
		t.Fatalf("starts %v taken %v discarded %v; want the start to take over the prepared %s", starts, taken, discarded, first)
	}
	if len(prepared) != 0 {
		t.Fatalf("prepared %v while an instance runs; want none (only a function at zero gets one)", prepared)
	}

	m.Reconcile("f", 0, time.Now().Add(time.Hour)) // idle past its timeout: back to zero
	var second string
	waitFor(t, "prepared again at zero", func() bool {
		p, _, _, _ := d.snapshot()
		if len(p) == 1 {
			second = p[0]
		}
		return len(p) == 1 && m.count(api.StateReady) == 0
	})
	if second == first {
		t.Fatalf("prepared id %s reused; want a new instance id", second)
	}

	m.Put(mustSpec(t, "name: f\ncommand: [x, two]\nscaling: {max: 1}"), 2)
	waitFor(t, "the new version's instance prepared, the old one discarded", func() bool {
		p, _, disc, _ := d.snapshot()
		return len(p) == 1 && p[0] != second && slices.Contains(disc, second)
	})
	prepared, _, _, _ = d.snapshot()
	d.pmu.Lock()
	v := d.prepared[prepared[0]]
	d.pmu.Unlock()
	if v != 2 {
		t.Fatalf("prepared for version %d, want 2", v)
	}

	m.Remove(context.Background(), "f")
	waitFor(t, "discarded on remove", func() bool {
		p, _, disc, _ := d.snapshot()
		return len(p) == 0 && slices.Contains(disc, prepared[0])
	})
}

// TestPrewarmBoundsAndShutdown: at most MaxPrewarmed functions have an
// instance prepared, a GPU function never does, none is left after
// Shutdown.
func TestPrewarmBoundsAndShutdown(t *testing.T) {
	d := &prewarmDriver{prepared: map[string]int64{}}
	m := New(d, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{MaxPrewarmed: 2})
	m.Put(mustSpec(t, "name: gpu\ncommand: [x]\nresources: {gpu: {type: a100-40gb, count: 1}}"), 1)
	for _, name := range []string{"a", "b", "c"} {
		m.Put(mustSpec(t, "name: "+name+"\ncommand: [x]"), 1)
	}
	waitFor(t, "two prepared", func() bool { p, _, _, _ := d.snapshot(); return len(p) == 2 })
	for _, id := range func() []string { p, _, _, _ := d.snapshot(); return p }() {
		if id[:4] == "gpu-" {
			t.Errorf("GPU function prepared (%s): its devices are assigned at start", id)
		}
	}
	m.Shutdown(context.Background())
	if p, _, disc, _ := d.snapshot(); len(p) != 0 || len(disc) != 2 {
		t.Fatalf("after shutdown prepared %v discarded %v; want none left, 2 discarded", p, disc)
	}
}

// TestNoPrewarmWithoutBound: with MaxPrewarmed 0 nothing is prepared and
// starts run under fresh ids as before.
func TestNoPrewarmWithoutBound(t *testing.T) {
	d := &prewarmDriver{prepared: map[string]int64{}}
	m := New(d, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	m.Put(mustSpec(t, "name: f\ncommand: [x]"), 1)
	m.grow("f", 1)
	waitFor(t, "ready", func() bool { return m.count(api.StateReady) == 1 })
	if p, taken, _, _ := d.snapshot(); len(p) != 0 || len(taken) != 0 {
		t.Fatalf("prepared %v taken %v with MaxPrewarmed 0; want none", p, taken)
	}
}
