package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/spec"
	"github.com/ember-run/ember/internal/store/sqlite"
)

// spyStore records the outcome of every Finish and the webhooks added.
type spyStore struct {
	jobs.Store
	mu       sync.Mutex // guards the following
	finishes map[string][]bool
	hooks    map[string][]string // job id → events of the webhooks added
}

func newSpy(st jobs.Store) *spyStore {
	return &spyStore{Store: st, finishes: map[string][]bool{}, hooks: map[string][]string{}}
}

func (s *spyStore) Update(ctx context.Context, f func(jobs.Tx) error) error {
	return s.Store.Update(ctx, func(tx jobs.Tx) error { return f(&spyTx{Tx: tx, s: s}) })
}

func (s *spyStore) finishResults(id string) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.finishes[id]...)
}

func (s *spyStore) hookEvents(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.hooks[id]...)
}

type spyTx struct {
	jobs.Tx
	s *spyStore
}

func (t *spyTx) Finish(r *jobs.Record) (bool, error) {
	ok, err := t.Tx.Finish(r)
	if err == nil {
		t.s.mu.Lock()
		t.s.finishes[r.ID] = append(t.s.finishes[r.ID], ok)
		t.s.mu.Unlock()
	}
	return ok, err
}

func (t *spyTx) AddWebhook(w *jobs.Webhook) error {
	err := t.Tx.AddWebhook(w)
	if err == nil {
		t.s.mu.Lock()
		t.s.hooks[w.JobID] = append(t.s.hooks[w.JobID], w.Event)
		t.s.mu.Unlock()
	}
	return err
}

// stallInvoker takes a slot, then stalls until release is closed, as a
// worker does that hangs or is cut off mid-attempt.
type stallInvoker struct {
	inner   *httpInvoker
	entered chan struct{}
	release chan struct{}
}

func (s *stallInvoker) Invoke(ctx context.Context, fn string, r *http.Request, onAcquire func(bool), handle func(*http.Response) error) error {
	return s.inner.Invoke(ctx, fn, r, func(cold bool) {
		onAcquire(cold)
		close(s.entered)
		<-s.release
	}, handle)
}

// openShared opens one store for several workers, as nodes share one.
func openShared(t *testing.T) jobs.Store {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ember.db"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.NewJobs(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); db.Close() })
	return st
}

// startWorker runs a Service until the returned stop is called (or the
// test ends).
func startWorker(t *testing.T, st jobs.Store, inv jobs.Invoker, fns functions, opts jobs.Options) (*jobs.Service, func()) {
	t.Helper()
	svc := jobs.New(st, inv, fns, opts, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return svc, stop
}

// eventually polls cond until it holds or 10 seconds have passed: for
// writes the Service commits in the background.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func attemptMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /attempt", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"attempt":%q}`, r.Header.Get("Ember-Attempt"))
	})
	return m
}

// TestLeaseExpiredJobRetriedByAnotherWorker: worker A takes a job and
// stops heartbeating mid-attempt (its clock stands still, its invoker
// stalls); once the lease ends on B's clock, B claims the job and runs it.
// A wakes while B's attempt runs: its Finish is refused (it no longer
// holds the lease). B completes the job: one terminal write, one completed
// webhook.
func TestLeaseExpiredJobRetriedByAnotherWorker(t *testing.T) {
	srv := httptest.NewServer(attemptMux())
	t.Cleanup(srv.Close)
	var hookMu sync.Mutex
	completed := map[string]bool{} // webhook ids of completed deliveries
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("Ember-Webhook-Event") == api.WebhookCompleted {
			hookMu.Lock()
			completed[r.Header.Get(jobs.HeaderWebhookID)] = true
			hookMu.Unlock()
		}
	}))
	t.Cleanup(hook.Close)

	fns := functions{"attempt": fn("attempt", func(f *spec.Function) { f.Retries = 2 })}
	st := openShared(t)
	spyA, spyB := newSpy(st), newSpy(st)
	clockA, clockB := newFakeClock(), newFakeClock()
	opts := func(id string, c jobs.Clock) jobs.Options {
		return jobs.Options{WorkerID: id, Clock: c, LeaseDuration: 30 * time.Second, HeartbeatInterval: 10 * time.Second, ClaimInterval: time.Second}
	}
	invA := &stallInvoker{inner: &httpInvoker{addr: srv.Listener.Addr().String(), client: srv.Client()},
		entered: make(chan struct{}), release: make(chan struct{})}
	invB := &stallInvoker{inner: &httpInvoker{addr: srv.Listener.Addr().String(), client: srv.Client()},
		entered: make(chan struct{}), release: make(chan struct{})}
	a, stopA := startWorker(t, spyA, invA, fns, opts("a", clockA))
	_, stopB := startWorker(t, spyB, invB, fns, opts("b", clockB))
	// Registered last, so run first: a failing test does not leave a
	// worker stalled in its attempt and its drain waiting forever.
	releaseA, releaseB := sync.OnceFunc(func() { close(invA.release) }), sync.OnceFunc(func() { close(invB.release) })
	t.Cleanup(func() { releaseA(); releaseB() })

	p, err := a.Submit(context.Background(), jobs.SubmitRequest{Function: "attempt", Webhook: hook.URL, WebhookEvents: []string{api.WebhookCompleted}})
	if err != nil {
		t.Fatal(err)
	}
	<-invA.entered
	eventually(t, "A's attempt 1 recorded", func() bool {
		r, err := st.Get(context.Background(), p.ID)
		return err == nil && r.Attempts == 1 && r.Lease.Owner == "a"
	})

	// Before the lease ends B leaves the job alone; after, it claims it.
	clockB.Advance(29 * time.Second)
	// B's claim loop re-arms its timer (ClaimInterval) on its own
	// goroutine after that tick; advancing before it has would fire
	// nothing, and B would never claim.
	eventually(t, "B's claim timer re-armed", func() bool { return clockB.armed(time.Second) })
	clockB.Advance(2 * time.Second)
	<-invB.entered
	eventually(t, "B's attempt 2 recorded", func() bool {
		r, err := st.Get(context.Background(), p.ID)
		return err == nil && r.Attempts == 2 && r.Lease.Owner == "b"
	})

	// A wakes up and tries to complete the job it no longer holds.
	releaseA()
	eventually(t, "A's late Finish", func() bool { return len(spyA.finishResults(p.ID)) > 0 })
	if got := spyA.finishResults(p.ID); len(got) != 1 || got[0] {
		t.Errorf("A's Finish results = %v, want one refused", got)
	}
	if r, err := st.Get(context.Background(), p.ID); err != nil || r.Status != api.PredictionProcessing {
		t.Fatalf("after A's late Finish the record is %+v, %v; want still processing (B holds it)", r, err)
	}

	releaseB()
	eventually(t, "B to complete the job", func() bool {
		r, err := st.Get(context.Background(), p.ID)
		return err == nil && r.Status == api.PredictionSucceeded
	})
	r, err := st.Get(context.Background(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Output) != `{"attempt":"2"}` || r.Attempts != 2 {
		t.Errorf("record: output %s after %d attempts, want B's attempt 2", r.Output, r.Attempts)
	}
	if got := spyB.finishResults(p.ID); len(got) != 1 || !got[0] {
		t.Errorf("B's Finish results = %v, want one applied", got)
	}
	if got := append(spyA.hookEvents(p.ID), spyB.hookEvents(p.ID)...); len(got) != 1 || got[0] != api.WebhookCompleted {
		t.Errorf("webhooks added = %v, want one completed", got)
	}
	eventually(t, "B's Finish", func() bool { return len(spyB.finishResults(p.ID)) > 0 })
	eventually(t, "the completed webhook delivered", func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		return len(completed) > 0
	})
	// A, asked about the job, tells what the record says.
	got, err := a.Get(context.Background(), p.ID)
	if err != nil || got.Status != api.PredictionSucceeded || string(got.Output) != `{"attempt":"2"}` {
		t.Errorf("A's Get = %+v, %v; want B's result", got, err)
	}
	stopA()
	stopB()
	hookMu.Lock()
	defer hookMu.Unlock()
	if len(completed) != 1 {
		t.Errorf("%d distinct completed webhooks delivered, want 1", len(completed))
	}
}

// TestCancelFromAnotherWorker: a cancel sent to a worker that does not
// hold the job is stored as a request; the holder cancels the job at its
// next heartbeat, and the canceller's Cancel and Wait see it from the record.
func TestCancelFromAnotherWorker(t *testing.T) {
	srv := httptest.NewServer(attemptMux())
	t.Cleanup(srv.Close)
	fns := functions{"attempt": fn("attempt", nil)}
	st := openShared(t)
	clockA := newFakeClock()
	invA := &httpInvoker{addr: srv.Listener.Addr().String(), client: srv.Client(), gates: map[string]chan struct{}{}}
	invA.gate("attempt", make(chan struct{})) // never opens: A's job waits for a slot
	a, _ := startWorker(t, st, invA, fns, jobs.Options{WorkerID: "a", Clock: clockA, LeaseDuration: 30 * time.Second, HeartbeatInterval: 10 * time.Second})
	// B runs on the real clock, reading the record every few milliseconds.
	b, _ := startWorker(t, st, invA, fns, jobs.Options{WorkerID: "b", PollInterval: 5 * time.Millisecond})

	p, err := a.Submit(context.Background(), jobs.SubmitRequest{Function: "attempt"})
	if err != nil {
		t.Fatal(err)
	}
	// B holds no job: Wait follows the record and times out still running.
	w, err := b.Wait(context.Background(), p.ID, 20*time.Millisecond)
	if err != nil || isDone(w.Status) {
		t.Fatalf("B's Wait before the cancel = %v, %v; want the job still running", w.Status, err)
	}
	type result struct {
		p   *api.Prediction
		err error
	}
	canceled := make(chan result, 1)
	go func() {
		p, err := b.Cancel(context.Background(), p.ID)
		canceled <- result{p, err}
	}()
	eventually(t, "the cancel request stored", func() bool {
		r, err := st.Get(context.Background(), p.ID)
		return err == nil && r.CancelRequested
	})
	clockA.Advance(10 * time.Second) // A's heartbeat
	res := <-canceled
	if res.err != nil || res.p.Status != api.PredictionCanceled {
		t.Fatalf("B's Cancel = %+v, %v; want canceled", res.p, res.err)
	}
	w, err = b.Wait(context.Background(), p.ID, time.Minute)
	if err != nil || w.Status != api.PredictionCanceled {
		t.Errorf("B's Wait after the cancel = %v, %v; want canceled", w.Status, err)
	}
	// B's stream of the job replays the stored events, ending in done.
	stream, err := b.Subscribe(context.Background(), p.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var last jobs.Event
	for {
		e, err := stream.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = e
	}
	if last.Type != "done" || !json.Valid(last.Data) {
		t.Errorf("last stream event = %+v, want done", last)
	}
}

func isDone(status string) bool { return terminal(status) }
