package activator

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/spec"
)

// fakeCapacity is a pool of slots the test opens and closes by hand.
type fakeCapacity struct {
	mu      sync.Mutex
	fn      *spec.Function
	free    int
	readyAt time.Time
	started int
	failing error
	live    int
	pokes   []int // demand carried by each Wake
	notify  func(string)
}

func (f *fakeCapacity) Function(name string) (*spec.Function, bool) {
	return f.fn, name == f.fn.Name
}

func (f *fakeCapacity) Endpoints(fn string) []api.Endpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.free == 0 {
		return nil
	}
	return []api.Endpoint{{ID: "i1", Addr: "127.0.0.1:1", Concurrency: 0, ReadyAt: f.readyAt}}
}

func (f *fakeCapacity) Acquire(fn, id string) (func(), bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.free == 0 {
		return nil, false
	}
	f.free--
	return func() {
		f.mu.Lock()
		f.free++
		f.mu.Unlock()
		f.notify(fn)
	}, true
}

// Wake is the controller's side of the poke: it records the demand and,
// unless starts fail, counts a start.
func (f *fakeCapacity) Wake(fn string, demand int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pokes = append(f.pokes, demand)
	if f.failing != nil {
		return
	}
	f.started++
	f.live = 1
}

func (f *fakeCapacity) Health(fn string) (int, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live, time.Time{}, f.failing
}

// open adds n free slots, as an instance becoming ready does.
func (f *fakeCapacity) open(n int, at time.Time) {
	f.mu.Lock()
	f.free += n
	f.readyAt = at
	f.mu.Unlock()
	f.notify(f.fn.Name)
}

func newTest(t *testing.T, queue int) (*Activator, *fakeCapacity) {
	t.Helper()
	fn := &spec.Function{Name: "f", Command: []string{"x"}}
	fn.Default()
	fn.Scaling.Queue = queue
	c := &fakeCapacity{fn: fn}
	a := New(c, c)
	c.notify = a.Notify
	return a, c
}

// waitQueued blocks until n requests wait in f's queue.
func waitQueued(t *testing.T, a *Activator, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q := a.queue("f")
		q.mu.Lock()
		got := len(q.waiters)
		q.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued = %d, want %d", got, n)
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
}

func TestFastPathWhenSlotFree(t *testing.T) {
	a, c := newTest(t, 10)
	c.free = 1
	err := a.Try(context.Background(), "f", func(s Slot) error {
		if s.Cold || s.Queue != 0 {
			t.Errorf("slot = %+v, want warm with no queue time", s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.started != 0 {
		t.Errorf("started %d instances, want 0 on the fast path", c.started)
	}
}

func TestQueuedRequestsAreServedInOrderWhenCapacityArrives(t *testing.T) {
	a, c := newTest(t, 10)
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := a.Try(context.Background(), "f", func(s Slot) error {
				if !s.Cold {
					t.Errorf("request %d: Cold = false, want true (it waited for a start)", i)
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
		waitQueued(t, a, i+1) // fixes arrival order
	}
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if started == 0 {
		t.Fatal("no instance start requested for queued demand")
	}
	c.open(1, time.Now())
	wg.Wait()
	if len(order) != 3 || order[0] != 0 || order[1] != 1 || order[2] != 2 {
		t.Errorf("service order = %v, want [0 1 2]", order)
	}
}

func TestQueueFull(t *testing.T) {
	a, _ := newTest(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Try(ctx, "f", func(Slot) error { return nil }) }()
	waitQueued(t, a, 1)
	err := a.Try(context.Background(), "f", func(Slot) error { return nil })
	var qf *QueueFullError
	if !errors.As(err, &qf) || !errors.Is(err, ErrQueueFull) {
		t.Errorf("err = %v, want *QueueFullError", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("waiter err = %v, want context.Canceled", err)
	}
	waitQueued(t, a, 0)
}

func TestDeadlineWhileQueued(t *testing.T) {
	a, _ := newTest(t, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := a.Try(ctx, "f", func(Slot) error { t.Error("callback ran"); return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	waitQueued(t, a, 0)
}

func TestStartFailureFailsWaiters(t *testing.T) {
	a, c := newTest(t, 10)
	done := make(chan error)
	go func() { done <- a.Try(context.Background(), "f", func(Slot) error { return nil }) }()
	waitQueued(t, a, 1)
	c.mu.Lock()
	c.failing, c.live = errors.New("exited with status 1 before becoming ready"), 0
	c.mu.Unlock()
	a.Notify("f")
	err := <-done
	var sf *StartFailedError
	if !errors.As(err, &sf) || !errors.Is(err, ErrStartFailed) {
		t.Fatalf("err = %v, want *StartFailedError", err)
	}
	if got, want := err.Error(), "instance failed to start: exited with status 1 before becoming ready"; got != want {
		t.Errorf("err = %q, want %q", got, want)
	}
	// While starts back off, new requests fail at once with the reason.
	err = a.Try(context.Background(), "f", func(Slot) error { return nil })
	if !errors.As(err, &sf) {
		t.Errorf("err during backoff = %v, want *StartFailedError", err)
	}
}

func TestUnknownFunction(t *testing.T) {
	a, _ := newTest(t, 10)
	if err := a.Try(context.Background(), "nope", nil); !errors.Is(err, ErrUnknownFunction) {
		t.Errorf("err = %v, want ErrUnknownFunction", err)
	}
}

func TestDemandIsTimeWeighted(t *testing.T) {
	a, c := newTest(t, 10)
	var nowNS atomic.Int64
	nowNS.Store(time.Unix(1000, 0).UnixNano())
	a.now = func() time.Time { return time.Unix(0, nowNS.Load()) }
	c.free = 2
	a.Sample("f") // start a period at t=1000
	release := make(chan struct{})
	held := make(chan struct{})
	go a.Try(context.Background(), "f", func(Slot) error { close(held); <-release; return nil })
	<-held
	nowNS.Add(int64(3 * time.Second)) // one request in flight for 3s
	avg, cur := a.Demand("f")
	if avg != 1 || cur != 1 {
		t.Errorf("Demand = %v, %d; want 1, 1", avg, cur)
	}
	close(release)
	waitIdle(t, a)
}

func waitIdle(t *testing.T, a *Activator) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q := a.queue("f")
		q.mu.Lock()
		n := q.inFlight
		q.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("in flight = %d, want 0", n)
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
}

// TestPokeCarriesDemand: each request that has to wait pokes at once with
// in flight + queued, the instantaneous demand the controller sizes by.
func TestPokeCarriesDemand(t *testing.T) {
	a, c := newTest(t, 10)
	c.free = 1
	release := make(chan struct{})
	held := make(chan struct{})
	go a.Try(context.Background(), "f", func(Slot) error { close(held); <-release; return nil })
	<-held
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Try(context.Background(), "f", func(Slot) error { return nil }); err != nil {
				t.Error(err)
			}
		}()
		waitQueued(t, a, i+1)
	}
	c.mu.Lock()
	got := slices.Clone(c.pokes)
	c.mu.Unlock()
	if want := []int{2, 3}; !slices.Equal(got, want) {
		t.Errorf("pokes = %v, want %v (1 in flight + 1, then + 2 queued)", got, want)
	}
	close(release) // the freed slot serves the waiters one after the other
	wg.Wait()
	waitIdle(t, a)
}

func TestPick(t *testing.T) {
	ep := func(id string, inFlight, conc int) api.Endpoint {
		return api.Endpoint{ID: id, InFlight: inFlight, Concurrency: conc}
	}
	tests := []struct {
		name string
		eps  []api.Endpoint
		want string // "" = none
	}{
		{"none", nil, ""},
		{"least in flight", []api.Endpoint{ep("old", 3, 4), ep("new", 1, 4)}, "new"},
		{"ties go to the oldest", []api.Endpoint{ep("old", 1, 4), ep("mid", 1, 4), ep("new", 1, 4)}, "old"},
		{"full ones are skipped", []api.Endpoint{ep("old", 4, 4), ep("new", 3, 4)}, "new"},
		{"all full", []api.Endpoint{ep("old", 4, 4), ep("new", 4, 4)}, ""},
		{"unlimited never full", []api.Endpoint{ep("old", 100, 0)}, "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := pick(tt.eps)
			if ok != (tt.want != "") || (ok && got.ID != tt.want) {
				t.Errorf("pick = %q, %v; want %q", got.ID, ok, tt.want)
			}
		})
	}
}

// pickingCapacity is a Capacity with the Picker fast path: the activator
// must dispatch through it, with its own dispatch rule, and never list.
type pickingCapacity struct {
	*fakeCapacity
	t      *testing.T
	picked atomic.Int32
}

func (p *pickingCapacity) Endpoints(string) []api.Endpoint {
	p.t.Error("Endpoints called on a Capacity that has AcquirePicked")
	return nil
}

func (p *pickingCapacity) AcquirePicked(fn string, pickFn func([]api.Endpoint) (api.Endpoint, bool)) (api.Endpoint, func(), bool) {
	p.picked.Add(1)
	p.mu.Lock()
	free := p.free
	p.mu.Unlock()
	if free == 0 {
		return api.Endpoint{}, nil, false
	}
	// Two endpoints; the dispatch rule takes the less loaded one.
	e, ok := pickFn([]api.Endpoint{{ID: "busy", InFlight: 3}, {ID: "i1", Addr: "127.0.0.1:1", InFlight: 1}})
	if !ok || e.ID != "i1" {
		p.t.Errorf("pick chose %+v, %v; want i1, the less loaded", e, ok)
	}
	release, ok := p.fakeCapacity.Acquire(fn, e.ID)
	return e, release, ok
}

func TestTryUsesPicker(t *testing.T) {
	fn := &spec.Function{Name: "f", Command: []string{"x"}}
	fn.Default()
	c := &pickingCapacity{fakeCapacity: &fakeCapacity{fn: fn}, t: t}
	a := New(c, c)
	c.notify = a.Notify
	c.open(1, time.Now())
	var got string
	if err := a.Try(context.Background(), "f", func(s Slot) error { got = s.Instance; return nil }); err != nil {
		t.Fatal(err)
	}
	if got != "i1" || c.picked.Load() == 0 {
		t.Fatalf("served by %q after %d picks, want i1 through AcquirePicked", got, c.picked.Load())
	}
	c.mu.Lock()
	free := c.free
	c.mu.Unlock()
	if free != 1 {
		t.Errorf("%d free slots after the call, want the one back", free)
	}
}

// TestTryNow: a free slot serves the call at once and counts it, as Try
// would; with no free slot, or calls already waiting, TryNow does
// nothing (no count, no poke, f not run) and leaves the call to Try.
func TestTryNow(t *testing.T) {
	a, c := newTest(t, 10)
	ran := 0
	f := func(Slot) error { ran++; return nil }

	done, err := a.TryNow("f", f)
	if done || err != nil || ran != 0 {
		t.Fatalf("TryNow with no slot = %v, %v (ran %d), want false, nil, not run", done, err, ran)
	}
	c.mu.Lock()
	pokes := len(c.pokes)
	c.mu.Unlock()
	if st := a.Sample("f"); st.Requests != 0 || pokes != 0 {
		t.Fatalf("TryNow with no slot counted %d requests and %d pokes, want none", st.Requests, pokes)
	}

	c.open(1, time.Now())
	done, err = a.TryNow("f", f)
	if !done || err != nil || ran != 1 {
		t.Fatalf("TryNow with a free slot = %v, %v (ran %d), want true, nil, run once", done, err, ran)
	}
	if st := a.Sample("f"); st.Requests != 1 || st.InFlight != 0 {
		t.Fatalf("after TryNow: %+v, want 1 request, none in flight", st)
	}

	// A call waits (the slot is busy); a slot that frees is its, not a
	// newcomer's through TryNow.
	c.mu.Lock()
	c.free = 0
	c.mu.Unlock()
	waited := make(chan error, 1)
	go func() { waited <- a.Try(context.Background(), "f", f) }()
	waitQueued(t, a, 1)
	c.mu.Lock()
	c.free = 1 // free, but not yet announced: the waiter is still queued
	c.mu.Unlock()
	if done, _ := a.TryNow("f", f); done {
		t.Fatal("TryNow took a slot ahead of a waiting call")
	}
	c.notify("f")
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if ran != 2 {
		t.Fatalf("ran %d times, want 2 (TryNow's and the waiter's)", ran)
	}

	if done, err := a.TryNow("nope", f); !done || !errors.Is(err, ErrUnknownFunction) {
		t.Errorf("TryNow of an unknown function = %v, %v, want true, ErrUnknownFunction", done, err)
	}
}
