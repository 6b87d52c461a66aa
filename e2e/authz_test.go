package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// requestsCounted is ember_requests_total for fn with status code, read as
// admin from /metrics (0 when the series does not exist yet).
func (s *server) requestsCounted(fn string, code int) int {
	s.t.Helper()
	r := s.call("GET", "/metrics", "")
	if r.status != 200 {
		s.t.Fatalf("GET /metrics as admin: %d %s", r.status, r.body)
	}
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^ember_requests_total\{code="%d",function="%s"\} (\d+)$`, code, regexp.QuoteMeta(fn)))
	m := re.FindSubmatch(r.body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestAuthzTenantIsolation checks that an invoke key sees only what it
// covers: usage and metrics of other functions are refused, its refused
// calls do not count as another function's requests, and predictions are
// visible only to the key that created them (and admins); everyone else
// gets 404, as if the prediction did not exist.
func TestAuthzTenantIsolation(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("mine", "{min: 1, max: 1, concurrency: 16}"))
	s.deploy(simSpec("other", "{min: 0, max: 1}"))
	s.waitReady("mine")
	alice := s.createKey(api.KeyCreate{Name: "alice", Scope: api.ScopeInvoke, Functions: []string{"mine"}})
	bob := s.createKey(api.KeyCreate{Name: "bob", Scope: api.ScopeInvoke, Functions: []string{"mine"}})
	carol := s.createKey(api.KeyCreate{Name: "carol", Scope: api.ScopeInvoke, Functions: []string{"other"}})

	t.Run("probes need no key", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			if r := s.callAs("", "GET", p, ""); r.status != 200 {
				t.Errorf("GET %s without a key = %d %s, want 200", p, r.status, r.body)
			}
		}
	})

	t.Run("usage of another function is refused", func(t *testing.T) {
		// "other" has usage once it has served a call.
		if r := s.call("POST", "/v1/run/other/predict", `{}`); r.status != 200 {
			t.Fatalf("admin call to other: %d %s", r.status, r.body)
		}
		r := s.callAs(alice, "GET", "/v1/usage?function=other", "")
		if r.status != 403 && r.status != 404 {
			t.Errorf("alice GET /v1/usage?function=other = %d %s, want 403 or 404", r.status, r.body)
		}
		eventually(t, 20*time.Second, "other's usage for the admin", func() bool {
			var rep api.UsageReport
			r := s.call("GET", "/v1/usage", "")
			decode(t, r.body, &rep)
			for _, f := range rep.Functions {
				if f.Function == "other" {
					return true
				}
			}
			return false
		})
		r = s.callAs(alice, "GET", "/v1/usage", "")
		if r.status != 200 {
			t.Fatalf("alice GET /v1/usage = %d %s, want 200", r.status, r.body)
		}
		var rep api.UsageReport
		decode(t, r.body, &rep)
		for _, f := range rep.Functions {
			if f.Function != "mine" {
				t.Errorf("alice's usage shows function %q, want only mine (%s)", f.Function, r.body)
			}
		}
	})

	t.Run("request records follow the key", func(t *testing.T) {
		if r := s.callAs(alice, "POST", "/v1/run/mine/predict", `{}`); r.status != 200 {
			t.Fatalf("alice's call to mine: %d %s", r.status, r.body)
		}
		if r := s.call("POST", "/v1/run/other/predict", `{}`); r.status != 200 {
			t.Fatalf("admin call to other: %d %s", r.status, r.body)
		}
		if r := s.callAs(alice, "GET", "/v1/usage/requests?function=other", ""); r.status != 403 {
			t.Errorf("alice GET /v1/usage/requests?function=other = %d %s, want 403", r.status, r.body)
		}
		// The meter flushes before it reads: no wait for the 10 s flush.
		fns := func(key string) map[string]int {
			r := s.callAs(key, "GET", "/v1/usage/requests?limit=1000", "")
			if r.status != 200 {
				t.Fatalf("GET /v1/usage/requests = %d %s", r.status, r.body)
			}
			var out api.UsageRequests
			decode(t, r.body, &out)
			seen := map[string]int{}
			for _, rec := range out.Requests {
				seen[rec.Function]++
				if rec.Status == 0 || rec.DurationMs <= 0 || rec.At.IsZero() {
					t.Errorf("record %+v lacks a status, duration or time", rec)
				}
			}
			return seen
		}
		if got := fns(alice); got["mine"] == 0 || len(got) != 1 {
			t.Errorf("alice's request records by function = %v, want only mine's", got)
		}
		if got := fns(s.key); got["mine"] == 0 || got["other"] == 0 {
			t.Errorf("the admin's request records by function = %v, want mine's and other's", got)
		}
	})

	t.Run("metrics need admin or the metrics scope", func(t *testing.T) {
		if r := s.callAs(alice, "GET", "/metrics", ""); r.status != 403 {
			t.Errorf("alice GET /metrics = %d, want 403", r.status)
		}
		if r := s.callAs("", "GET", "/metrics", ""); r.status != 401 {
			t.Errorf("GET /metrics without a key = %d, want 401", r.status)
		}
		k, err := s.c.CreateKey(context.Background(), api.KeyCreate{Name: "prometheus", Scope: "metrics"})
		if err != nil {
			t.Fatalf("create a metrics key: %v", err)
		}
		mon := k.Secret
		if r := s.callAs(mon, "GET", "/metrics", ""); r.status != 200 || !strings.Contains(string(r.body), "ember_requests_total") {
			t.Errorf("metrics key GET /metrics = %d, want 200 with ember_requests_total", r.status)
		}
		if r := s.callAs(mon, "POST", "/v1/run/mine/predict", `{}`); r.status != 403 {
			t.Errorf("metrics key invoking mine = %d %s, want 403", r.status, r.body)
		}
	})

	t.Run("refused calls are not counted", func(t *testing.T) {
		before := s.requestsCounted("other", 403)
		beforeOK := s.requestsCounted("other", 200)
		for range 20 {
			r := s.callAs(alice, "POST", "/v1/run/other/predict", `{}`)
			if r.status != 403 {
				t.Fatalf("alice calling other = %d %s, want 403", r.status, r.body)
			}
		}
		if got := s.requestsCounted("other", 403); got != before {
			t.Errorf("ember_requests_total{function=other,code=403} went %d → %d after 20 refused calls, want unchanged", before, got)
		}
		if got := s.requestsCounted("other", 200); got != beforeOK {
			t.Errorf("ember_requests_total{function=other,code=200} went %d → %d, want unchanged", beforeOK, got)
		}
	})

	t.Run("predictions are the creator's", func(t *testing.T) {
		r := s.callAs(alice, "POST", "/v1/predictions", `{"model": "mine", "input": {"echo": "secret"}}`)
		if r.status != 201 {
			t.Fatalf("alice create = %d %s", r.status, r.body)
		}
		var p api.Prediction
		decode(t, r.body, &p)
		get := "/v1/predictions/" + p.ID
		for _, tc := range []struct{ who, key, method, path string }{
			{"bob (same function)", bob, "GET", get},
			{"bob (same function)", bob, "POST", get + "/cancel"},
			{"bob (same function)", bob, "GET", get + "/stream"},
			{"carol (other function)", carol, "GET", get},
			{"carol (other function)", carol, "POST", get + "/cancel"},
			{"carol (other function)", carol, "GET", get + "/stream"},
		} {
			r := s.callAs(tc.key, tc.method, tc.path, "")
			if r.status != 404 {
				t.Errorf("%s: %s %s = %d %s, want 404", tc.who, tc.method, tc.path, r.status, r.body)
			}
			if strings.Contains(string(r.body), "mine") {
				t.Errorf("%s: %s %s names the function: %s", tc.who, tc.method, tc.path, r.body)
			}
		}
		lists := func(key string) bool {
			r := s.callAs(key, "GET", "/v1/predictions", "")
			if r.status != 200 {
				t.Fatalf("GET /v1/predictions = %d %s", r.status, r.body)
			}
			var l api.PredictionList
			decode(t, r.body, &l)
			for _, q := range l.Results {
				if q.ID == p.ID {
					return true
				}
			}
			return false
		}
		if lists(bob) {
			t.Error("bob's prediction list shows alice's prediction")
		}
		if lists(carol) {
			t.Error("carol's prediction list shows alice's prediction")
		}
		if !lists(alice) {
			t.Error("alice's prediction list lacks her own prediction")
		}
		if !lists(s.key) {
			t.Error("the admin's prediction list lacks alice's prediction")
		}
		for _, key := range []string{alice, s.key} {
			if r := s.callAs(key, "GET", get, ""); r.status != 200 {
				t.Errorf("GET %s by creator/admin = %d %s, want 200", get, r.status, r.body)
			}
		}
		if r := s.callAs(alice, "POST", get+"/cancel", ""); r.status != 200 {
			t.Errorf("alice cancels her prediction: %d %s, want 200", r.status, r.body)
		}
	})
}
