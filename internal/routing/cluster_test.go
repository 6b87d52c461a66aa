package routing

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/route"
)

// TestRouteDecidesOnEveryGatewaysTraffic: n gateways each call a route
// at perGateway calls/s; every second each reports its Calls and Records
// the others' (what the leader tells it). The threshold switch happens at
// the same total traffic whatever n: 2 × 3/s switches like 1 × 6/s, and
// 3/s on one gateway alone does not.
func TestRouteDecidesOnEveryGatewaysTraffic(t *testing.T) {
	rt, err := route.Parse([]byte(`{"name": "r", "targets": {"persistent": {"function": "p"}, "serverless": {"function": "s"}},
		"policy": {"window": "10s", "threshold": 5, "hold": "1s"}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		gateways   int
		perGateway int
		want       route.Choice
		minQPS     float64 // the status QPS is at least this (the total, not one gateway's)
	}{
		{"one gateway at 6/s", 1, 6, route.Persistent, 5.5},
		{"two gateways at 3/s each", 2, 3, route.Persistent, 5.5},
		{"three gateways at 2/s each", 3, 2, route.Persistent, 5.5},
		{"one gateway at 3/s", 1, 3, route.Serverless, 2.9},
		{"two gateways at 2/s each", 2, 2, route.Serverless, 3.8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Unix(1_000_000, 0)
			now := t0
			clock := func() time.Time { return now }
			gws := make([]*Service, tt.gateways)
			for i := range gws {
				gws[i] = &Service{tab: &routeTable{m: map[string]*liveRoute{}}, now: clock}
				gws[i].tab.put(rt, api.Route{Name: "r"}, t0)
			}
			var last route.Choice
			var reason route.Reason
			for sec := range 15 {
				for k := range tt.perGateway {
					now = t0.Add(time.Duration(sec)*time.Second + time.Duration(k)*time.Second/time.Duration(tt.perGateway))
					for _, g := range gws {
						_, last, reason = g.tab.get("r").call(now, nil, nil)
					}
				}
				// The report round: the leader tells each gateway the others' calls.
				calls := make([]map[string]int64, len(gws))
				for i, g := range gws {
					calls[i] = g.Calls()
				}
				for i, g := range gws {
					others := map[string]int64{}
					for j, c := range calls {
						if j != i {
							for k, v := range c {
								others[k] += v
							}
						}
					}
					g.Record(others)
				}
			}
			if last != tt.want {
				t.Fatalf("last call went %s (%s), want %s", last, reason, tt.want)
			}
			for i, g := range gws {
				st, err := g.Get("r")
				if err != nil {
					t.Fatal(err)
				}
				if st.Status.Choice != string(tt.want) || st.Status.QPS < tt.minQPS || st.Status.QPS > float64(tt.gateways*tt.perGateway)+0.1 {
					t.Errorf("gateway %d: status %+v, want %s at ≥ %g qps (the total)", i, st.Status, tt.want, tt.minQPS)
				}
				if tt.want == route.Persistent && !strings.HasPrefix(st.Status.Reason, route.ReasonAboveThreshold) {
					t.Errorf("gateway %d: reason %q, want %s", i, st.Status.Reason, route.ReasonAboveThreshold)
				}
			}
		})
	}
}

// TestCallsDrain: Calls returns the calls since its previous call, and
// Record ignores unknown routes and counts ≤ 0.
func TestCallsDrain(t *testing.T) {
	rt, err := route.Parse([]byte(`{"name": "r", "targets": {"persistent": {"function": "p"}, "serverless": {"function": "s"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_000_000, 0)
	s := &Service{tab: &routeTable{m: map[string]*liveRoute{}}, now: func() time.Time { return t0 }}
	s.tab.put(rt, api.Route{Name: "r"}, t0)
	for range 3 {
		s.tab.get("r").call(t0, nil, nil)
	}
	if got := s.Calls(); !maps.Equal(got, map[string]int64{"r": 3}) {
		t.Errorf("Calls = %v, want r:3", got)
	}
	if got := s.Calls(); len(got) != 0 {
		t.Errorf("Calls again = %v, want none", got)
	}
	s.Record(map[string]int64{"r": -4, "nope": 9})
	if got := s.tab.get("r").win.QPS(t0); got != 3.0/30 {
		t.Errorf("QPS after ignored records = %g, want 3 calls over the 30 s warm-up", got)
	}
	if got := s.Calls(); len(got) != 0 {
		t.Errorf("recorded calls of others were reported as this gateway's: %v", got)
	}
}
