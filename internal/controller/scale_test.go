package controller_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ember-run/ember/internal/activator"
	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/controller"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/instance"
	"github.com/ember-run/ember/internal/spec"
)

// memStore keeps specs in memory; SQLite's goroutines would outlive the
// synctest bubble.
type memStore struct{}

func (memStore) PutFunction(ctx context.Context, name string, specJSON []byte, now time.Time) (api.Function, bool, error) {
	return api.Function{Name: name, Version: 1, Spec: specJSON}, true, nil
}
func (memStore) DeleteFunction(ctx context.Context, name string) (bool, error) { return true, nil }
func (memStore) ListFunctions(ctx context.Context) ([]api.Function, error)     { return nil, nil }

// coldDriver starts in-memory instances that take coldStart (of the
// bubble's fake time) to become ready, and records when each start began.
type coldDriver struct {
	coldStart time.Duration
	mu        sync.Mutex
	startedAt []time.Time
}

func (d *coldDriver) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	d.mu.Lock()
	d.startedAt = append(d.startedAt, time.Now())
	n := len(d.startedAt)
	d.mu.Unlock()
	select {
	case <-time.After(d.coldStart):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &memInstance{addr: fmt.Sprintf("127.0.0.1:%d", 10000+n), done: make(chan struct{})}, nil
}

func (d *coldDriver) starts() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.startedAt...)
}

type memInstance struct {
	addr string
	done chan struct{}
	once sync.Once
}

func (m *memInstance) Addr() string { return m.addr }
func (m *memInstance) Phases() []driver.Phase {
	return []driver.Phase{{Name: driver.PhaseReady, At: time.Now()}}
}
func (m *memInstance) Done() <-chan struct{}      { return m.done }
func (m *memInstance) Err() error                 { return nil }
func (m *memInstance) Stop(context.Context) error { m.once.Do(func() { close(m.done) }); return nil }

// TestWaitingDemandStartsRightCountOnce is the single scaling rule end to
// end in one process: the real activator, controller and instance manager
// over a driver whose starts take 2 s. With concurrency 4 and target 0.7, 8
// waiting requests start ceil(8 / (4 × 0.7)) = 3 instances at the instant
// they arrive (the poke, not the next tick), and the ticks that follow
// while they start, serve and idle start no more.
func TestWaitingDemandStartsRightCountOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logger := slog.New(slog.NewTextHandler(io.Discard, nil))
		drv := &coldDriver{coldStart: 2 * time.Second}
		mgr := instance.New(drv, logger, instance.Options{})
		demand := controller.NewDemandReports(0)
		ctl := controller.New(memStore{}, mgr, demand, logger, controller.Options{Tick: 500 * time.Millisecond})
		act := activator.New(mgr, ctl)
		demand.Add(act)
		mgr.SetNotify(act.Notify)

		f, err := spec.Parse([]byte(`{name: f, command: [x], scaling: {max: 10, concurrency: 4, target: 0.7, idle_timeout: 5m}}`))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if _, _, err := ctl.Deploy(ctx, f); err != nil {
			t.Fatal(err)
		}
		var loop sync.WaitGroup
		loop.Go(func() { ctl.Run(ctx) })

		t0 := time.Now()
		release := make(chan struct{})
		var reqs sync.WaitGroup
		for range 8 {
			reqs.Go(func() {
				if err := act.Try(ctx, "f", func(activator.Slot) error { <-release; return nil }); err != nil {
					t.Errorf("Try: %v", err)
				}
			})
		}
		synctest.Wait() // all 8 wait; no time has passed, so no tick has run
		if got := drv.starts(); len(got) != 3 {
			t.Fatalf("starts when 8 requests wait = %d, want 3 at once", len(got))
		}
		for i, at := range drv.starts() {
			if !at.Equal(t0) {
				t.Errorf("start %d began %s after the requests arrived, want at once", i, at.Sub(t0))
			}
		}

		// The 3 become ready and take all 8 requests (12 slots); a minute
		// of ticks while they serve, then while they idle, adds none.
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if s, _ := mgr.Summary("f", time.Now()); s.Ready != 3 || s.InFlight != 8 {
			t.Errorf("after the cold start: %d ready with %d in flight, want 3 with 8", s.Ready, s.InFlight)
		}
		time.Sleep(20 * time.Second)
		close(release)
		reqs.Wait()
		time.Sleep(40 * time.Second)
		synctest.Wait()
		if got := len(drv.starts()); got != 3 {
			t.Errorf("starts after a minute of ticks = %d, want still 3 (no second wave)", got)
		}
		if s, _ := mgr.Summary("f", time.Now()); s.Ready != 3 {
			t.Errorf("ready after a minute = %d, want 3 (held while the averages catch up)", s.Ready)
		}

		cancel()
		loop.Wait()
		mgr.Shutdown(context.Background())
	})
}

// TestAutoHoldsExtraInstancesLikeTheSimulator: under idle_timeout: auto
// the live controller keeps an instance beyond the first for the learned
// windows' hold (keepalive.Windows.IdleHold), the rule the simulator in
// `ember cost --policy` applies. Before any idle time is learned the
// policy falls back to a fixed 10 min window, so auto must do exactly what
// idle_timeout: 10m does, second instance included. The live path used to
// stop auto's second instance as soon as it was idle: a cold start the
// simulation did not count.
func TestAutoHoldsExtraInstancesLikeTheSimulator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logger := slog.New(slog.NewTextHandler(io.Discard, nil))
		drv := &coldDriver{coldStart: 2 * time.Second}
		mgr := instance.New(drv, logger, instance.Options{})
		demand := controller.NewDemandReports(0)
		ctl := controller.New(memStore{}, mgr, demand, logger, controller.Options{Tick: 500 * time.Millisecond})
		act := activator.New(mgr, ctl)
		demand.Add(act)
		mgr.SetNotify(act.Notify)
		ctx, cancel := context.WithCancel(context.Background())
		for _, s := range []string{
			`{name: auto, command: [x], scaling: {max: 4, concurrency: 1, idle_timeout: auto}}`,
			`{name: fixed, command: [x], scaling: {max: 4, concurrency: 1, idle_timeout: 10m}}`,
		} {
			f, err := spec.Parse([]byte(s))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := ctl.Deploy(ctx, f); err != nil {
				t.Fatal(err)
			}
		}
		var loop sync.WaitGroup
		loop.Go(func() { ctl.Run(ctx) })

		// Two overlapping 1 s calls to each: two instances each.
		var reqs sync.WaitGroup
		for _, fn := range []string{"auto", "fixed"} {
			for range 2 {
				reqs.Go(func() {
					if err := act.Try(ctx, fn, func(activator.Slot) error { time.Sleep(time.Second); return nil }); err != nil {
						t.Errorf("Try %s: %v", fn, err)
					}
				})
			}
		}
		reqs.Wait()
		ready := func(fn string) int {
			synctest.Wait()
			s, _ := mgr.Summary(fn, time.Now())
			return s.Ready
		}
		if a, f := ready("auto"), ready("fixed"); a != 2 || f != 2 {
			t.Fatalf("after the calls: auto %d ready, fixed %d; want 2 and 2", a, f)
		}
		// Both functions keep both instances for the fallback's 10 min of
		// idle, then stop them; no instance starts again.
		idleFrom := time.Now()
		for _, at := range []struct {
			after time.Duration
			want  int
		}{{time.Minute, 2}, {9*time.Minute + 50*time.Second, 2}, {10*time.Minute + 5*time.Second, 0}} {
			time.Sleep(time.Until(idleFrom.Add(at.after)))
			if a, f := ready("auto"), ready("fixed"); a != at.want || f != at.want {
				t.Errorf("%s after the calls: auto %d ready, fixed %d; want %d each", at.after, a, f, at.want)
			}
		}
		if n := len(drv.starts()); n != 4 {
			t.Errorf("%d starts, want 4 (two per function)", n)
		}
		if kw, ok := ctl.KeepWarmStatus("auto"); !ok || kw.Fallback == "" {
			t.Errorf("keep-warm status %+v, want the fallback (nothing learned yet)", kw)
		}
		cancel()
		loop.Wait()
		mgr.Shutdown(context.Background())
	})
}
