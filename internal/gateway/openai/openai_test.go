package openai

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/errkind"
)

// proxyResolver forwards to real upstream servers by model name, the way
// the gateway does: path preserved, responses flushed as they come.
type proxyResolver struct {
	upstreams map[string]string // model → base URL
	forbidden string            // a model the caller may not use
}

var errForbidden = errkind.New(errkind.Forbidden, "function_not_allowed", "key may not use this model")

func (p *proxyResolver) Forward(w http.ResponseWriter, r *http.Request, model string) error {
	if model == p.forbidden {
		return errForbidden
	}
	base, ok := p.upstreams[model]
	if !ok {
		return fmt.Errorf("resolve %q: %w", model, ErrUnknownModel)
	}
	u, _ := url.Parse(base)
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		FlushInterval: -1,
	}
	rp.ServeHTTP(w, r)
	return nil
}

func (p *proxyResolver) Models(context.Context) ([]string, error) {
	var out []string
	for m := range p.upstreams {
		out = append(out, m)
	}
	slices.Sort(out)
	return out, nil
}

func newGateway(t *testing.T, res Resolver, opts Options) *httptest.Server {
	t.Helper()
	h := New(res, opts)
	mux := http.NewServeMux()
	for _, p := range Patterns() {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestForwardPreservesPathAndBody(t *testing.T) {
	type seen struct {
		path, body string
		length     int64
	}
	got := make(chan seen, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.URL.Path, string(b), r.ContentLength}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"embedding":[0.1]}]}`)
	}))
	defer up.Close()
	gw := newGateway(t, &proxyResolver{upstreams: map[string]string{"embed": up.URL}}, Options{})

	for _, path := range []string{PathEmbeddings, PathCompletions, PathChatCompletions} {
		body := `{"input":"hello","model":"embed","extra":{"k":[1,2]}}`
		resp, err := http.Post(gw.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(out), "embedding") {
			t.Errorf("POST %s = %d %s", path, resp.StatusCode, out)
		}
		s := <-got
		if s.path != path || s.body != body || s.length != int64(len(body)) {
			t.Errorf("upstream saw %+v; want path %s, the body unchanged, Content-Length %d", s, path, len(body))
		}
	}
}

func TestErrors(t *testing.T) {
	gw := newGateway(t, &proxyResolver{upstreams: map[string]string{"m": "http://127.0.0.1:1"}, forbidden: "secret"},
		Options{MaxBodyBytes: 64})
	tests := []struct {
		name, method, path, body string
		status                   int
		typ, code                string
	}{
		{"no model", "POST", PathChatCompletions, `{"messages":[]}`, 400, "invalid_request_error", "missing_model"},
		{"not json", "POST", PathChatCompletions, `model=m`, 400, "invalid_request_error", "invalid_json"},
		{"unknown model", "POST", PathChatCompletions, `{"model":"nope"}`, 404, "invalid_request_error", "model_not_found"},
		{"forbidden model", "POST", PathCompletions, `{"model":"secret"}`, 403, "permission_error", "function_not_allowed"},
		{"too large", "POST", PathEmbeddings, `{"model":"m","input":"` + strings.Repeat("x", 100) + `"}`, 413, "invalid_request_error", "body_too_large"},
		{"wrong method", "GET", PathChatCompletions, ``, 404, "invalid_request_error", "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, gw.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var env api.Error
			if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
				t.Fatalf("body is not an OpenAI error: %v", err)
			}
			e := env.Error
			if resp.StatusCode != tc.status || e.Type != tc.typ || e.Code != tc.code || e.Message == "" {
				t.Errorf("%s %s = %d %+v; want %d type %s code %s with a message", tc.method, tc.path, resp.StatusCode, e, tc.status, tc.typ, tc.code)
			}
		})
	}
}

func TestModels(t *testing.T) {
	gw := newGateway(t, &proxyResolver{upstreams: map[string]string{"b": "", "a": ""}}, Options{})
	resp, err := http.Get(gw.URL + PathModels)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list ModelList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "a" || list.Data[1].Object != "model" {
		t.Errorf("models = %+v", list)
	}
}

// TestStreaming checks that SSE passes through unbuffered: the upstream
// sends one chunk and then waits until the client has received it.
func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	defer releaseAll()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"choices":[{"delta":{"content":"Hel"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release: // the last chunk is produced only after the client saw the first
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, `data: {"choices":[{"delta":{"content":"lo"}}]}`+"\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	defer up.Close()
	gw := newGateway(t, &proxyResolver{upstreams: map[string]string{"llm": up.URL}}, Options{})

	// The deadline turns a buffering bug into a failure instead of a hang.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", gw.URL+PathChatCompletions,
		strings.NewReader(`{"model":"llm","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q, want text/event-stream", ct)
	}
	rd := bufio.NewReader(resp.Body)
	first, err := rd.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the first chunk before the upstream produced the last: %v", err)
	}
	if !strings.Contains(first, "Hel") {
		t.Fatalf("first chunk = %q", first)
	}
	releaseAll()
	rest, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rest), `"lo"`) || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("rest of stream = %q", rest)
	}
}
