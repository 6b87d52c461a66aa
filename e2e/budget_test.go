package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBudgetScalesToZero: a function over its daily budget with action
// scale-to-zero loses its instances and refuses calls with 429, and
// `ember describe` says so.
func TestBudgetScalesToZero(t *testing.T) {
	s := startServer(t, "")
	// The cpu class costs $0.0000125/s: a live instance spends $0.000001 in 0.08 s.
	s.deploy(simSpec("spendy", "{min: 0, max: 1, idle_timeout: 60s}", "budget: {usd_per_day: 0.000001, action: scale-to-zero}"))
	if r := s.call("POST", "/v1/run/spendy/predict", `{}`); r.status != 200 {
		t.Fatalf("first call: %d %s", r.status, r.body)
	}
	eventually(t, 10*time.Second, "the instance stopped by the budget", func() bool { return len(s.instances("spendy")) == 0 })
	r := s.call("POST", "/v1/run/spendy/predict", `{}`)
	if r.status != 429 || !strings.Contains(string(r.body), "budget_exceeded") {
		t.Errorf("call over budget = %d %s, want 429 budget_exceeded", r.status, r.body)
	}
	out, err := exec.Command(bins.ember, "--server", s.url, "--key-file", s.dataDir+"/admin.key", "describe", "spendy").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OVER budget: scale-to-zero") {
		t.Errorf("describe: %v\n%s", err, out)
	}
}
