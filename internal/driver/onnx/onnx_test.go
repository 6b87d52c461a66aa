package onnx

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/driver"
	"github.com/ember-run/ember/internal/driver/process"
	"github.com/ember-run/ember/internal/eventually"
)

// Pooled workers are process instances; specialise re-points their output
// through this interface, which would otherwise fail silently if it drifted.
var _ redirector = (*process.Instance)(nil)

// stubProc stands in for the process driver: its instances answer no HTTP
// (the worker protocol is covered with real workers in internal/worker and
// e2e), which makes a pooled worker's /load fail and the start fall back
// to a fresh worker.
type stubProc struct {
	addr string // what instances answer on ("": nothing does)

	mu    sync.Mutex
	insts []*stubInstance
	specs []driver.StartSpec
}

type stubInstance struct {
	addr string
	done chan struct{}
	once sync.Once
}

func (s *stubInstance) Addr() string           { return cmp.Or(s.addr, "127.0.0.1:1") }
func (s *stubInstance) Phases() []driver.Phase { return nil }
func (s *stubInstance) Done() <-chan struct{}  { return s.done }
func (s *stubInstance) Err() error             { return nil }
func (s *stubInstance) Stop(context.Context) error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (p *stubProc) Start(ctx context.Context, s driver.StartSpec) (driver.Instance, error) {
	in := &stubInstance{addr: p.addr, done: make(chan struct{})}
	p.mu.Lock()
	p.insts = append(p.insts, in)
	p.specs = append(p.specs, s)
	p.mu.Unlock()
	return in, nil
}

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) StateChange(fn, id, from, to string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fn+" "+id+" "+from+"→"+to)
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// A waiting worker is reported under PoolFunction from its start until it
// is taken (then it is its function's instance) or the pool closes.
func TestPoolReportsWaitingWorkers(t *testing.T) {
	d := New(&stubProc{}, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{PoolSize: 1})
	rec := &recorder{}
	d.SetObserver(rec)
	d.Warm()
	waitFor(t, "pool filled", func() bool { return d.PoolReady() == 1 })
	w1 := PoolFunction + "-" + d.token + "-1"
	if _, err := d.Start(context.Background(), driver.StartSpec{Function: "ocr", Task: "ocr", Model: "/m"}); err != nil {
		t.Fatal(err)
	}
	d.Close(context.Background())
	want := []string{
		PoolFunction + " " + w1 + " →starting",
		PoolFunction + " " + w1 + " starting→ready",
		PoolFunction + " " + w1 + " ready→", // taken
	}
	checkEvents(t, rec.list(), want)
}

// A waiting worker that dies is reported failed and leaves the pool.
func TestPoolWorkerDyingWhileWaiting(t *testing.T) {
	proc := &stubProc{}
	d := New(proc, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{PoolSize: 1})
	rec := &recorder{}
	d.SetObserver(rec)
	d.Warm()
	waitFor(t, "pool filled", func() bool { return d.PoolReady() == 1 })
	proc.mu.Lock()
	proc.insts[0].Stop(context.Background()) // the worker exits on its own
	proc.mu.Unlock()
	waitFor(t, "the dead worker reported", func() bool { return len(rec.list()) == 3 })
	if n := d.PoolReady(); n != 0 {
		t.Errorf("pool holds %d workers after its only one died, want 0 until the refill", n)
	}
	d.Close(context.Background())
	w1 := PoolFunction + "-" + d.token + "-1"
	checkEvents(t, rec.list()[:3], []string{
		PoolFunction + " " + w1 + " →starting",
		PoolFunction + " " + w1 + " starting→ready",
		PoolFunction + " " + w1 + " ready→failed",
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventually.True(t, 5*time.Second, time.Millisecond, what, cond)
}

func checkEvents(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("events = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %q, want %q", i, got[i], want[i])
		}
	}
}
