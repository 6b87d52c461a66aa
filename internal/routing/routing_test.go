package routing

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/activator"
	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/proxy"
	"github.com/ember-run/ember/internal/route"
)

type fakeRouteObs struct{ decisions []string }

func (f *fakeRouteObs) RouteDecision(rt, choice, reason string) {
	f.decisions = append(f.decisions, choice+"/"+reason)
}
func (f *fakeRouteObs) RouteRequest(rt, choice string, fallback bool) {}

func TestLiveRouteDecidesAtMostOnceASecond(t *testing.T) {
	rt, err := route.Parse([]byte(`{"name": "r", "targets": {"persistent": {"function": "p"}, "serverless": {"function": "s"}},
		"policy": {"window": "2s", "threshold": 5, "hold": "1s"}}`))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_000_000, 0)
	tab := &routeTable{m: map[string]*liveRoute{}}
	tab.put(rt, api.Route{Name: "r"}, t0)
	lr := tab.get("r")
	obs := &fakeRouteObs{}

	// 20 calls in the first 950 ms: the first decides (1 call over 2 s:
	// serverless); the rest reuse that decision.
	for i := range 20 {
		if _, c, _ := lr.call(t0.Add(time.Duration(i)*50*time.Millisecond), obs, nil); c != route.Serverless {
			t.Fatalf("call %d went %s, want serverless (decision cached for 1 s)", i, c)
		}
	}
	if got := len(obs.decisions); got != 1 {
		t.Fatalf("decisions in the first second = %d (%v), want 1", got, obs.decisions)
	}
	// At 1 s the window holds 20 calls over 2 s = 10 qps > 5: persistent.
	_, c, why := lr.call(t0.Add(time.Second), obs, nil)
	if c != route.Persistent || why.Code != route.ReasonAboveThreshold {
		t.Errorf("at 1s: %s %s, want persistent above_threshold", c, why)
	}
	// A status read shows what the next call would get without deciding.
	st := lr.wire(t0.Add(1500*time.Millisecond), nil).Status
	if st.Choice != "persistent" || len(obs.decisions) != 2 {
		t.Errorf("status %+v after %v decisions, want persistent and no new decision", st, obs.decisions)
	}
	// Quiet: after the window drains, serverless again (the hold of 1 s
	// has passed).
	_, c, why = lr.call(t0.Add(5*time.Second), obs, nil)
	if c != route.Serverless || why.Code != route.ReasonBelowThreshold {
		t.Errorf("at 5s: %s %s, want serverless below_threshold", c, why)
	}
	// Re-applying keeps the window (same span) and decides afresh.
	tab.put(rt, api.Route{Name: "r", Version: 2}, t0.Add(5*time.Second))
	if lr2 := tab.get("r"); lr2 != lr || lr2.rec.Version != 2 || !lr2.decidedAt.IsZero() {
		t.Errorf("re-apply replaced the live route or kept its decision")
	}
}

func TestTargetDown(t *testing.T) {
	dial := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"start failed", &activator.StartFailedError{Err: errors.New("exit 1")}, true},
		{"unknown function", fmt.Errorf("%w %q", activator.ErrUnknownFunction, "x"), true},
		{"unknown function (gateway)", errkind.New(errkind.NotFound, "unknown_function", `unknown function "x"`), true},
		{"dial error", &proxy.UpstreamError{Addr: "h:1", Dial: true, Err: dial}, true},
		{"failed after sending", &proxy.UpstreamError{Addr: "h:1", Err: errors.New("EOF")}, false},
		{"rate limited", &errkind.Error{Kind: errkind.RateLimited, Code: "rate_limited"}, false},
		{"queue full", &activator.QueueFullError{Limit: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := targetDown(tt.err); got != tt.want {
				t.Errorf("targetDown(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestExpandBraced(t *testing.T) {
	env := map[string]string{"KEY": "sk-1", "EMPTY": ""}
	get := func(n string) string { return env[n] }
	for in, want := range map[string]string{
		"Bearer ${KEY}":      "Bearer sk-1",
		"${KEY}:${KEY}":      "sk-1:sk-1",
		"price $5 ${EMPTY}x": "price $5 x",
		"$KEY ${UNSET}":      "$KEY ",
		"open ${KEY":         "open ${KEY",
	} {
		if got := expandBraced(in, get); got != want {
			t.Errorf("expandBraced(%q) = %q, want %q", in, got, want)
		}
	}
}
