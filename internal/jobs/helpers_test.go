package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/spec"
	"github.com/ember-run/ember/internal/store/sqlite"
)

// httpInvoker stands in for the activator: it acquires a slot at once (or
// after gate opens) and sends the request over real HTTP to addr.
type httpInvoker struct {
	addr   string
	client *http.Client
	cold   atomic.Bool

	mu    sync.Mutex // guards gates
	gates map[string]chan struct{}
}

// gate makes fn's calls wait for a slot until open is closed (nil: no gate).
func (h *httpInvoker) gate(fn string, open chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gates[fn] = open
}

func (h *httpInvoker) Invoke(ctx context.Context, fn string, r *http.Request, onAcquire func(bool), handle func(*http.Response) error) error {
	h.mu.Lock()
	g := h.gates[fn]
	h.mu.Unlock()
	if g != nil {
		select {
		case <-g:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	onAcquire(h.cold.Load())
	r.URL.Scheme, r.URL.Host = "http", h.addr
	resp, err := h.client.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return handle(resp)
}

type functions map[string]*spec.Function

func (f functions) Function(ctx context.Context, name string) (*spec.Function, error) {
	if fn, ok := f[name]; ok {
		return fn, nil
	}
	return nil, fmt.Errorf("function %q: %w", name, jobs.ErrUnknownFunction)
}

// fn returns a defaulted spec for name whose predict_path is /name.
func fn(name string, mod func(*spec.Function)) *spec.Function {
	f := &spec.Function{Name: name, Command: []string{"x"}, PredictPath: "/" + name}
	f.Default()
	if mod != nil {
		mod(f)
	}
	return f
}

// crashStore fails every write once crashed is set, as if the process had
// died: nothing after that point reaches the database.
type crashStore struct {
	jobs.Store
	crashed atomic.Bool
}

func (c *crashStore) Update(ctx context.Context, f func(jobs.Tx) error) error {
	if c.crashed.Load() {
		return errors.New("crashed")
	}
	return c.Store.Update(ctx, f)
}

type env struct {
	path  string
	db    *sqlite.DB
	store *crashStore
	svc   *jobs.Service
	inv   *httpInvoker
	fns   functions
	opts  jobs.Options
	stop  func()
}

// newEnv serves mux as the function instances and starts a Service on a
// fresh database file.
func newEnv(t testing.TB, mux http.Handler, fns functions, opts jobs.Options) *env {
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 512}
	t.Cleanup(tr.CloseIdleConnections)
	e := &env{
		path: filepath.Join(t.TempDir(), "ember.db"),
		inv:  &httpInvoker{addr: srv.Listener.Addr().String(), client: &http.Client{Transport: tr}, gates: map[string]chan struct{}{}},
		fns:  fns,
		opts: opts,
	}
	if e.opts.RetryBackoff == 0 {
		e.opts.RetryBackoff = 5 * time.Millisecond
	}
	if e.opts.WebhookBackoff == 0 {
		e.opts.WebhookBackoff = 10 * time.Millisecond
	}
	if e.opts.DrainTimeout == 0 {
		e.opts.DrainTimeout = time.Millisecond
	}
	e.start(t)
	t.Cleanup(func() { e.stop() })
	return e
}

func (e *env) start(t testing.TB) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, e.path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.NewJobs(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	e.db, e.store = db, &crashStore{Store: st}
	e.svc = jobs.New(e.store, e.inv, e.fns, e.opts, nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(runCtx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			st.Close()
			db.Close()
		})
	}
}

// restart stops the service (and DB) and starts a new one on the same file.
func (e *env) restart(t testing.TB) {
	e.stop()
	e.start(t)
}

func (e *env) submit(t testing.TB, req jobs.SubmitRequest) *api.Prediction {
	t.Helper()
	p, err := e.svc.Submit(context.Background(), req)
	if err != nil {
		t.Fatalf("Submit(%+v): %v", req, err)
	}
	return p
}

// wait waits for id to be terminal.
func (e *env) wait(t testing.TB, id string) *api.Prediction {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		p, err := e.svc.Wait(ctx, id, 10*time.Second)
		if err != nil {
			t.Fatalf("Wait(%s): %v", id, err)
		}
		if terminal(p.Status) {
			return p
		}
		if ctx.Err() != nil {
			t.Fatalf("prediction %s still %s", id, p.Status)
		}
	}
}

func terminal(s string) bool {
	switch s {
	case api.PredictionSucceeded, api.PredictionFailed, api.PredictionCanceled, api.PredictionAborted:
		return true
	}
	return false
}
