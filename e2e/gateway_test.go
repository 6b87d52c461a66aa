package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// callAs calls the server with key ("" for none) and returns the answer.
func (s *server) callAs(key, method, path, body string) result {
	s.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, b, time.Since(start)}
}

// errCode is the error code (and OpenAI type) of an error answer.
func errCode(t *testing.T, r result) (code, typ string) {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return e.Error.Code, e.Error.Type
}

func (s *server) createKey(req api.KeyCreate) string {
	s.t.Helper()
	k, err := s.c.CreateKey(context.Background(), req)
	if err != nil {
		s.t.Fatalf("create key %+v: %v", req, err)
	}
	return k.Secret
}

// waitReady waits until fn has a ready instance (a warm path for tests
// whose timing must not include a cold start).
func (s *server) waitReady(fn string) {
	s.t.Helper()
	eventually(s.t, 20*time.Second, fn+" ready", func() bool {
		for _, in := range s.instances(fn) {
			if in.State == api.StateReady {
				return true
			}
		}
		return false
	})
}

func TestGatewayAuthAndLimits(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("open", "{min: 1, max: 1, concurrency: 16}"))
	s.deploy(simSpec("other", "{min: 0, max: 1}"))
	s.deploy(simSpec("limited", "{min: 1, max: 1, concurrency: 16}", `rate_limit: {rate: "2/s", burst: 2}`))
	s.deploy(simSpec("small", "{min: 1, max: 1}", "max_body_bytes: 1024"))
	for _, fn := range []string{"open", "limited", "small"} {
		s.waitReady(fn)
	}
	invoke := s.createKey(api.KeyCreate{Name: "ci", Scope: api.ScopeInvoke, Functions: []string{"open"}})
	slow := s.createKey(api.KeyCreate{Name: "slow", Scope: api.ScopeInvoke, Rate: "6/m", Burst: 1})

	tests := []struct {
		name       string
		key        string
		method     string
		path, body string
		status     int
		code, typ  string
	}{
		{"no key", "", "POST", "/v1/run/open/predict", `{}`, 401, "missing_api_key", "authentication_error"},
		{"bad key", "ember_0123456789abcdef_nope", "POST", "/v1/run/open/predict", `{}`, 401, "invalid_api_key", "authentication_error"},
		{"no key on management", "", "GET", "/v1/functions", "", 401, "missing_api_key", "authentication_error"},
		{"invoke key on its function", invoke, "POST", "/v1/run/open/predict", `{"echo": 1}`, 200, "", ""},
		{"invoke key on another function", invoke, "POST", "/v1/run/other/predict", `{}`, 403, "function_not_allowed", ""},
		{"invoke key on management", invoke, "GET", "/v1/functions", "", 403, "insufficient_scope", "permission_error"},
		{"invoke key on routes", invoke, "POST", "/v1/routes", "name: x", 403, "insufficient_scope", "permission_error"},
		{"invoke key, OpenAI shape", invoke, "POST", "/v1/chat/completions", `{"model": "other", "messages": []}`, 403, "function_not_allowed", "permission_error"},
		{"unknown model", s.key, "POST", "/v1/chat/completions", `{"model": "nope"}`, 404, "model_not_found", "invalid_request_error"},
		{"unknown model the key does not cover", invoke, "POST", "/v1/chat/completions", `{"model": "nope"}`, 403, "function_not_allowed", "permission_error"},
		{"unknown function the key does not cover", invoke, "POST", "/v1/run/nope/predict", `{}`, 403, "function_not_allowed", ""},
		{"unknown path without a key", "", "GET", "/v1/nope", "", 404, "not_found", ""},
		{"oversized body", s.key, "POST", "/v1/run/small/predict", `{"echo": "` + strings.Repeat("x", 2048) + `"}`, 413, "body_too_large", ""},
		{"oversized body, OpenAI", s.key, "POST", "/v1/chat/completions", `{"model": "small", "pad": "` + strings.Repeat("x", 2048) + `"}`, 413, "body_too_large", "invalid_request_error"},
		{"body under the limit", s.key, "POST", "/v1/run/small/predict", `{"echo": "` + strings.Repeat("x", 512) + `"}`, 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.callAs(tt.key, tt.method, tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, r.status, r.body, tt.status)
			}
			if tt.code == "" {
				return
			}
			code, typ := errCode(t, r)
			if code != tt.code || (tt.typ != "" && typ != tt.typ) {
				t.Errorf("error code/type = %q/%q, want %q/%q (%s)", code, typ, tt.code, tt.typ, r.body)
			}
		})
	}

	t.Run("models lists what the key covers", func(t *testing.T) {
		r := s.callAs(invoke, "GET", "/v1/models", "")
		var ml struct {
			Data []struct{ ID string } `json:"data"`
		}
		decode(t, r.body, &ml)
		if len(ml.Data) != 1 || ml.Data[0].ID != "open" {
			t.Errorf("models for an invoke key on open = %s, want only open", r.body)
		}
	})

	t.Run("revoked key", func(t *testing.T) {
		if err := s.c.RevokeKey(context.Background(), "ci"); err != nil {
			t.Fatal(err)
		}
		r := s.callAs(invoke, "POST", "/v1/run/open/predict", `{}`)
		if code, _ := errCode(t, r); r.status != 401 || code != "api_key_revoked" {
			t.Errorf("revoked key: %d %s, want 401 api_key_revoked", r.status, r.body)
		}
	})

	t.Run("per-key rate limit", func(t *testing.T) {
		// 6/m with burst 1: one call, then the next token is 10 s away.
		if r := s.callAs(slow, "POST", "/v1/run/open/predict", `{}`); r.status != 200 {
			t.Fatalf("first call: %d %s", r.status, r.body)
		}
		r := s.callAs(slow, "POST", "/v1/run/open/predict", `{}`)
		if r.status != 429 {
			t.Fatalf("second call: %d %s, want 429", r.status, r.body)
		}
		ra, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || ra < 9 || ra > 10 {
			t.Errorf("Retry-After = %q, want 10 (one token per 10 s)", r.header.Get("Retry-After"))
		}
		if got := r.header.Get("RateLimit-Limit"); got != "1" {
			t.Errorf("RateLimit-Limit = %q, want 1", got)
		}
		if got := r.header.Get("RateLimit-Remaining"); got != "0" {
			t.Errorf("RateLimit-Remaining = %q, want 0", got)
		}
	})

	t.Run("per-function rate limit", func(t *testing.T) {
		// 2/s, burst 2, across all callers: two quick calls pass, the
		// third waits for a token that refills within a second.
		var got []result
		for range 3 {
			got = append(got, s.callAs(s.key, "POST", "/v1/run/limited/predict", `{}`))
		}
		if got[0].status != 200 || got[1].status != 200 {
			t.Fatalf("first two calls: %d, %d; want 200, 200", got[0].status, got[1].status)
		}
		r := got[2]
		if r.status != 429 {
			t.Fatalf("third call within %s: %d %s, want 429", got[0].elapsed+got[1].elapsed+r.elapsed, r.status, r.body)
		}
		if ra := r.header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After = %q, want 1 (a token every 500 ms)", ra)
		}
		if code, _ := errCode(t, r); code != "rate_limited" || !strings.Contains(string(r.body), `function \"limited\"`) {
			t.Errorf("429 body %s, want rate_limited naming the function", r.body)
		}
		// And through the OpenAI endpoint, in OpenAI's shape.
		o := s.callAs(s.key, "POST", "/v1/chat/completions", `{"model": "limited"}`)
		if _, typ := errCode(t, o); o.status != 429 || typ != "rate_limit_error" || o.header.Get("Retry-After") == "" {
			t.Errorf("OpenAI call over the limit: %d %s Retry-After %q, want 429 rate_limit_error with Retry-After", o.status, o.body, o.header.Get("Retry-After"))
		}
	})
}

func TestGatewaySlowHeaderClientCutOff(t *testing.T) {
	s := startServer(t, "", "--read-header-timeout", "500ms")
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Half a request: the headers never end.
	if _, err := io.WriteString(conn, "GET /v1/functions HTTP/1.1\r\nHost: ember\r\nAuthorization: Bearer "); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(conn) // returns when the server closes the connection
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("server kept the slow connection open for 10 s (read %q)", b)
	}
	if took < 400*time.Millisecond || took > 5*time.Second {
		t.Errorf("connection closed after %s, want about the 500ms header timeout", took)
	}
	if len(b) > 0 && !strings.Contains(string(b), "408") {
		t.Errorf("server answered %q to a half-sent header, want nothing or 408", b)
	}
	// A well-behaved client on the same server is served.
	if r := s.call("GET", "/v1/functions", ""); r.status != 200 {
		t.Errorf("normal request: %d", r.status)
	}
}

// loadGen calls path at about qps until stop is closed, sending each
// answer's Ember-Route to seen.
func loadGen(s *server, path string, qps int, stop <-chan struct{}, seen chan<- string) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(qps))
		defer tick.Stop()
		var inner sync.WaitGroup
		defer inner.Wait()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			inner.Add(1)
			go func() {
				defer inner.Done()
				req, _ := http.NewRequest("POST", s.url+path, strings.NewReader(`{}`))
				req.Header.Set("Authorization", "Bearer "+s.key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				select {
				case seen <- resp.Header.Get(api.HeaderRoute):
				default:
				}
			}()
		}
	}()
	return &wg
}

func TestRouteFollowsTraffic(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("pers", "{min: 1, max: 1, concurrency: 64}"))
	s.deploy(simSpec("sls", "{min: 0, max: 1, concurrency: 64, idle_timeout: 60s}"))
	s.waitReady("pers")
	// A short window and hold so the test takes seconds: above 5 qps over
	// 2 s → persistent; back below 4 qps → serverless; a choice stands ≥ 1 s.
	res, err := s.c.ApplyRoute(context.Background(), []byte(`
name: chat
targets:
  persistent: {function: pers}
  serverless: {function: sls}
policy: {type: qps, window: 2s, threshold: 5, hysteresis: 0.8, hold: 1s}
`))
	if err != nil || !res.Created {
		t.Fatalf("apply route: %+v, %v", res, err)
	}
	instanceOf := func(r result) string {
		var out predictOut
		decode(t, r.body, &out)
		return out.Instance
	}
	persID := s.instances("pers")[0].ID

	// Quiet: serverless.
	r := s.call("POST", "/v1/run/chat/predict", `{"echo": "quiet"}`)
	if r.status != 200 || r.header.Get(api.HeaderRoute) != "serverless" || r.header.Get(api.HeaderRouteReason) != "below_threshold" {
		t.Fatalf("quiet call: %d route %q reason %q %s, want serverless below_threshold", r.status, r.header.Get(api.HeaderRoute), r.header.Get(api.HeaderRouteReason), r.body)
	}
	if got := instanceOf(r); got == persID {
		t.Errorf("serverless call served by the persistent instance %s", got)
	}

	// Load at 20 qps: persistent once the window sees it.
	stop := make(chan struct{})
	seen := make(chan string, 1)
	wg := loadGen(s, "/v1/run/chat/predict", 20, stop, seen)
	var loud result
	eventually(t, 15*time.Second, "route to switch to persistent under load", func() bool {
		loud = s.call("POST", "/v1/run/chat/predict", `{"echo": "loud"}`)
		return loud.header.Get(api.HeaderRoute) == "persistent"
	})
	if loud.status != 200 || loud.header.Get(api.HeaderRouteReason) != "above_threshold" || instanceOf(loud) != persID {
		t.Errorf("loud call: %d reason %q instance %q, want 200 above_threshold on %s", loud.status, loud.header.Get(api.HeaderRouteReason), instanceOf(loud), persID)
	}
	routes, err := s.c.Routes(context.Background())
	if err != nil || len(routes) != 1 || routes[0].Status == nil || routes[0].Status.Choice != "persistent" || routes[0].Status.QPS <= 5 {
		t.Fatalf("routes under load = %+v (%v), want chat persistent at > 5 qps", routes, err)
	}
	t.Logf("under load: %+v", *routes[0].Status)

	// Traffic stops: the route holds on while the window drains, then
	// returns to serverless.
	close(stop)
	wg.Wait()
	stopped := time.Now()
	if after := s.call("POST", "/v1/run/chat/predict", `{}`); after.header.Get(api.HeaderRoute) != "persistent" {
		t.Errorf("first call after the load stopped went %q, want still persistent (window not drained yet)", after.header.Get(api.HeaderRoute))
	}
	var back result
	eventually(t, 15*time.Second, "route to return to serverless", func() bool {
		back = s.call("POST", "/v1/run/chat/predict", `{"echo": "quiet again"}`)
		if back.header.Get(api.HeaderRoute) == "serverless" {
			return true
		}
		// Pace the probes well under the 4 qps exit level (threshold 5 ×
		// hysteresis 0.8): probes at ~5 qps would themselves hold the
		// route on persistent.
		time.Sleep(500 * time.Millisecond)
		return false
	})
	t.Logf("back to serverless %s after the load stopped", time.Since(stopped).Round(time.Millisecond))
	if back.status != 200 || back.header.Get(api.HeaderRouteReason) != "below_threshold" || instanceOf(back) == persID {
		t.Errorf("quiet-again call: %d reason %q instance %q, want 200 below_threshold off %s", back.status, back.header.Get(api.HeaderRouteReason), instanceOf(back), persID)
	}

	m := string(s.call("GET", "/metrics", "").body)
	for _, want := range []string{
		`ember_route_decisions_total{choice="persistent",reason="above_threshold",route="chat"}`,
		`ember_route_decisions_total{choice="serverless",reason="below_threshold",route="chat"}`,
		`ember_route_requests_total{choice="persistent",fallback="false",route="chat"}`,
		`ember_route_requests_total{choice="serverless",fallback="false",route="chat"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// startExternal runs a sim outside Ember, as an existing cluster would be,
// and returns its base URL.
func startExternal(t *testing.T) string {
	t.Helper()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bins.sim, "--port", port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://127.0.0.1:" + port
	eventually(t, 10*time.Second, "external sim ready", func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return base
}

func TestRouteURLTargetAndFallback(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("backup", "{min: 1, max: 1}"))
	s.waitReady("backup")
	ext := startExternal(t)
	dead := "http://" + freeAddr(t) // nothing listens here

	// threshold 0.1: the first call is already "above", so persistent.
	apply := func(persistentURL string) {
		t.Helper()
		if _, err := s.c.ApplyRoute(context.Background(), []byte(`
name: ext
targets:
  persistent: {url: "`+persistentURL+`"}
  serverless: {function: backup}
policy: {window: 2s, threshold: 0.1, hold: 1ms}
`)); err != nil {
			t.Fatal(err)
		}
	}
	apply(ext + "/base")
	r := s.call("POST", "/v1/run/ext/some/path?x=1", `{"hello": "world"}`)
	if r.status != 200 || r.header.Get(api.HeaderRoute) != "persistent" || r.header.Get(api.HeaderRouteFallback) != "" {
		t.Fatalf("call to the external target: %d route %q fallback %q %s", r.status, r.header.Get(api.HeaderRoute), r.header.Get(api.HeaderRouteFallback), r.body)
	}
	var echo struct {
		Path    string              `json:"path"`
		Query   map[string][]string `json:"query"`
		Headers map[string][]string `json:"headers"`
		Body    string              `json:"body"`
	}
	decode(t, r.body, &echo)
	if echo.Path != "/base/some/path" || echo.Query["x"][0] != "1" || echo.Body != `{"hello": "world"}` {
		t.Errorf("external target saw path %q query %v body %q, want /base/some/path ?x=1 and the body", echo.Path, echo.Query, echo.Body)
	}
	if _, leaked := echo.Headers["Authorization"]; leaked {
		t.Errorf("the caller's Ember key was sent to the external target")
	}

	// The persistent target is down: the serverless function answers.
	apply(dead)
	r = s.call("POST", "/v1/run/ext/predict", `{"echo": "fell back"}`)
	if r.status != 200 || r.header.Get(api.HeaderRoute) != "serverless" || !strings.HasPrefix(r.header.Get(api.HeaderRouteFallback), "persistent unavailable") {
		t.Fatalf("call with the persistent target down: %d route %q fallback %q %s", r.status, r.header.Get(api.HeaderRoute), r.header.Get(api.HeaderRouteFallback), r.body)
	}
	var out predictOut
	decode(t, r.body, &out)
	if string(out.Output) != `"fell back"` {
		t.Errorf("fallback answer %s: the body did not survive the retry", r.body)
	}
	if m := string(s.call("GET", "/metrics", "").body); !strings.Contains(m, `ember_route_requests_total{choice="serverless",fallback="true",route="ext"} 1`) {
		t.Errorf("metrics lack the fallback")
	}

	// Route management: a name clash, a bad spec, delete.
	if r := s.call("POST", "/v1/routes", "name: backup\ntargets: {persistent: {url: \"http://x\"}, serverless: {function: y}}"); r.status != 409 {
		t.Errorf("route named like a function: %d %s, want 409", r.status, r.body)
	}
	if r := s.call("POST", "/v1/routes", "name: bad\ntargets: {persistent: {url: \"ftp://x\"}}"); r.status != 400 || !strings.Contains(string(r.body), "targets.serverless") {
		t.Errorf("invalid route: %d %s, want 400 naming the field", r.status, r.body)
	}
	if r := s.call("GET", "/v1/routes/ext", ""); r.status != 200 {
		t.Errorf("GET route: %d %s", r.status, r.body)
	}
	if err := s.c.DeleteRoute(context.Background(), "ext"); err != nil {
		t.Fatal(err)
	}
	if r := s.call("POST", "/v1/run/ext/predict", `{}`); r.status != 404 {
		t.Errorf("call to a deleted route: %d, want 404", r.status)
	}
	if r := s.call("DELETE", "/v1/routes/ext", ""); r.status != 404 {
		t.Errorf("delete of a deleted route: %d, want 404", r.status)
	}
}

func TestOpenAIChatStreams(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("chat-fn", "{min: 1, max: 1}"))
	s.deploy(simSpec("chat-sl", "{min: 0, max: 1}"))
	s.waitReady("chat-fn")
	if _, err := s.c.ApplyRoute(context.Background(), []byte(`
name: chat-route
targets: {persistent: {function: chat-fn}, serverless: {function: chat-sl}}
policy: {threshold: 1000}
`)); err != nil {
		t.Fatal(err)
	}
	const interval = 150 * time.Millisecond
	for _, tt := range []struct{ model, route string }{{"chat-fn", ""}, {"chat-route", "serverless"}} {
		t.Run(tt.model, func(t *testing.T) {
			body := `{"model": "` + tt.model + `", "stream": true, "interval_ms": 150,
				"messages": [{"role": "user", "content": "one two three four five"}]}`
			req, _ := http.NewRequest("POST", s.url+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+s.key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			if got := resp.Header.Get(api.HeaderRoute); got != tt.route {
				t.Errorf("Ember-Route = %q, want %q", got, tt.route)
			}
			var arrivals []time.Time
			var text strings.Builder
			for ev := range sseLines(resp.Body) {
				if ev[0].(string) == "[DONE]" {
					break
				}
				var c struct {
					Choices []struct {
						Delta struct{ Content string } `json:"delta"`
					} `json:"choices"`
				}
				decode(t, []byte(ev[0].(string)), &c)
				if len(c.Choices) == 1 {
					text.WriteString(c.Choices[0].Delta.Content)
				}
				arrivals = append(arrivals, ev[1].(time.Time))
			}
			if got, want := text.String(), "You said: one two three four five"; got != want {
				t.Errorf("streamed text %q, want %q", got, want)
			}
			// 7 words: the last is produced 6 intervals after the first. If
			// the gateway buffered, every chunk would arrive together.
			if len(arrivals) < 7 {
				t.Fatalf("got %d chunks, want ≥ 7", len(arrivals))
			}
			if spread := arrivals[len(arrivals)-1].Sub(arrivals[0]); spread < 4*interval {
				t.Errorf("first and last chunk arrived %s apart, want ≥ %s: the stream was buffered", spread, 4*interval)
			}
		})
	}
	t.Run("models", func(t *testing.T) {
		r := s.call("GET", "/v1/models", "")
		for _, want := range []string{`"id": "chat-fn"`, `"id": "chat-route"`, `"id": "chat-sl"`} {
			if !strings.Contains(strings.ReplaceAll(string(r.body), `":"`, `": "`), want) {
				t.Errorf("models %s lack %s", r.body, want)
			}
		}
	})
}

// The cost policy prices both targets at the measured traffic: an external
// cluster at its listed $/h, the serverless function with Ember's cost
// model on its spec, its CPU class's price and its measured service time.
func TestRouteCostPolicy(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("svl", "{min: 0, max: 8, concurrency: 1, idle_timeout: 2s}"))
	ext := startExternal(t)
	// The catalogue's cpu class costs $0.045 per instance-hour, so $0.12/h
	// for the cluster sits between the one or two warm instances of quiet
	// traffic (≤ 2 qps: about $0.07/h, under the $0.096/h leave level of
	// hysteresis 0.8) and the several that 20 qps × 100 ms needs with
	// concurrency 1.
	if _, err := s.c.ApplyRoute(context.Background(), []byte(`
name: costly
targets:
  persistent: {url: "`+ext+`", usd_per_hour: 0.12}
  serverless: {function: svl}
policy: {type: cost, window: 2s, hold: 1ms}
`)); err != nil {
		t.Fatal(err)
	}
	const path = "/v1/run/costly/work?sleep_ms=100"
	first := s.call("POST", path, `{}`)
	if first.status != 200 || first.header.Get(api.HeaderRoute) != "serverless" || first.header.Get(api.HeaderRouteReason) != "cost_unavailable" {
		t.Fatalf("first call: %d route %q reason %q %s; want serverless, cost_unavailable (nothing measured yet)",
			first.status, first.header.Get(api.HeaderRoute), first.header.Get(api.HeaderRouteReason), first.body)
	}
	routeStatus := func() api.RouteStatus {
		routes, err := s.c.Routes(context.Background())
		if err != nil || len(routes) != 1 || routes[0].Status == nil {
			t.Fatalf("routes = %+v, %v", routes, err)
		}
		return *routes[0].Status
	}
	eventually(t, 10*time.Second, "a priced decision while quiet", func() bool {
		r := s.call("POST", path, `{}`)
		time.Sleep(400 * time.Millisecond) // pacing: a quiet caller
		return r.header.Get(api.HeaderRouteReason) == "cheaper" && r.header.Get(api.HeaderRoute) == "serverless"
	})
	quiet := routeStatus()
	if !strings.Contains(quiet.Reason, "persistent costs $0.12/h") {
		t.Errorf("quiet status reason %q, want both hourly costs", quiet.Reason)
	}
	t.Logf("quiet: %+v", quiet)

	stop := make(chan struct{})
	wg := loadGen(s, path, 20, stop, make(chan string, 1))
	eventually(t, 15*time.Second, "route to go persistent under load", func() bool {
		r := s.call("POST", path, `{}`)
		return r.header.Get(api.HeaderRoute) == "persistent" && r.header.Get(api.HeaderRouteReason) == "cheaper"
	})
	t.Logf("under load: %+v", routeStatus())
	close(stop)
	wg.Wait()
	eventually(t, 15*time.Second, "route to return to serverless", func() bool {
		r := s.call("POST", path, `{}`)
		time.Sleep(500 * time.Millisecond)
		return r.header.Get(api.HeaderRoute) == "serverless"
	})
	m := string(s.call("GET", "/metrics", "").body)
	for _, want := range []string{
		`ember_route_decisions_total{choice="persistent",reason="cheaper",route="costly"}`,
		`ember_route_decisions_total{choice="serverless",reason="cheaper",route="costly"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// A URL target carries its own credentials from the server's environment;
// the caller's Ember key never leaves.
func TestRouteURLTargetHeaders(t *testing.T) {
	t.Setenv("EMBER_E2E_UPSTREAM_KEY", "sk-upstream-123") // inherited by ember serve
	s := startServer(t, "")
	s.deploy(simSpec("spare", "{min: 0, max: 1}"))
	ext := startExternal(t)
	if r := s.call("POST", "/v1/routes", `{"name": "authd", "targets": {"persistent": {"url": "`+ext+`", "headers": {"Authorization": "Bearer ${EMBER_E2E_NOT_SET}"}}, "serverless": {"function": "spare"}}}`); r.status != 400 ||
		!strings.Contains(string(r.body), "targets.persistent.headers.Authorization: ${EMBER_E2E_NOT_SET} is not set in the server's environment") {
		t.Errorf("route naming an unset variable: %d %s, want 400 naming it", r.status, r.body)
	}
	if _, err := s.c.ApplyRoute(context.Background(), []byte(`
name: authd
targets:
  persistent: {url: "`+ext+`", headers: {Authorization: "Bearer ${EMBER_E2E_UPSTREAM_KEY}", X-Team: ml}}
  serverless: {function: spare}
policy: {window: 2s, threshold: 0.1, hold: 1ms}
`)); err != nil {
		t.Fatal(err)
	}
	r := s.call("POST", "/v1/run/authd/anything", `{}`)
	if r.status != 200 || r.header.Get(api.HeaderRoute) != "persistent" {
		t.Fatalf("call: %d route %q %s", r.status, r.header.Get(api.HeaderRoute), r.body)
	}
	var echo struct {
		Headers map[string][]string `json:"headers"`
	}
	decode(t, r.body, &echo)
	if got := echo.Headers["Authorization"]; len(got) != 1 || got[0] != "Bearer sk-upstream-123" {
		t.Errorf("external target got Authorization %q, want only the target's own credential", got)
	}
	if got := echo.Headers["X-Team"]; len(got) != 1 || got[0] != "ml" {
		t.Errorf("external target got X-Team %q, want ml", got)
	}
	routes, _ := s.c.Routes(context.Background())
	if len(routes) != 1 || strings.Contains(string(routes[0].Spec), "sk-upstream-123") {
		t.Errorf("the stored route shows the secret: %s", routes[0].Spec)
	}
}

// A URL target that does not answer within the route's timeout gets the
// caller a 504 that says so, not a hang.
func TestRouteURLTargetTimeout(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("spare2", "{min: 0, max: 1}"))
	ext := startExternal(t)
	if _, err := s.c.ApplyRoute(context.Background(), []byte(`
name: slowext
targets:
  persistent: {url: "`+ext+`"}
  serverless: {function: spare2}
policy: {window: 2s, threshold: 0.1, hold: 1ms}
timeout: 300ms
`)); err != nil {
		t.Fatal(err)
	}
	r := s.call("POST", "/v1/run/slowext/slow?sleep_ms=5000", `{}`)
	if r.status != 504 || !strings.Contains(string(r.body), "did not answer within the route's timeout 300ms") {
		t.Errorf("slow URL target: %d %s, want 504 naming the route's timeout", r.status, r.body)
	}
	if fast := s.call("POST", "/v1/run/slowext/fast", `{}`); fast.status != 200 {
		t.Errorf("fast call: %d %s", fast.status, fast.body)
	}
}
