package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/spec"
)

// fakeDriver starts instances that exist only in memory; the end-to-end
// tests cover real processes. Starts block until the test releases them.
type fakeDriver struct {
	mu      sync.Mutex
	fail    error
	gate    chan struct{} // nil: start at once
	started int
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
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		return nil, &driver.StartError{Reason: "exited with status 1 before becoming ready", Tail: []string{"boom"}, Err: fail}
	}
	return &fakeInstance{addr: fmt.Sprintf("127.0.0.1:%d", 10000+n), done: make(chan struct{})}, nil
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
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
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

func TestEnsureCapacityStartsForDemandWithinMax(t *testing.T) {
	m, _ := newManager(t, &fakeDriver{}, "{max: 3, concurrency: 2}")
	started, err := m.EnsureCapacity("f", 5) // 5 requests / 2 per instance → 3
	if err != nil || started != 3 {
		t.Fatalf("EnsureCapacity(5) = %d, %v; want 3 started", started, err)
	}
	started, _ = m.EnsureCapacity("f", 50)
	if started != 0 {
		t.Errorf("EnsureCapacity beyond max started %d more, want 0", started)
	}
	waitFor(t, "3 ready", func() bool { return m.count(api.StateReady) == 3 })
}

func TestTryAcquireLeastLoadedTiesToOldest(t *testing.T) {
	m, _ := newManager(t, &fakeDriver{}, "{max: 2, concurrency: 2}")
	m.EnsureCapacity("f", 3)
	waitFor(t, "2 ready", func() bool { return m.count(api.StateReady) == 2 })
	ins, _ := m.Instances("f")
	oldest := ins[0].ID
	var releases []func()
	var got []string
	for range 4 {
		id, _, _, release, ok := m.TryAcquire("f")
		if !ok {
			t.Fatal("TryAcquire failed with free slots")
		}
		got = append(got, id)
		releases = append(releases, release)
	}
	if got[0] != oldest || got[1] == oldest || got[2] != oldest {
		t.Errorf("acquire order %v, want oldest (%s) first, then the other, then oldest", got, oldest)
	}
	if _, _, _, _, ok := m.TryAcquire("f"); ok {
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
	m.EnsureCapacity("f", 3)
	m.EnsureCapacity("f", 0)
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
	m.EnsureCapacity("f", 1)
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
	m.EnsureCapacity("f", 1)
	waitFor(t, "failed", func() bool { return m.count(api.StateFailed) == 1 })
	<-notified
	live, retryAt, failing := m.Health("f")
	if live != 0 || failing == nil || !retryAt.After(time.Now()) {
		t.Fatalf("Health = %d, %v, %v; want 0 live, an error, a future retry", live, failing, retryAt)
	}
	if started, err := m.EnsureCapacity("f", 1); started != 0 || err == nil {
		t.Errorf("EnsureCapacity during backoff = %d, %v; want 0 and the start error", started, err)
	}
	ins, _ := m.Instances("f")
	if len(ins) != 1 || ins[0].LastLogs[0] != "boom" || ins[0].ExitError == "" {
		t.Errorf("failed instance = %+v, want exit error and last logs", ins)
	}
}

func TestUpdateDrainsOldVersion(t *testing.T) {
	m, _ := newManager(t, &fakeDriver{}, "{max: 2}")
	m.EnsureCapacity("f", 1)
	waitFor(t, "ready", func() bool { return m.count(api.StateReady) == 1 })
	oldID, _, _, release, ok := m.TryAcquire("f")
	if !ok {
		t.Fatal("no slot")
	}
	f2, _ := spec.Parse([]byte("name: f\ncommand: [y]\nscaling: {max: 2}"))
	m.Put(f2, 2)
	if _, _, _, _, ok := m.TryAcquire("f"); ok {
		t.Error("old-version instance took a new request after the update")
	}
	if n := m.count(api.StateStopping); n != 1 {
		t.Errorf("draining instances = %d, want 1 (still serving its request)", n)
	}
	release()
	waitFor(t, "old instance gone", func() bool {
		_, ok := m.Instance(oldID)
		return !ok
	})
}
