package cluster

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// TestLeaderRouteCalls: each gateway's answer carries the route calls the
// other live gateways reported since its own previous report, each call
// told once; a gateway gone silent for longer than Live neither receives
// nor keeps a backlog.
func TestLeaderRouteCalls(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	now := t0
	l := NewLeader(LeaderOptions{Instances: &fakeInstances{eps: map[string][]api.Endpoint{}}, Now: func() time.Time { return now }})
	steps := []struct {
		at      time.Duration
		gateway string
		calls   map[string]int64
		want    map[string]int64
	}{
		{0, "a", map[string]int64{"r": 3}, nil}, // alone: nobody else's calls
		{0, "b", map[string]int64{"r": 2}, nil}, // a's 3 came before b was live
		{time.Second, "a", map[string]int64{"r": 4, "q": 1}, map[string]int64{"r": 2}},
		{time.Second, "b", map[string]int64{"r": 1, "bad": -5}, map[string]int64{"r": 4, "q": 1}},
		{1500 * time.Millisecond, "a", nil, map[string]int64{"r": 1}}, // negative counts are ignored
		{2 * time.Second, "a", nil, nil},                              // told once
		{6 * time.Second, "a", map[string]int64{"r": 5}, nil},         // b silent 5 s > Live: dropped
		{6 * time.Second, "b", nil, nil},                              // back: a's 5 came while it was gone
		{7 * time.Second, "b", map[string]int64{"r": 6}, nil},
		{7 * time.Second, "a", nil, map[string]int64{"r": 6}},
	}
	for i, s := range steps {
		now = t0.Add(s.at)
		st := l.Apply(Report{Gateway: s.gateway, Routes: s.calls})
		if !maps.Equal(st.Routes, s.want) {
			t.Errorf("step %d (%s at %s): routes %v, want %v", i, s.gateway, s.at, st.Routes, s.want)
		}
	}
	if got, want := l.RouteCalls(), map[string]int64{"r": 21, "q": 1}; !maps.Equal(got, want) {
		t.Errorf("RouteCalls = %v, want %v", got, want)
	}
}

// TestGatewayReportsRouteCalls: a gateway sends its routes' calls in its
// report and hands the other gateways' calls from the answer to Others.
func TestGatewayReportsRouteCalls(t *testing.T) {
	var got Report
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		writeJSON(w, State{Term: "t", Version: 1, Gateways: 2, Routes: map[string]int64{"r": 7}})
	}))
	defer srv.Close()
	var others map[string]int64
	g := NewGateway(GatewayOptions{ID: "gw-a",
		Leader: func(context.Context) (string, error) { return strings.TrimPrefix(srv.URL, "http://"), nil }})
	g.SetRoutes(func() map[string]int64 { return map[string]int64{"r": 3} }, func(c map[string]int64) { others = c })
	g.send(context.Background())
	if !maps.Equal(got.Routes, map[string]int64{"r": 3}) {
		t.Errorf("report routes %v, want r:3", got.Routes)
	}
	if !maps.Equal(others, map[string]int64{"r": 7}) {
		t.Errorf("others %v, want r:7", others)
	}
}

// TestBudgetFromLeader: a gateway shows a function's spend as the
// leader's metering has it (every instance runs there), at most one
// report old; a function without a budget has none.
func TestBudgetFromLeader(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	spent := 1.5
	l := NewLeader(LeaderOptions{Instances: &fakeInstances{eps: map[string][]api.Endpoint{}},
		Functions: func() []string { return []string{"sim", "free"} },
		Budget: func(fn string, now time.Time) *api.BudgetStatus {
			if fn != "sim" {
				return nil
			}
			return &api.BudgetStatus{SpentUSD: spent, USDPerDay: 2, Over: spent >= 2}
		},
		Now: func() time.Time { return t0 }})
	g := NewGateway(GatewayOptions{ID: "gw-a"})
	for _, tt := range []struct {
		spent float64
		over  bool
	}{{1.5, false}, {2.5, true}} {
		spent = tt.spent
		g.apply(l.Apply(Report{Gateway: "gw-a"}))
		b := g.Budget("sim", t0)
		if b == nil || b.SpentUSD != tt.spent || b.Over != tt.over {
			t.Errorf("spent %g: gateway's budget %+v, want spent %g over %v", tt.spent, b, tt.spent, tt.over)
		}
	}
	if b := g.Budget("free", t0); b != nil {
		t.Errorf("function without a budget: %+v, want nil", b)
	}
}
