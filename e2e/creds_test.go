package e2e

import (
	"context"
	"io"
	"net/http"
	"os/exec"
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
	if v, _ := w.env("EMBER_READY_FD"); v != "3" {
		t.Errorf("EMBER_READY_FD = %q, want 3 (the readiness-notification descriptor)", v)
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
		{"OpenAI", "/v1/completions", `{"model": "who", "prompt": "hi"}`, false}, // sim echoes the headers
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

// Secrets: set from stdin, listed without values, referred to by a spec's
// env and a route's header, never shown by describe, get or the server log;
// a spec naming a missing secret is refused with the variable and secret
// named.
func TestSecrets(t *testing.T) {
	s := startServerEnv(t, "", []string{"EMBER_API_KEY=" + serverAPIKey, "SECRET_TOKEN=" + serverSecretToken})
	const value = "hf_secret_value_must_stay_hidden"
	ember := func(stdin string, args ...string) (string, string, error) {
		cmd := exec.Command(bins.ember, append([]string{"--server", s.url, "--key-file", s.dataDir + "/admin.key"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	if out, errs, err := ember(value+"\n", "secrets", "set", "hf-token"); err != nil || !strings.Contains(out, `secret "hf-token" created`) {
		t.Fatalf("secrets set: %v %q %q", err, out, errs)
	}
	file := t.TempDir() + "/upstream"
	writeFile(t, file, "sk-from-file")
	if out, errs, err := ember("", "secrets", "set", "upstream", "--from-file", file); err != nil || !strings.Contains(out, "created") {
		t.Fatalf("secrets set --from-file: %v %q %q", err, out, errs)
	}
	out, _, err := ember("", "secrets", "ls")
	if err != nil || !strings.Contains(out, "hf-token") || !strings.Contains(out, "upstream") || strings.Contains(out, value) {
		t.Errorf("secrets ls: %v %q, want both names and no value", err, out)
	}
	if out, _, _ := ember("", "secrets", "ls", "--json"); strings.Contains(out, value) || strings.Contains(out, "sk-from-file") {
		t.Errorf("secrets ls --json shows a value: %s", out)
	}
	// Bad input: a name outside the rule, an empty value, an invoke key.
	if _, errs, err := ember("x", "secrets", "set", "bad/name"); err == nil || !strings.Contains(errs, `secret name: invalid "bad/name"`) {
		t.Errorf("secrets set bad/name: %v %q, want refused", err, errs)
	}
	if _, errs, err := ember("", "secrets", "set", "empty"); err == nil || !strings.Contains(errs, `secret "empty": empty value`) {
		t.Errorf("secrets set with no value: %v %q", err, errs)
	}
	invoke := s.createKey(api.KeyCreate{Name: "caller", Scope: api.ScopeInvoke})
	if r := s.callAs(invoke, "GET", "/v1/secrets", ""); r.status != 403 {
		t.Errorf("GET /v1/secrets with an invoke key: %d %s, want 403", r.status, r.body)
	}

	// A spec naming a missing secret is refused, naming it.
	if _, err := s.c.Deploy(context.Background(), []byte(simSpec("nosecret", "{min: 0, max: 1}", "env: {HF_TOKEN: {secret: not-there}}"))); err == nil ||
		!strings.Contains(err.Error(), `env.HF_TOKEN.secret: secret "not-there" does not exist (create it with: ember secrets set not-there)`) {
		t.Errorf("deploy naming a missing secret: %v", err)
	}

	s.deploy(simSpec("sec", "{min: 0, max: 1}", "env: {HF_TOKEN: {secret: hf-token}, SPEC_VAR: from-spec}"))
	r := s.call("POST", "/v1/run/sec/whoami", `{}`)
	if r.status != 200 {
		t.Fatalf("call: %d %s", r.status, r.body)
	}
	var w whoami
	decode(t, r.body, &w)
	if v, _ := w.env("HF_TOKEN"); v != value {
		t.Errorf("HF_TOKEN = %q, want the secret's value (trailing newline dropped)", v)
	}
	checkEnv(t, w, "sec")

	// Nothing shows the value: describe, get, list, the server log.
	for _, args := range [][]string{{"describe", "sec"}, {"describe", "sec", "--json"}, {"ls", "--json"}} {
		if out, _, err := ember("", args...); err != nil || strings.Contains(out, value) {
			t.Errorf("%v: %v, shows the value: %v", args, err, strings.Contains(out, value))
		}
	}
	if r := s.call("GET", "/v1/functions/sec", ""); r.status != 200 || strings.Contains(string(r.body), value) || !strings.Contains(strings.Join(strings.Fields(string(r.body)), ""), `"secret":"hf-token"`) {
		t.Errorf("GET function: %d, want the reference and not the value: %s", r.status, r.body)
	}

	// A route's URL target gets a secret in a header.
	ext := startExternal(t)
	if r := s.call("POST", "/v1/routes", `{"name": "upr", "targets": {"persistent": {"url": "`+ext+`", "headers": {"Authorization": "Bearer ${secret:nope}"}}, "serverless": {"function": "sec"}}}`); r.status != 400 ||
		!strings.Contains(string(r.body), `targets.persistent.headers.Authorization: ${secret:nope}: secret \"nope\" does not exist`) {
		t.Errorf("route naming a missing secret: %d %s, want 400 naming it", r.status, r.body)
	}
	if _, err := s.c.ApplyRoute(context.Background(), []byte(`
name: upr
targets:
  persistent: {url: "`+ext+`", headers: {Authorization: "Bearer ${secret:upstream}"}}
  serverless: {function: sec}
policy: {window: 2s, threshold: 0.1, hold: 1ms}
`)); err != nil {
		t.Fatal(err)
	}
	r = s.callWith(invoke, "POST", "/v1/run/upr/whoami", `{}`, spoofHeaders)
	if r.status != 200 || r.header.Get(api.HeaderRoute) != "persistent" {
		t.Fatalf("routed call: %d route %q %s", r.status, r.header.Get(api.HeaderRoute), r.body)
	}
	decode(t, r.body, &w)
	if got := w.Headers["Authorization"]; !slices.Equal(got, []string{"Bearer sk-from-file"}) {
		t.Errorf("URL target got Authorization %q, want only the route's secret", got)
	}
	if routes, _ := s.c.Routes(context.Background()); len(routes) != 1 || strings.Contains(string(routes[0].Spec), "sk-from-file") {
		t.Errorf("the stored route shows the secret's value")
	}

	// rm: gone from ls; a new instance that needs it cannot start, and
	// says which secret it lacks.
	if out, errs, err := ember("", "secrets", "rm", "hf-token"); err != nil || !strings.Contains(out, `secret "hf-token" removed`) {
		t.Fatalf("secrets rm: %v %q %q", err, out, errs)
	}
	if out, _, _ := ember("", "secrets", "ls"); strings.Contains(out, "hf-token") {
		t.Errorf("secrets ls after rm: %q", out)
	}
	if _, errs, err := ember("", "secrets", "rm", "hf-token"); err == nil || !strings.Contains(errs, `unknown secret "hf-token"`) {
		t.Errorf("secrets rm twice: %v %q", err, errs)
	}
	if err := s.c.Delete(context.Background(), "sec"); err != nil {
		t.Fatal(err)
	}
	ember("temporary", "secrets", "set", "tmp")
	s.deploy(simSpec("sec3", "{min: 0, max: 1}", "env: {TMP: {secret: tmp}}"))
	ember("", "secrets", "rm", "tmp")
	if r := s.call("POST", "/v1/run/sec3/whoami", `{}`); r.status != 503 || !strings.Contains(string(r.body), `env TMP: secret \"tmp\" does not exist`) {
		t.Errorf("call needing a removed secret: %d %s, want 503 naming the secret", r.status, r.body)
	}
	for _, v := range []string{value, "sk-from-file"} {
		if strings.Contains(s.logs.String(), v) {
			t.Errorf("the server log holds a secret's value")
		}
	}
}
