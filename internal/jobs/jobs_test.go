package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/spec"
)

// instanceMux is a model server with one handler per behaviour.
func instanceMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		in, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"echo":%s}`, in)
	})
	m.HandleFunc("POST /text", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain words")
	})
	m.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: Hel\n\nevent: logs\ndata: loading\n\ndata: lo\n\n: comment\n\ndata: \"!\"\n\n")
	})
	m.HandleFunc("POST /sseobj", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"i\":1}\n\ndata: 42\n\nevent: done\ndata: {}\n\ndata: ignored\n\n")
	})
	m.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "model exploded", http.StatusInternalServerError)
	})
	m.HandleFunc("POST /crashy", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Ember-Attempt") == "1" {
			// The instance dies mid-request: the connection closes with no answer.
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		io.WriteString(w, `"survived"`)
	})
	return m
}

func allFunctions() functions {
	fs := functions{}
	for _, name := range []string{"echo", "text", "sse", "sseobj", "fail", "block", "gated", "stream"} {
		fs[name] = fn(name, nil)
	}
	fs["gated"].PredictPath = "/echo"
	fs["crashy"] = fn("crashy", func(f *spec.Function) { f.Retries = 2 })
	fs["timeout"] = fn("block", func(f *spec.Function) { f.Name = "timeout"; f.Timeout = spec.Duration(100 * time.Millisecond) })
	return fs
}

func TestOutputs(t *testing.T) {
	e := newEnv(t, instanceMux(), allFunctions(), jobs.Options{})
	tests := []struct {
		name, fn, input string
		status          string
		output, err     string
		logs            string
	}{
		{name: "json", fn: "echo", input: `{"x":1}`, status: "succeeded", output: `{"echo":{"x":1}}`},
		{name: "empty input", fn: "echo", status: "succeeded", output: `{"echo":{}}`},
		{name: "text", fn: "text", status: "succeeded", output: `"plain words"`},
		{name: "sse strings concatenate", fn: "sse", status: "succeeded", output: `"Hello!"`, logs: "loading\n"},
		{name: "sse objects list, stops at done", fn: "sseobj", status: "succeeded", output: `[{"i":1},"42"]`},
		{name: "non-2xx fails with body", fn: "fail", status: "failed", output: "null", err: "function returned HTTP 500: model exploded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := e.submit(t, jobs.SubmitRequest{Function: tt.fn, Input: json.RawMessage(tt.input)})
			if p.Status != api.PredictionStarting && p.Status != api.PredictionProcessing {
				t.Errorf("submitted status = %q", p.Status)
			}
			p = e.wait(t, p.ID)
			if p.Status != tt.status {
				t.Fatalf("status = %q, want %q (error %v)", p.Status, tt.status, p.Error)
			}
			if got := string(p.Output); got != tt.output {
				t.Errorf("output = %s, want %s", got, tt.output)
			}
			gotErr := ""
			if p.Error != nil {
				gotErr = *p.Error
			}
			if gotErr != tt.err {
				t.Errorf("error = %q, want %q", gotErr, tt.err)
			}
			if !strings.Contains(p.Logs, tt.logs) {
				t.Errorf("logs = %q, want %q in it", p.Logs, tt.logs)
			}
			// The record (not the live job) says the same.
			got, err := e.svc.Get(context.Background(), p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(p, got); diff != "" {
				t.Errorf("Get differs from the waited prediction (-wait +get):\n%s", diff)
			}
			if p.Metrics.TotalTime == nil || p.CompletedAt == nil || p.URLs.Get == "" {
				t.Errorf("metrics/urls incomplete: %+v %+v", p.Metrics, p.URLs)
			}
		})
	}
}

func TestUnknownFunctionAndBadInput(t *testing.T) {
	e := newEnv(t, instanceMux(), allFunctions(), jobs.Options{})
	tests := []struct {
		name string
		req  jobs.SubmitRequest
		want error
	}{
		{"unknown function", jobs.SubmitRequest{Function: "nope"}, jobs.ErrUnknownFunction},
		{"bad json", jobs.SubmitRequest{Function: "echo", Input: json.RawMessage(`{`)}, jobs.ErrInvalid},
		{"bad webhook", jobs.SubmitRequest{Function: "echo", Webhook: "ftp://x"}, jobs.ErrInvalid},
		{"bad filter", jobs.SubmitRequest{Function: "echo", Webhook: "http://x", WebhookEvents: []string{"begin"}}, jobs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.Submit(context.Background(), tt.req)
			if !errors.Is(err, tt.want) {
				t.Errorf("Submit error = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := e.svc.Get(context.Background(), "0000000000000000000000000a"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
}

// A webhook to a literal address the server's policy refuses is a 400 at
// submit, not a delivery that fails twenty times later.
func TestWebhookAddressRefusedAtSubmit(t *testing.T) {
	refuse := func(a netip.Addr) error {
		if a.IsLinkLocalUnicast() {
			return fmt.Errorf("address %s is link-local: refused", a)
		}
		return nil
	}
	e := newEnv(t, instanceMux(), allFunctions(), jobs.Options{CheckWebhookAddr: refuse})
	_, err := e.svc.Submit(context.Background(), jobs.SubmitRequest{Function: "echo", Webhook: "http://169.254.169.254/latest/meta-data"})
	if !errors.Is(err, jobs.ErrInvalid) || !strings.Contains(err.Error(), "webhook: address 169.254.169.254 is link-local: refused") {
		t.Errorf("Submit = %v, want ErrInvalid naming the address", err)
	}
	if _, err := e.svc.Submit(context.Background(), jobs.SubmitRequest{Function: "echo", Webhook: "http://127.0.0.1:9/hook"}); err != nil {
		t.Errorf("Submit to an allowed address: %v", err)
	}
}

func TestCancelRunningJobPropagates(t *testing.T) {
	started, canceled := make(chan struct{}), make(chan struct{})
	m := instanceMux()
	m.HandleFunc("POST /block", func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // the server watches for a closed connection only once the body is read
		close(started)
		<-r.Context().Done() // the instance sees the cancel as a closed request
		close(canceled)
	})
	e := newEnv(t, m, allFunctions(), jobs.Options{})
	p := e.submit(t, jobs.SubmitRequest{Function: "block"})
	<-started
	got, err := e.svc.Cancel(context.Background(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != api.PredictionCanceled {
		t.Errorf("status after cancel = %q, want canceled", got.Status)
	}
	<-canceled
	// Cancelling again is harmless and returns the same terminal state.
	again, err := e.svc.Cancel(context.Background(), p.ID)
	if err != nil || again.Status != api.PredictionCanceled {
		t.Errorf("second cancel = %v, %v", again.Status, err)
	}
}

func TestCancelAfter(t *testing.T) {
	started := make(chan struct{}, 1)
	m := instanceMux()
	m.HandleFunc("POST /block", func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		started <- struct{}{}
		<-r.Context().Done()
	})
	clock := newFakeClock()
	e := newEnv(t, m, allFunctions(), jobs.Options{Clock: clock})
	e.inv.gate("gated", make(chan struct{})) // never gets a slot
	tests := []struct {
		fn, want string
		started  bool
	}{
		{"gated", api.PredictionAborted, false}, // never started
		{"block", api.PredictionCanceled, true},
	}
	for _, tt := range tests {
		t.Run(tt.fn, func(t *testing.T) {
			p := e.submit(t, jobs.SubmitRequest{Function: tt.fn, CancelAfter: 100 * time.Millisecond})
			if tt.started {
				<-started
			}
			clock.Advance(99 * time.Millisecond)
			if got, _ := e.svc.Get(context.Background(), p.ID); terminal(got.Status) {
				t.Fatalf("status %q before Cancel-After", got.Status)
			}
			clock.Advance(time.Millisecond)
			if got := e.wait(t, p.ID); got.Status != tt.want {
				t.Errorf("status = %q, want %q", got.Status, tt.want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	reached, canceled := make(chan struct{}), make(chan struct{})
	m := instanceMux()
	m.HandleFunc("POST /block", func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		close(reached)
		<-r.Context().Done()
		close(canceled)
	})
	clock := newFakeClock()
	e := newEnv(t, m, allFunctions(), jobs.Options{Clock: clock})
	id := e.submit(t, jobs.SubmitRequest{Function: "timeout"}).ID
	<-reached
	clock.Advance(100 * time.Millisecond) // the function's timeout
	p := e.wait(t, id)
	if p.Status != api.PredictionFailed || p.Error == nil || !strings.Contains(*p.Error, "timed out after 100ms") {
		t.Errorf("got %s %v, want failed with a timeout", p.Status, p.Error)
	}
	<-canceled
}

func TestRetryAfterInstanceCrash(t *testing.T) {
	e := newEnv(t, instanceMux(), allFunctions(), jobs.Options{})
	p := e.wait(t, e.submit(t, jobs.SubmitRequest{Function: "crashy"}).ID)
	if p.Status != api.PredictionSucceeded || string(p.Output) != `"survived"` {
		t.Fatalf("got %s %s %v, want succeeded after a retry", p.Status, p.Output, p.Error)
	}
	if p.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", p.Attempts)
	}
	if !strings.Contains(p.Logs, "attempt 1 of 3 failed") {
		t.Errorf("logs = %q, want the failed attempt noted", p.Logs)
	}
}

func TestRetriesExhausted(t *testing.T) {
	fs := allFunctions()
	fs["fail"].Retries = 2
	var calls atomic.Int32
	m := instanceMux()
	m.HandleFunc("POST /fail2", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "nope", http.StatusBadGateway)
	})
	fs["fail"].PredictPath = "/fail2"
	e := newEnv(t, m, fs, jobs.Options{})
	p := e.wait(t, e.submit(t, jobs.SubmitRequest{Function: "fail"}).ID)
	if p.Status != api.PredictionFailed || p.Attempts != 3 || calls.Load() != 3 {
		t.Errorf("status %s attempts %d calls %d, want failed after 3", p.Status, p.Attempts, calls.Load())
	}
}

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, instanceMux(), allFunctions(), jobs.Options{})
	a := e.submit(t, jobs.SubmitRequest{Function: "echo", Input: json.RawMessage(`{"n":1}`), IdempotencyKey: "k1"})
	e.wait(t, a.ID)
	b := e.submit(t, jobs.SubmitRequest{Function: "echo", Input: json.RawMessage(`{"n":2}`), IdempotencyKey: "k1"})
	c := e.submit(t, jobs.SubmitRequest{Function: "echo", Input: json.RawMessage(`{"n":3}`), IdempotencyKey: "k2"})
	if b.ID != a.ID || string(b.Input) != `{"n":1}` {
		t.Errorf("repeated key: got %s %s, want the original %s", b.ID, b.Input, a.ID)
	}
	if c.ID == a.ID {
		t.Errorf("a new key returned the old prediction")
	}
	// Within one batch too.
	ps, err := e.svc.SubmitBatch(context.Background(), []jobs.SubmitRequest{
		{Function: "echo", IdempotencyKey: "k3"}, {Function: "echo", IdempotencyKey: "k3"}})
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].ID != ps[1].ID {
		t.Errorf("same key in one batch gave %s and %s", ps[0].ID, ps[1].ID)
	}

	// Keys are per owner: another caller's same key is another job.
	x := e.submit(t, jobs.SubmitRequest{Function: "echo", IdempotencyKey: "k9", Owner: "key-a"})
	y := e.submit(t, jobs.SubmitRequest{Function: "echo", IdempotencyKey: "k9", Owner: "key-b"})
	z := e.submit(t, jobs.SubmitRequest{Function: "echo", IdempotencyKey: "k9", Owner: "key-a"})
	if x.ID == y.ID || z.ID != x.ID {
		t.Errorf("owners a, b, a with one key gave %s, %s, %s; want a's twice and b's apart", x.ID, y.ID, z.ID)
	}
}

func TestStreamReplayAndResume(t *testing.T) {
	next := make(chan string)
	m := instanceMux()
	m.HandleFunc("POST /stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for c := range next {
			fmt.Fprintf(w, "data: %s\n\n", c)
			w.(http.Flusher).Flush()
		}
	})
	e := newEnv(t, m, allFunctions(), jobs.Options{})
	ctx := context.Background()
	p := e.submit(t, jobs.SubmitRequest{Function: "stream"})
	live, err := e.svc.Subscribe(ctx, p.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"a", "b"} {
		next <- c
		ev, err := live.Next(ctx)
		if err != nil || ev.Type != "output" || string(ev.Data) != `"`+c+`"` {
			t.Fatalf("live event = %+v, %v; want output %q", ev, err, c)
		}
	}
	// A late subscriber replays from the start while the job still runs.
	late, _ := e.svc.Subscribe(ctx, p.ID, 0)
	if ev, _ := late.Next(ctx); string(ev.Data) != `"a"` || ev.ID != 1 {
		t.Errorf("late subscriber's first event = %+v, want a with id 1", ev)
	}
	next <- "c"
	close(next)
	e.wait(t, p.ID)
	want := []string{`output 1 "a"`, `output 2 "b"`, `output 3 "c"`, `done 4 {}`}
	read := func(st *jobs.Stream) (got []string) {
		for {
			ev, err := st.Next(ctx)
			if err == io.EOF {
				return got
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s %d %s", ev.Type, ev.ID, ev.Data))
		}
	}
	if diff := cmp.Diff(want[2:], read(live)); diff != "" {
		t.Errorf("live stream tail (-want +got):\n%s", diff)
	}
	// After completion: replay from the record, and resume after Last-Event-ID.
	for _, last := range []int64{0, 2, 4} {
		st, err := e.svc.Subscribe(ctx, p.ID, last)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want[last:], read(st), cmpEmpty); diff != "" {
			t.Errorf("replay after %d (-want +got):\n%s", last, diff)
		}
	}
}

var cmpEmpty = cmp.Transformer("nilToEmpty", func(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
})

// receiver is a webhook endpoint that verifies signatures.
type receiver struct {
	t      *testing.T
	secret func() string
	down   atomic.Bool
	failed chan struct{}
	mu     sync.Mutex
	got    []api.Prediction
	events []string
	notify chan struct{}
}

func newReceiver(t *testing.T, secret func() string) (*receiver, *httptest.Server) {
	rc := &receiver{t: t, secret: secret, failed: make(chan struct{}, 100), notify: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rc.down.Load() {
			rc.failed <- struct{}{}
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		body, _ := io.ReadAll(r.Body)
		if err := jobs.VerifyWebhook(rc.secret(), r.Header, body, 5*time.Minute, time.Now()); err != nil {
			t.Errorf("webhook signature: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p api.Prediction
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		rc.mu.Lock()
		rc.got = append(rc.got, p)
		rc.events = append(rc.events, r.Header.Get("Ember-Webhook-Event"))
		rc.mu.Unlock()
		rc.notify <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return rc, srv
}

// waitCompleted waits for a completed webhook and returns the events seen.
func (rc *receiver) waitCompleted(t *testing.T) ([]string, api.Prediction) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		rc.mu.Lock()
		if n := len(rc.events); n > 0 && rc.events[n-1] == "completed" {
			ev, p := append([]string(nil), rc.events...), rc.got[n-1]
			rc.mu.Unlock()
			return ev, p
		}
		rc.mu.Unlock()
		select {
		case <-rc.notify:
		case <-timeout:
			t.Fatal("no completed webhook")
		}
	}
}

func TestWebhooks(t *testing.T) {
	e := newEnv(t, instanceMux(), allFunctions(), jobs.Options{})
	secret := func() string {
		s, err := e.svc.WebhookSecret(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := secret(); !strings.HasPrefix(s, "whsec_") || s != secret() {
		t.Fatalf("secret %q not stable whsec_", s)
	}

	t.Run("delivered and signed", func(t *testing.T) {
		rc, srv := newReceiver(t, secret)
		p := e.submit(t, jobs.SubmitRequest{Function: "sse", Webhook: srv.URL})
		events, got := rc.waitCompleted(t)
		if events[0] != "start" || got.ID != p.ID || got.Status != api.PredictionSucceeded || string(got.Output) != `"Hello!"` {
			t.Errorf("events %v, final %s %s", events, got.Status, got.Output)
		}
	})

	t.Run("filter", func(t *testing.T) {
		rc, srv := newReceiver(t, secret)
		e.submit(t, jobs.SubmitRequest{Function: "sse", Webhook: srv.URL, WebhookEvents: []string{"completed"}})
		if events, _ := rc.waitCompleted(t); len(events) != 1 {
			t.Errorf("events = %v, want only completed", events)
		}
	})

	t.Run("receiver down then back, others unaffected", func(t *testing.T) {
		down, downSrv := newReceiver(t, secret)
		down.down.Store(true)
		up, upSrv := newReceiver(t, secret)
		a := e.submit(t, jobs.SubmitRequest{Function: "echo", Webhook: downSrv.URL, WebhookEvents: []string{"completed"}})
		if p := e.wait(t, a.ID); p.Status != api.PredictionSucceeded {
			t.Fatalf("receiver outage changed the result: %s", p.Status)
		}
		<-down.failed
		<-down.failed // retried with backoff
		// Another job's webhook goes out while the first receiver is down.
		b := e.submit(t, jobs.SubmitRequest{Function: "echo", Webhook: upSrv.URL, WebhookEvents: []string{"completed"}})
		if _, p := up.waitCompleted(t); p.ID != b.ID {
			t.Errorf("healthy receiver got %s, want %s", p.ID, b.ID)
		}
		down.down.Store(false)
		if _, p := down.waitCompleted(t); p.ID != a.ID || p.Status != api.PredictionSucceeded {
			t.Errorf("recovered receiver got %s %s", p.ID, p.Status)
		}
	})
}

func TestRestartRecovery(t *testing.T) {
	arrived := make(chan string, 100)
	m := instanceMux()
	m.HandleFunc("POST /block", func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		if r.Header.Get("Ember-Attempt") == "1" {
			arrived <- r.Header.Get("Ember-Prediction-Id")
			<-r.Context().Done()
			return
		}
		io.WriteString(w, `"second life"`)
	})
	fs := allFunctions()
	fs["block"].Retries = 1
	fs["fragile"] = fn("fragile", func(f *spec.Function) { f.PredictPath = "/block" }) // retries: 0
	e := newEnv(t, m, fs, jobs.Options{})
	e.inv.gate("gated", make(chan struct{})) // queued, never started

	var fast, slow, queued []string
	for range 5 {
		fast = append(fast, e.submit(t, jobs.SubmitRequest{Function: "echo"}).ID)
		slow = append(slow, e.submit(t, jobs.SubmitRequest{Function: "block"}).ID)
		queued = append(queued, e.submit(t, jobs.SubmitRequest{Function: "gated"}).ID)
	}
	fragile := e.submit(t, jobs.SubmitRequest{Function: "fragile"}).ID
	before := map[string]*api.Prediction{}
	for _, id := range fast {
		before[id] = e.wait(t, id)
	}
	for range len(slow) + 1 {
		<-arrived
	}
	// A committed write after the starts: they are committed too.
	e.wait(t, e.submit(t, jobs.SubmitRequest{Function: "echo"}).ID)

	e.store.crashed.Store(true) // nothing more reaches the database
	e.inv.gate("gated", nil)
	e.restart(t)

	check := func(ids []string, status string, attempts int) {
		t.Helper()
		for _, id := range ids {
			p := e.wait(t, id)
			if p.Status != status || p.Attempts != attempts {
				t.Errorf("%s: %s after %d attempts (%s), want %s after %d", id, p.Status, p.Attempts, deref(p.Error), status, attempts)
			}
			if b := before[id]; b != nil && !b.CompletedAt.Equal(*p.CompletedAt) {
				t.Errorf("%s completed again: %v then %v", id, b.CompletedAt, p.CompletedAt)
			}
		}
	}
	check(fast, api.PredictionSucceeded, 1)
	check(slow, api.PredictionSucceeded, 2)
	check(queued, api.PredictionSucceeded, 1)
	check([]string{fragile}, api.PredictionFailed, 1)
	if p, _ := e.svc.Get(context.Background(), fragile); p.Error == nil || !strings.Contains(*p.Error, "interrupted by a server restart") {
		t.Errorf("fragile error = %v", p.Error)
	}
	var unfinished int
	if err := e.db.SQL.QueryRow(`SELECT count(*) FROM jobs WHERE status IN ('starting','processing')`).Scan(&unfinished); err != nil || unfinished != 0 {
		t.Errorf("unfinished jobs after recovery = %d, %v", unfinished, err)
	}
}

func TestListAndExpiry(t *testing.T) {
	e := newEnv(t, instanceMux(), allFunctions(), jobs.Options{})
	ctx := context.Background()
	var ids []string
	for range 5 {
		ids = append(ids, e.wait(t, e.submit(t, jobs.SubmitRequest{Function: "echo"}).ID).ID)
	}
	var got []string
	cursor := ""
	for {
		page, err := e.svc.List(ctx, jobs.ListOptions{Cursor: cursor, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Predictions {
			got = append(got, p.ID)
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pages newest first (-want +got):\n%s", diff)
	}

	// With a retention of 1ns everything completed is expired.
	e.stop()
	e.opts.Retention = time.Nanosecond
	e.start(t)
	_, err := e.svc.Get(ctx, ids[0])
	var ee *jobs.ExpiredError
	if !errors.As(err, &ee) || !errors.Is(err, jobs.ErrExpired) || !strings.Contains(err.Error(), "kept for 1ns") {
		t.Errorf("Get(expired) = %v, want an ExpiredError", err)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestStreamURLCarriesToken(t *testing.T) {
	e := newEnv(t, instanceMux(), allFunctions(), jobs.Options{BaseURL: "http://ember.test",
		StreamToken: func(id string) string { return "tok+" + id }})
	p := e.submit(t, jobs.SubmitRequest{Function: "echo", Input: json.RawMessage(`{}`)})
	want := "http://ember.test/v1/predictions/" + p.ID + "/stream?token=tok%2B" + p.ID
	if p.URLs.Stream != want {
		t.Errorf("urls.stream = %q, want %q", p.URLs.Stream, want)
	}
	if p.URLs.Get != "http://ember.test/v1/predictions/"+p.ID || strings.Contains(p.URLs.Cancel, "token") {
		t.Errorf("only the stream URL carries the token: %+v", p.URLs)
	}
}
