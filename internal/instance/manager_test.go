package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/eventually"
	"github.com/ember-run/ember/internal/spec"
)

// fakeDriver starts instances that exist only in memory; the end-to-end
// tests cover real processes. Starts block until the test releases them.
type fakeDriver struct {
	mu        sync.Mutex
	fail      error
	gate      chan struct{} // nil: start at once
	started   int
	abandoned int // starts that ended because their context did
	insts     []*fakeInstance
	// readyOnCancel makes a gated start succeed when its context ends,
	// as a real start that completes just as it is cancelled.
	readyOnCancel bool
}

type fakeInstance struct {
	addr string
	done chan struct{}
	once sync.Once
}

func (f *fakeInstance) Addr() string { return f.addr }
func (f *fakeInstance) Phases() []driver.Phase {
	return []driver.Phase{{Name: driver.PhaseReady, At: time.Now()}}
}
func (f *fakeInstance) Done() <-chan struct{} { return f.done }
func (f *fakeInstance) Err() error            { return nil }
func (f *fakeInstance) Stop(ctx context.Context) error {
	f.once.Do(func() { close(f.done) })
	return nil
}

func (d *fakeDriver) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	d.mu.Lock()
	gate, fail := d.gate, d.fail
	d.started++
	n := d.started
	d.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			d.mu.Lock()
			d.abandoned++
			late := d.readyOnCancel
			d.mu.Unlock()
			if !late {
				return nil, ctx.Err()
			}
		}
	}
	if fail != nil {
		return nil, &driver.StartError{Reason: "exited with status 1 before becoming ready", Tail: []string{"boom"}, Err: fail}
	}
	in := &fakeInstance{addr: fmt.Sprintf("127.0.0.1:%d", 10000+n), done: make(chan struct{})}
	d.mu.Lock()
	d.insts = append(d.insts, in)
	d.mu.Unlock()
	return in, nil
}

// waitStarted waits until n starts have reached the driver.
func (d *fakeDriver) waitStarted(t *testing.T, n int) {
	t.Helper()
	waitFor(t, "driver start entered", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.started == n
	})
}

func (d *fakeDriver) instance(i int) *fakeInstance {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.insts[i]
}

func (f *fakeInstance) stopped() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

func newManager(t *testing.T, d *fakeDriver, scaling string) (*Manager, chan string) {
	t.Helper()
	f, err := spec.Parse([]byte("name: f\ncommand: [x]\nscaling: " + scaling))
	if err != nil {
		t.Fatal(err)
	}
	notified := make(chan string, 100)
	m := New(d, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Notify: func(fn string) {
		select {
		case notified <- fn:
		default:
		}
	}})
	m.Put(f, 1)
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m, notified
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventually.True(t, 5*time.Second, time.Millisecond, what, cond)
}

func (m *Manager) count(state string) int {
	ins, _ := m.Instances("f")
	n := 0
	for _, in := range ins {
		if in.State == state {
			n++
		}
	}
	return n
}

// tryAcquire dispatches as the activator does: the endpoint with the
// fewest requests in flight, ties to the oldest.
func (m *Manager) tryAcquire(fn string) (id, addr string, readyAt time.Time, release func(), ok bool) {
	for {
		eps := m.Endpoints(fn)
		if len(eps) == 0 {
			return "", "", time.Time{}, nil, false
		}
		best := eps[0]
		for _, e := range eps[1:] {
			if e.InFlight < best.InFlight {
				best = e
			}
		}
		if release, ok := m.Acquire(fn, best.ID); ok {
			return best.ID, best.Addr, best.ReadyAt, release, true
		}
	}
}

// grow starts instances of fn until it has want, as Reconcile does, and
// reports how many it started and why it could not start more.
func (m *Manager) grow(fn string, want int) (int, error) {
	m.mu.Lock()
	p := m.pools[fn]
	if p == nil {
		m.mu.Unlock()
		return 0, ErrUnknownFunction
	}
	ins, err := m.growLocked(p, want)
	m.mu.Unlock()
	m.launch(ins)
	return len(ins), err
}

func TestGrowStartsWithinMax(t *testing.T) {
	m, _ := newManager(t, &fakeDriver{}, "{max: 3, concurrency: 2}")
	started, err := m.grow("f", 5)
	if err != nil || started != 3 {
		t.Fatalf("grow(5) = %d, %v; want 3 started (max 3)", started, err)
	}
	started, _ = m.grow("f", 50)
	if started != 0 {
		t.Errorf("grow beyond max started %d more, want 0", started)
	}
	waitFor(t, "3 ready", func() bool { return m.count(api.StateReady) == 3 })
}

func TestTryAcquireLeastLoadedTiesToOldest(t *testing.T) {
	m, _ := newManager(t, &fakeDriver{}, "{max: 2, concurrency: 2}")
	m.grow("f", 2)
	waitFor(t, "2 ready", func() bool { return m.count(api.StateReady) == 2 })
	ins, _ := m.Instances("f")
	oldest := ins[0].ID
	var releases []func()
	var got []string
	for range 4 {
		id, _, _, release, ok := m.tryAcquire("f")
		if !ok {
			t.Fatal("TryAcquire failed with free slots")
		}
		got = append(got, id)
		releases = append(releases, release)
	}
	if got[0] != oldest || got[1] == oldest || got[2] != oldest {
		t.Errorf("acquire order %v, want oldest (%s) first, then the other, then oldest", got, oldest)
	}
	if _, _, _, _, ok := m.tryAcquire("f"); ok {
		t.Error("TryAcquire succeeded above concurrency")
	}
	for _, r := range releases {
		r()
		r() // double release is harmless
	}
	if ins, _ := m.Instances("f"); ins[0].InFlight != 0 || ins[1].InFlight != 0 {
		t.Errorf("in flight after releases = %d, %d", ins[0].InFlight, ins[1].InFlight)
	}
}

func TestReconcileKeepWarm(t *testing.T) {
	m, _ := newManager(t, &fakeDriver{}, "{max: 3, idle_timeout: 10s}")
	m.Reconcile("f", 3, time.Now())
	waitFor(t, "3 ready", func() bool { return m.count(api.StateReady) == 3 })
	now := time.Now()
	m.Reconcile("f", 1, now.Add(5*time.Second)) // idle, but within keep-warm
	if n := m.count(api.StateReady); n != 3 {
		t.Fatalf("ready after 5s idle = %d, want 3 (keep-warm 10s)", n)
	}
	m.Reconcile("f", 1, now.Add(11*time.Second)) // past keep-warm: down to desired
	waitFor(t, "down to 1", func() bool { ins, _ := m.Instances("f"); return len(ins) == 1 })
	m.Reconcile("f", 0, now.Add(time.Hour))
	waitFor(t, "zero", func() bool { ins, _ := m.Instances("f"); return len(ins) == 0 })
}

func TestStartingInstanceNeverExpires(t *testing.T) {
	d := &fakeDriver{gate: make(chan struct{})}
	m, _ := newManager(t, d, "{max: 1, idle_timeout: 1s}")
	m.grow("f", 1)
	m.Reconcile("f", 0, time.Now().Add(time.Hour))
	if n := m.count(api.StateStarting); n != 1 {
		t.Fatalf("starting = %d after idle reconcile, want 1", n)
	}
	close(d.gate)
	waitFor(t, "ready", func() bool { return m.count(api.StateReady) == 1 })
}

func TestFailedStartBacksOff(t *testing.T) {
	d := &fakeDriver{fail: errors.New("exit status 1")}
	m, notified := newManager(t, d, "{max: 1}")
	m.grow("f", 1)
	waitFor(t, "failed", func() bool { return m.count(api.StateFailed) == 1 })
	<-notified
	live, retryAt, failing := m.Health("f")
	if live != 0 || failing == nil || !retryAt.After(time.Now()) {
		t.Fatalf("Health = %d, %v, %v; want 0 live, an error, a future retry", live, failing, retryAt)
	}
	if started, err := m.grow("f", 1); started != 0 || err == nil {
		t.Errorf("grow during backoff = %d, %v; want 0 and the start error", started, err)
	}
	ins, _ := m.Instances("f")
	if len(ins) != 1 || ins[0].LastLogs[0] != "boom" || ins[0].ExitError == "" {
		t.Errorf("failed instance = %+v, want exit error and last logs", ins)
	}
}

func TestUpdateServesOldVersionUntilNewIsReady(t *testing.T) {
	d := &fakeDriver{}
	m, _ := newManager(t, d, "{max: 1}")
	m.grow("f", 1)
	waitFor(t, "ready", func() bool { return m.count(api.StateReady) == 1 })
	oldID, _, _, release, ok := m.tryAcquire("f")
	if !ok {
		t.Fatal("no slot")
	}
	d.mu.Lock()
	d.gate = make(chan struct{}) // the new version's start waits
	gate := d.gate
	d.mu.Unlock()
	f2, _ := spec.Parse([]byte("name: f\ncommand: [next]\nscaling: {max: 1}"))
	m.Put(f2, 2)

	// While v2 starts (one above max), v1 keeps taking requests.
	if n := m.count(api.StateStarting); n != 1 {
		t.Fatalf("starting after update = %d, want 1 new-version instance", n)
	}
	id, _, _, release2, ok := m.tryAcquire("f")
	if !ok || id != oldID {
		t.Fatalf("TryAcquire during rollout = %q, %v; want the old instance %s", id, ok, oldID)
	}
	release2()
	if in, _ := m.Instance(oldID); !in.Outdated || in.Version != 1 {
		t.Errorf("old instance = %+v, want version 1 outdated", in)
	}

	close(gate)
	waitFor(t, "old instance draining", func() bool { in, _ := m.Instance(oldID); return in.State == api.StateStopping })
	if id, _, _, r, ok := m.tryAcquire("f"); !ok || id == oldID {
		t.Errorf("TryAcquire after v2 is ready = %q, %v; want the new instance", id, ok)
	} else {
		r()
	}
	release() // the old instance's request ends: it stops
	waitFor(t, "old instance gone", func() bool {
		_, ok := m.Instance(oldID)
		return !ok
	})
}

func TestFailedUpdateKeepsOldVersionServing(t *testing.T) {
	d := &fakeDriver{}
	m, notified := newManager(t, d, "{max: 2}")
	m.grow("f", 1)
	waitFor(t, "ready", func() bool { return m.count(api.StateReady) == 1 })
	old, _ := m.Instances("f")
	d.mu.Lock()
	d.fail = errors.New("exit status 1")
	d.mu.Unlock()
	bad, _ := spec.Parse([]byte("name: f\ncommand: [bad]\nscaling: {max: 2}"))
	m.Put(bad, 2)
	waitFor(t, "new version failed", func() bool { return m.count(api.StateFailed) == 1 })
	for len(notified) > 0 {
		<-notified
	}
	id, _, _, release, ok := m.tryAcquire("f")
	if !ok || id != old[0].ID {
		t.Fatalf("TryAcquire after a failed update = %q, %v; want the old instance %s still serving", id, ok, old[0].ID)
	}
	release()
	if live, _, failing := m.Health("f"); live != 1 || failing == nil {
		t.Errorf("Health = %d live, %v; want 1 live and the failed start's error", live, failing)
	}

	// A fixed version rolls out and replaces it.
	d.mu.Lock()
	d.fail = nil
	d.mu.Unlock()
	good, _ := spec.Parse([]byte("name: f\ncommand: [good]\nscaling: {max: 2}"))
	m.Put(good, 3)
	waitFor(t, "old instance gone", func() bool { _, ok := m.Instance(old[0].ID); return !ok })
	ins, _ := m.Instances("f")
	if len(ins) == 0 || ins[0].Version != 3 || ins[0].State != api.StateReady {
		t.Errorf("instances after the fix = %+v, want a ready version-3 instance first", ins)
	}
}

func TestRemoveDrainsBusyInstances(t *testing.T) {
	d := &fakeDriver{}
	m, _ := newManager(t, d, "{max: 2, concurrency: 1}")
	m.grow("f", 2)
	waitFor(t, "2 ready", func() bool { return m.count(api.StateReady) == 2 })
	_, addr, _, release, ok := m.tryAcquire("f")
	if !ok {
		t.Fatal("no slot")
	}
	busy, idle := d.instance(0), d.instance(1)
	if busy.addr != addr {
		busy, idle = idle, busy
	}
	removed := make(chan struct{})
	go func() {
		m.Remove(context.Background(), "f")
		close(removed)
	}()
	waitFor(t, "function forgotten", func() bool { _, ok := m.Function("f"); return !ok })
	waitFor(t, "idle instance stopped", idle.stopped)
	if busy.stopped() {
		t.Fatal("Remove stopped an instance with a request in flight")
	}
	select {
	case <-removed:
		t.Fatal("Remove returned before the request in flight ended")
	default:
	}
	release()
	<-removed
	if !busy.stopped() {
		t.Error("busy instance still running after its request ended and Remove returned")
	}
}

func TestRemoveCutsBusyInstancesWhenContextEnds(t *testing.T) {
	d := &fakeDriver{}
	m, _ := newManager(t, d, "{max: 1}")
	m.grow("f", 1)
	waitFor(t, "ready", func() bool { return m.count(api.StateReady) == 1 })
	_, _, _, release, _ := m.tryAcquire("f")
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.Remove(ctx, "f")
	if !d.instance(0).stopped() {
		t.Error("busy instance still running after Remove's context ended")
	}
}

func TestRemoveAbandonsStartingInstances(t *testing.T) {
	d := &fakeDriver{gate: make(chan struct{})}
	m, _ := newManager(t, d, "{max: 1}")
	m.grow("f", 1)
	d.waitStarted(t, 1)
	m.Remove(context.Background(), "f")
	waitFor(t, "start abandoned", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.abandoned == 1
	})
	if _, ok := m.Instances("f"); ok {
		t.Error("removed function still listed")
	}
}

func TestNoStartsAfterShutdown(t *testing.T) {
	d := &fakeDriver{}
	m, _ := newManager(t, d, "{max: 2}")
	m.Shutdown(context.Background())
	if started, _ := m.grow("f", 2); started != 0 {
		t.Errorf("grow after Shutdown started %d instances", started)
	}
	m.Reconcile("f", 2, time.Now())
	if ins, _ := m.Instances("f"); len(ins) != 0 {
		t.Errorf("instances after Shutdown = %d, want 0", len(ins))
	}
}

func TestOldVersionCrashLeavesPool(t *testing.T) {
	d := &fakeDriver{}
	m, _ := newManager(t, d, "{max: 2}")
	m.grow("f", 1)
	waitFor(t, "ready", func() bool { return m.count(api.StateReady) == 1 })
	oldID, _, _, release, _ := m.tryAcquire("f") // keeps the old version draining
	defer release()
	f2, _ := spec.Parse([]byte("name: f\ncommand: [next]\nscaling: {max: 2}"))
	m.Put(f2, 2)
	waitFor(t, "old instance draining", func() bool { in, _ := m.Instance(oldID); return in.State == api.StateStopping })
	d.instance(0).Stop(context.Background()) // the draining instance crashes
	waitFor(t, "crashed old instance gone", func() bool {
		ins, _ := m.Instances("f")
		for _, in := range ins {
			if in.ID == oldID {
				return false
			}
		}
		return true
	})
}

// A start that completes just as a stop cancels it must not leave its
// instance running unowned.
func TestStopRacingStartStopsTheInstance(t *testing.T) {
	d := &fakeDriver{gate: make(chan struct{}), readyOnCancel: true}
	m, _ := newManager(t, d, "{max: 1}")
	m.grow("f", 1)
	d.waitStarted(t, 1)
	m.Remove(context.Background(), "f")
	waitFor(t, "the late instance stopped", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.insts) == 1 && d.insts[0].stopped()
	})
}

// An update replaces instances one for one: capacity never drops below
// what was serving.
func TestRolloutReplacesOneForOne(t *testing.T) {
	d := &fakeDriver{}
	m, _ := newManager(t, d, "{min: 2, max: 2}")
	m.Reconcile("f", 2, time.Now())
	waitFor(t, "2 ready", func() bool { return m.count(api.StateReady) == 2 })
	d.mu.Lock()
	d.gate = make(chan struct{})
	gate := d.gate
	d.mu.Unlock()
	f2, _ := spec.Parse([]byte("name: f\ncommand: [next]\nscaling: {min: 2, max: 2}"))
	m.Put(f2, 2)
	if n := m.count(api.StateStarting); n != 1 {
		t.Fatalf("starting after update = %d, want 1 (one at a time)", n)
	}
	gate <- struct{}{} // the first new instance is ready
	waitFor(t, "one old instance retired and the next new one starting", func() bool {
		ins, _ := m.Instances("f")
		old, newReady, newStarting := 0, 0, 0
		for _, in := range ins {
			switch {
			case in.Version == 1:
				old++
			case in.State == api.StateReady:
				newReady++
			case in.State == api.StateStarting:
				newStarting++
			}
		}
		return old == 1 && newReady == 1 && newStarting == 1
	})
	close(gate)
	waitFor(t, "all on version 2", func() bool {
		ins, _ := m.Instances("f")
		for _, in := range ins {
			if in.Version != 2 || in.State != api.StateReady {
				return false
			}
		}
		return len(ins) == 2
	})
}

// While the new version starts, keep-warm does not stop the old instance
// it is to replace: if the new version fails, the old one still serves.
func TestRolloutKeepsOldInstanceThroughIdleExpiry(t *testing.T) {
	d := &fakeDriver{}
	m, _ := newManager(t, d, "{min: 1, max: 1, idle_timeout: 1s}")
	m.grow("f", 1)
	waitFor(t, "ready", func() bool { return m.count(api.StateReady) == 1 })
	old, _ := m.Instances("f")
	d.mu.Lock()
	d.gate = make(chan struct{})
	d.mu.Unlock()
	f2, _ := spec.Parse([]byte("name: f\ncommand: [next]\nscaling: {min: 1, max: 1, idle_timeout: 1s}"))
	m.Put(f2, 2)
	m.Reconcile("f", 1, time.Now().Add(time.Hour)) // long idle, new version still starting
	if in, ok := m.Instance(old[0].ID); !ok || in.State != api.StateReady {
		t.Errorf("old instance after an idle reconcile during the rollout = %+v, %v; want still ready", in, ok)
	}
}

// TestAcquirePicked: pick sees only the instances that can take a request
// now, oldest first; the slot is taken on its choice under the same lock;
// release gives it back once however often it is called.
func TestAcquirePicked(t *testing.T) {
	m, _ := newManager(t, &fakeDriver{}, "{max: 2, concurrency: 1}")
	m.grow("f", 2)
	waitFor(t, "2 ready", func() bool { return m.count(api.StateReady) == 2 })
	ins, _ := m.Instances("f")
	var offered [][]string
	newest := func(eps []api.Endpoint) (api.Endpoint, bool) {
		var ids []string
		for _, e := range eps {
			ids = append(ids, e.ID)
		}
		offered = append(offered, ids)
		if len(eps) == 0 {
			return api.Endpoint{}, false
		}
		return eps[len(eps)-1], true
	}
	e1, r1, ok := m.AcquirePicked("f", newest)
	if !ok || e1.ID != ins[1].ID {
		t.Fatalf("first AcquirePicked = %s, %v; want the newest, %s", e1.ID, ok, ins[1].ID)
	}
	e2, r2, ok := m.AcquirePicked("f", newest)
	if !ok || e2.ID != ins[0].ID {
		t.Fatalf("second AcquirePicked = %s, %v; want the other, %s", e2.ID, ok, ins[0].ID)
	}
	if _, _, ok := m.AcquirePicked("f", newest); ok {
		t.Fatal("AcquirePicked succeeded with every instance at its concurrency")
	}
	want := [][]string{{ins[0].ID, ins[1].ID}, {ins[0].ID}, nil}
	if !slices.EqualFunc(offered, want, slices.Equal) {
		t.Errorf("pick was offered %v, want %v", offered, want)
	}
	if _, _, ok := m.AcquirePicked("nope", newest); ok {
		t.Error("AcquirePicked succeeded for an unknown function")
	}
	for _, r := range []func(){r1, r1, r2, r2} {
		r() // double release is harmless
	}
	if ins, _ := m.Instances("f"); ins[0].InFlight != 0 || ins[1].InFlight != 0 {
		t.Errorf("in flight after releases = %d, %d, want 0, 0", ins[0].InFlight, ins[1].InFlight)
	}
}
