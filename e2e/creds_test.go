package e2e

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ember-run/ember/internal/api"
)

// Secrets and keys the server holds in its environment; none may reach an
// instance.
const (
	serverAPIKey      = "ember_00000000000000aa_serverkeymustnotleak"
	serverSecretToken = "server-secret-token-must-not-leak"
)

// spoofHeaders is what a hostile or careless caller sends besides its key:
// credentials, Ember's own headers and forwarding headers it should not be
// able to set.
var spoofHeaders = map[string]string{
	"Proxy-Authorization": "Basic c3Bvb2Y6c3Bvb2Y=",
	"Cookie":              "session=caller-cookie",
	"Ember-Instance":      "spoofed",
	"Ember-Prediction-Id": "spoofed",
	"X-Forwarded-For":     "6.6.6.6",
	"X-Forwarded-Host":    "evil.example",
	"Forwarded":           "for=6.6.6.6",
	// Kept: content negotiation and tracing.
	"X-Request-Id": "req-123",
	"Traceparent":  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
}

// whoami is what examples/sim's /whoami answers.
type whoami struct {
	Headers map[string][]string `json:"headers"`
	Env     []string            `json:"env"`
}

func (w whoami) env(name string) (string, bool) {
	for _, kv := range w.Env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return "", false
}

// callWith sends body to path with the caller's key and extra headers.
func (s *server) callWith(key, method, path, body string, h map[string]string) result {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

// checkHeaders fails t if anything of Ember's or the caller's credentials
// reached the instance; ownHeaders are Ember-* headers Ember itself sets on
// that path (async jobs), with their expected values.
func checkHeaders(t *testing.T, path string, key string, got map[string][]string, ownHeaders map[string]string) {
	t.Helper()
	for name, vals := range got {
		canon := http.CanonicalHeaderKey(name)
		switch canon {
		case "Authorization", "Proxy-Authorization", "Cookie", "Forwarded":
			t.Errorf("%s: the instance got %s: %q", path, canon, vals)
		}
		if strings.HasPrefix(canon, "Ember-") {
			if want, ok := ownHeaders[canon]; !ok || len(vals) != 1 || vals[0] != want {
				t.Errorf("%s: the instance got %s: %q (Ember sets none but %v)", path, canon, vals, ownHeaders)
			}
		}
		for _, v := range vals {
			if strings.Contains(v, key) || strings.Contains(v, "ember_") || strings.Contains(v, "spoof") || strings.Contains(v, "6.6.6.6") || strings.Contains(v, "evil.example") {
				t.Errorf("%s: the instance got %s: %q", path, canon, v)
			}
		}
	}
	if ownHeaders != nil {
		return // jobs: Ember builds the request; nothing of the caller's is sent
	}
	if xff := got["X-Forwarded-For"]; !slices.Equal(xff, []string{"127.0.0.1"}) {
		t.Errorf("%s: X-Forwarded-For = %q, want Ember's own [127.0.0.1]", path, xff)
	}
	if v := got["X-Request-Id"]; !slices.Equal(v, []string{"req-123"}) {
		t.Errorf("%s: X-Request-Id = %q, want it passed through", path, v)
	}
	if v := got["Traceparent"]; len(v) != 1 {
		t.Errorf("%s: Traceparent = %q, want it passed through", path, v)
	}
}

// checkEnv fails t unless the instance's environment is the minimal one.
func checkEnv(t *testing.T, w whoami, fn string) {
	t.Helper()
	for _, kv := range w.Env {
		if strings.Contains(kv, serverAPIKey) || strings.Contains(kv, serverSecretToken) {
			t.Errorf("the instance's environment holds the server's %q", kv)
		}
	}
	for _, name := range []string{"EMBER_API_KEY", "SECRET_TOKEN", "EMBER_DATA_DIR"} {
		if v, ok := w.env(name); ok {
			t.Errorf("the instance inherited %s=%q", name, v)
		}
	}
	if v, ok := w.env("EMBER_FUNCTION"); !ok || v != fn {
		t.Errorf("EMBER_FUNCTION = %q, want %q", v, fn)
	}
	for _, name := range []string{"PORT", "EMBER_INSTANCE", "PATH"} {
		if v, ok := w.env(name); !ok || v == "" {
			t.Errorf("%s missing from the instance's environment", name)
		}
	}
	if v, _ := w.env("SPEC_VAR"); v != "from-spec" {
		t.Errorf("SPEC_VAR = %q, want the spec's value", v)
	}
}

// Nothing of Ember's reaches function code: the caller's key and the
// server's environment stay out of instances on every path (issue 10,
// findings 1 and 2).
func TestNothingOfEmberReachesInstances(t *testing.T) {
	s := startServerEnv(t, "", []string{"EMBER_API_KEY=" + serverAPIKey, "SECRET_TOKEN=" + serverSecretToken})
	s.deploy(simSpec("who", "{min: 1, max: 1}", "env: {SPEC_VAR: from-spec}", "predict_path: /whoami"))
	s.deploy(simSpec("who2", "{min: 0, max: 1}", "env: {SPEC_VAR: from-spec}"))
	s.waitReady("who")
	if _, err := s.c.ApplyRoute(context.Background(), []byte(`
name: who-route
targets:
  persistent: {function: who}
  serverless: {function: who2}
`)); err != nil {
		t.Fatal(err)
	}
	key := s.createKey(api.KeyCreate{Name: "caller", Scope: api.ScopeInvoke})

	for _, tc := range []struct {
		name, path, body string
		env              bool // the answer holds the environment (/whoami)
	}{
		{"/v1/run", "/v1/run/who/whoami", `{}`, true},
		{"OpenAI", "/v1/embeddings", `{"model": "who", "input": "hi"}`, false}, // sim echoes the headers
		{"route to a function", "/v1/run/who-route/whoami", `{}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{key, s.key} { // an invoke key and the admin key
				r := s.callWith(k, "POST", tc.path, tc.body, spoofHeaders)
				if r.status != 200 {
					t.Fatalf("POST %s: %d %s", tc.path, r.status, r.body)
				}
				var w whoami
				decode(t, r.body, &w)
				checkHeaders(t, tc.path, k, w.Headers, nil)
				if !tc.env {
					continue
				}
				fn := "who"
				if r.header.Get(api.HeaderRoute) == "serverless" {
					fn = "who2"
				}
				checkEnv(t, w, fn)
			}
		})
	}

	t.Run("async job", func(t *testing.T) {
		r := s.callWith(key, "POST", "/v1/predictions", `{"model": "who", "input": {}}`, spoofHeaders)
		if r.status != 201 && r.status != 200 && r.status != 202 {
			t.Fatalf("submit: %d %s", r.status, r.body)
		}
		var p api.Prediction
		decode(t, r.body, &p)
		p = waitJob(t, s, p.ID)
		if p.Status != api.PredictionSucceeded {
			t.Fatalf("job %s: %s %v", p.ID, p.Status, p.Error)
		}
		var w whoami
		decode(t, p.Output, &w)
		checkHeaders(t, "job", key, w.Headers, map[string]string{"Ember-Prediction-Id": p.ID, "Ember-Attempt": "1"})
		checkEnv(t, w, "who")
	})

	t.Run("route to a URL", func(t *testing.T) {
		ext := startExternal(t)
		if _, err := s.c.ApplyRoute(context.Background(), []byte(`
name: who-url
targets:
  persistent: {url: "`+ext+`", headers: {X-Upstream-Key: "${SECRET_TOKEN}"}}
  serverless: {function: who}
policy: {window: 2s, threshold: 0.1, hold: 1ms}
`)); err != nil {
			t.Fatal(err)
		}
		r := s.callWith(key, "POST", "/v1/run/who-url/whoami", `{}`, spoofHeaders)
		if r.status != 200 || r.header.Get(api.HeaderRoute) != "persistent" {
			t.Fatalf("call: %d route %q %s", r.status, r.header.Get(api.HeaderRoute), r.body)
		}
		var w whoami
		decode(t, r.body, &w)
		if got := w.Headers["X-Upstream-Key"]; !slices.Equal(got, []string{serverSecretToken}) {
			t.Errorf("URL target got X-Upstream-Key %q, want the route's configured header", got)
		}
		delete(w.Headers, "X-Upstream-Key") // the one credential it is meant to get
		checkHeaders(t, "URL target", key, w.Headers, nil)
	})
}
