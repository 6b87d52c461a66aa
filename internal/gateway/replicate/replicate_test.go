package replicate_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/gateway/replicate"
	"github.com/ember-run/ember/internal/jobs"
	"github.com/ember-run/ember/internal/spec"
	"github.com/ember-run/ember/internal/store/sqlite"
)

// invoker stands in for the activator: real HTTP to the instance server.
type invoker struct{ addr string }

func (v invoker) Invoke(ctx context.Context, fn string, r *http.Request, onAcquire func(bool), handle func(*http.Response) error) error {
	onAcquire(false)
	r.URL.Scheme, r.URL.Host = "http", v.addr
	resp, err := http.DefaultClient.Do(r)
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
	return nil, fmt.Errorf("%q: %w", name, jobs.ErrUnknownFunction)
}

// server starts an instance server, a job service on a real database and
// the predictions API, and returns the API's base URL.
func server(t *testing.T, opts jobs.Options, configure ...func(*replicate.Handler)) string {
	t.Helper()
	inst := http.NewServeMux()
	inst.HandleFunc("POST /predict", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Text string }
		json.NewDecoder(r.Body).Decode(&in)
		w.Header().Set("Content-Type", "text/event-stream")
		for _, word := range strings.Fields(in.Text) {
			fmt.Fprintf(w, "data: %s \n\n", word)
		}
	})
	inst.HandleFunc("POST /block", func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		<-r.Context().Done()
	})
	is := httptest.NewServer(inst)
	t.Cleanup(is.Close)
	fns := functions{}
	for _, name := range []string{"words", "acme/words", "block"} {
		f := &spec.Function{Name: name, Command: []string{"x"}}
		if name == "block" {
			f.PredictPath = "/block"
		}
		f.Default()
		fns[name] = f
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ember.db"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.NewJobs(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewUnstartedServer(nil)
	opts.BaseURL = "http://" + api.Listener.Addr().String()
	opts.DrainTimeout = time.Millisecond
	svc := jobs.New(st, invoker{is.Listener.Addr().String()}, fns, opts, nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	h := replicate.New(svc, nil)
	for _, c := range configure {
		c(h)
	}
	api.Config.Handler = h
	api.Start()
	t.Cleanup(func() {
		api.Close()
		cancel()
		<-done
		st.Close()
		db.Close()
	})
	return api.URL
}

func call(t *testing.T, method, url string, body string, header map[string]string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
	return resp.StatusCode
}

func TestCreateWaitGet(t *testing.T) {
	base := server(t, jobs.Options{})
	tests := []struct {
		name, path, body string
	}{
		{"model", "/v1/predictions", `{"model":"words","input":{"text":"a b c"}}`},
		{"version alias", "/v1/predictions", `{"version":"words","input":{"text":"a b c"}}`},
		{"namespaced model", "/v1/models/acme/words/predictions", `{"input":{"text":"a b c"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p api.Prediction
			code := call(t, "POST", base+tt.path, tt.body, map[string]string{"Prefer": "wait=30"}, &p)
			if code != http.StatusCreated || p.Status != api.PredictionSucceeded || string(p.Output) != `"a b c "` {
				t.Fatalf("POST = %d %s %s %v", code, p.Status, p.Output, p.Error)
			}
			var got api.Prediction
			if code := call(t, "GET", p.URLs.Get, "", nil, &got); code != 200 || got.ID != p.ID || got.Status != p.Status {
				t.Errorf("GET %s = %d %+v", p.URLs.Get, code, got)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	base := server(t, jobs.Options{})
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		code                     string
	}{
		{"unknown function", "POST", "/v1/predictions", `{"model":"nope"}`, nil, 404, "unknown_function"},
		{"no model", "POST", "/v1/predictions", `{"input":{}}`, nil, 400, "bad_request"},
		{"bad json", "POST", "/v1/predictions", `{`, nil, 400, "bad_request"},
		{"bad cancel-after", "POST", "/v1/predictions", `{"model":"words"}`, map[string]string{"Cancel-After": "soon"}, 400, "bad_request"},
		{"bad prefer", "POST", "/v1/predictions", `{"model":"words"}`, map[string]string{"Prefer": "wait=x"}, 400, "bad_request"},
		{"unknown prediction", "GET", "/v1/predictions/0000000000000000000000000a", "", nil, 404, "not_found"},
		{"bad cursor", "GET", "/v1/predictions?cursor=zz", "", nil, 400, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e struct {
				Error  api.ErrorBody
				Detail string
			}
			if got := call(t, tt.method, base+tt.path, tt.body, tt.header, &e); got != tt.status || e.Error.Code != tt.code || e.Detail == "" {
				t.Errorf("%s %s = %d %+v, want %d %s", tt.method, tt.path, got, e, tt.status, tt.code)
			}
		})
	}
}

func TestExpiredIs410(t *testing.T) {
	base := server(t, jobs.Options{Retention: time.Nanosecond})
	var p api.Prediction
	call(t, "POST", base+"/v1/predictions", `{"model":"words","input":{"text":"x"}}`, map[string]string{"Prefer": "wait"}, &p)
	var e struct{ Detail string }
	if code := call(t, "GET", p.URLs.Get, "", nil, &e); code != http.StatusGone || !strings.Contains(e.Detail, "expired") {
		t.Errorf("GET expired = %d %q, want 410 saying expired", code, e.Detail)
	}
}

func TestCancelIdempotencyBatchList(t *testing.T) {
	base := server(t, jobs.Options{})
	var p api.Prediction
	call(t, "POST", base+"/v1/predictions", `{"model":"block"}`, nil, &p)
	var c api.Prediction
	if code := call(t, "POST", p.URLs.Cancel, "", nil, &c); code != 200 || c.Status != api.PredictionCanceled {
		t.Errorf("cancel = %d %s", code, c.Status)
	}

	key := map[string]string{"Idempotency-Key": "abc", "Prefer": "wait"}
	var a, b api.Prediction
	call(t, "POST", base+"/v1/predictions", `{"model":"words","input":{"text":"one"}}`, key, &a)
	call(t, "POST", base+"/v1/predictions", `{"model":"words","input":{"text":"two"}}`, key, &b)
	if a.ID != b.ID || string(b.Output) != `"one "` {
		t.Errorf("idempotent repeat gave %s %s, want %s", b.ID, b.Output, a.ID)
	}

	var batch api.BatchResponse
	if code := call(t, "POST", base+"/v1/functions/words/batch", `{"inputs":[{"text":"x"},{"text":"y"},{"text":"z"}]}`, nil, &batch); code != 201 || len(batch.Predictions) != 3 {
		t.Fatalf("batch = %d, %d predictions", code, len(batch.Predictions))
	}
	var outputs []string
	for _, bp := range batch.Predictions {
		var got api.Prediction
		call(t, "GET", bp.URLs.Get, "", map[string]string{"Prefer": "wait=30"}, &got)
		outputs = append(outputs, string(got.Output))
	}
	if diff := cmp.Diff([]string{`"x "`, `"y "`, `"z "`}, outputs); diff != "" {
		t.Errorf("batch outputs (-want +got):\n%s", diff)
	}

	// Newest first, two per page, following next links: 5 predictions.
	var ids []string
	next := base + "/v1/predictions?limit=2"
	for next != "" {
		var page api.PredictionList
		call(t, "GET", next, "", nil, &page)
		for _, r := range page.Results {
			ids = append(ids, r.ID)
		}
		next = ""
		if page.Next != nil {
			next = *page.Next
		}
	}
	want := []string{batch.Predictions[2].ID, batch.Predictions[1].ID, batch.Predictions[0].ID, a.ID, p.ID}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
}

func TestStreamSSE(t *testing.T) {
	base := server(t, jobs.Options{})
	var p api.Prediction
	call(t, "POST", base+"/v1/predictions", `{"model":"words","input":{"text":"hello big world"}}`, map[string]string{"Prefer": "wait"}, &p)
	read := func(last string) []string {
		req, _ := http.NewRequest("GET", p.URLs.Stream, nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type = %q", ct)
		}
		var got []string
		sc := bufio.NewScanner(resp.Body)
		var ev []string
		for sc.Scan() {
			if sc.Text() == "" {
				got = append(got, strings.Join(ev, "|"))
				ev = nil
				continue
			}
			ev = append(ev, sc.Text())
		}
		return got
	}
	all := []string{
		"id: 1|event: output|data: hello ",
		"id: 2|event: output|data: big ",
		"id: 3|event: output|data: world ",
		"id: 4|event: done|data: {}",
	}
	if diff := cmp.Diff(all, read("")); diff != "" {
		t.Errorf("replay (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(all[2:], read("2")); diff != "" {
		t.Errorf("resume after 2 (-want +got):\n%s", diff)
	}
}

// A quiet stream sends SSE comments so that proxies keep it open, and
// events still follow.
func TestStreamKeepAlive(t *testing.T) {
	base := server(t, jobs.Options{}, func(h *replicate.Handler) { h.SetKeepAlive(20 * time.Millisecond) })
	var p api.Prediction
	if code := call(t, "POST", base+"/v1/predictions", `{"model":"block","input":{}}`, nil, &p); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	resp, err := http.Get(p.URLs.Stream)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	keepAlives := 0
	for keepAlives < 2 && sc.Scan() {
		if sc.Text() == ": keep-alive" {
			keepAlives++
		}
	}
	if keepAlives < 2 {
		t.Fatalf("stream ended before two keep-alives: %v", sc.Err())
	}
	call(t, "POST", p.URLs.Cancel, "", nil, nil)
	var events []string
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "event: ") {
			events = append(events, strings.TrimPrefix(sc.Text(), "event: "))
		}
	}
	if len(events) == 0 || events[len(events)-1] != "done" {
		t.Errorf("events after the keep-alives = %v, want the stream to end with done", events)
	}
}

func TestWebhookSecretEndpoint(t *testing.T) {
	base := server(t, jobs.Options{})
	var a, b api.WebhookSecret
	call(t, "GET", base+"/v1/webhooks/default/secret", "", nil, &a)
	call(t, "GET", base+"/v1/webhooks/default/secret", "", nil, &b)
	if !strings.HasPrefix(a.Key, "whsec_") || a.Key != b.Key {
		t.Errorf("secrets %q %q, want one stable whsec_ key", a.Key, b.Key)
	}
}
