package usage

import (
	"context"
	"encoding/json"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/cost"
	"github.com/ember-run/ember/internal/metering"
	"github.com/ember-run/ember/internal/spec"
)

type fakeUsage struct {
	q  metering.Query
	bs []metering.Bucket
}

func (f *fakeUsage) Usage(ctx context.Context, q metering.Query, now time.Time) ([]metering.Bucket, error) {
	f.q = q
	return f.bs, nil
}

func (f *fakeUsage) Budget(fn string, now time.Time) metering.BudgetStatus {
	return metering.BudgetStatus{Function: fn, SpentUSD: 2, USDPerDay: 1, Action: "cap", Over: true}
}

type fakeSpecs map[string]*spec.Function

func (f fakeSpecs) Function(name string) (*spec.Function, bool) { s, ok := f[name]; return s, ok }

func TestUsageHandler(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	h0 := now.Add(-2 * time.Hour)
	src := &fakeUsage{bs: []metering.Bucket{
		{Function: "llm", Hardware: "a100-40gb", Start: h0, Seconds: metering.Seconds{Loading: 10, Busy: 100, Idle: 50},
			Requests: 40, ColdStarts: 2, Starts: 2, BusyPeriods: 20, CostUSD: 0.16},
		{Function: "llm", Hardware: "a100-40gb", Start: h0.Add(time.Hour), Seconds: metering.Seconds{Busy: 20},
			Requests: 10, BusyPeriods: 10, CostUSD: 0.02},
	}}
	f := &spec.Function{Name: "llm", Command: []string{"x"}, Resources: &spec.Resources{GPU: &spec.GPU{Type: "a100-40gb", Count: 1}},
		Budget: &spec.Budget{USDPerDay: 1, Action: "cap"}}
	f.Default()
	cat, err := cost.DefaultCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(src, fakeSpecs{"llm": f}, cat)
	h.now = func() time.Time { return now }

	tests := []struct {
		name, query string
		status      int
	}{
		{"defaults", "", 200},
		{"by day with dates", "?by=day&from=2026-01-01&to=2026-01-03&function=llm", 200},
		{"bad by", "?by=week", 400},
		{"bad from", "?from=yesterday", 400},
		{"to before from", "?from=1h&to=2h", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/usage"+tt.query, nil))
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
		})
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/usage?from=4h", nil))
	var rep api.UsageReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if !src.q.From.Equal(now.Add(-4*time.Hour)) || src.q.By != "hour" {
		t.Errorf("query = %+v, want from now-4h by hour", src.q)
	}
	fu := rep.Functions[0]
	if len(fu.Periods) != 2 || fu.Requests != 50 || fu.ColdStartShare != 2.0/50 || math.Abs(fu.CostUSD-0.18) > 1e-12 {
		t.Errorf("function usage = %+v", fu.UsageFigures)
	}
	if fu.Budget == nil || !fu.Budget.Over || fu.Budget.Action != "cap" {
		t.Errorf("budget = %+v, want over, cap", fu.Budget)
	}
	alt := map[string]api.UsageAlternative{}
	for _, a := range fu.Alternatives {
		alt[a.Offer] = a
	}
	span := 4 * 3600.0
	for _, c := range []struct {
		offer string
		usd   float64
	}{
		// One p4d (8 GPUs, one used) for the 4 hours asked.
		{"aws-p4d.24xlarge", 32 * 4},
		{"gcp-a2-highgpu-1g", 3.67 / 3600 * span},
		// Container lifetime: all 180 s at $0.001.
		{"modal-like-a100-40gb", 180 * 0.001},
		// Active time only: 120 busy seconds over 30 busy periods, whole seconds.
		{"replicate-like-a100-40gb", 120 * 0.0023},
		{"ember-a100-40gb", 180 * 0.001},
	} {
		if a, ok := alt[c.offer]; !ok || math.Abs(a.CostUSD-c.usd) > 1e-9 {
			t.Errorf("%s = %+v, want $%g", c.offer, a, c.usd)
		}
	}
}

// deployedSpecs also says since when each function exists (Deployed).
type deployedSpecs struct {
	fakeSpecs
	at map[string]time.Time
}

func (d deployedSpecs) DeployedAt(name string) (time.Time, bool) { t, ok := d.at[name]; return t, ok }

// TestAlwaysOnPricedOverTheFunctionsLife: a function deployed 30 minutes
// into a 4-hour window is compared with 30 minutes of an always-on fleet,
// not 4 hours of one; one older than the window with the whole window.
func TestAlwaysOnPricedOverTheFunctionsLife(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	src := &fakeUsage{bs: []metering.Bucket{
		{Function: "new", Hardware: "a100-40gb", Start: now.Add(-time.Hour), Seconds: metering.Seconds{Busy: 60}, Requests: 6, BusyPeriods: 6},
		{Function: "old", Hardware: "a100-40gb", Start: now.Add(-time.Hour), Seconds: metering.Seconds{Busy: 60}, Requests: 6, BusyPeriods: 6},
	}}
	specs := fakeSpecs{}
	for _, n := range []string{"new", "old"} {
		f := &spec.Function{Name: n, Command: []string{"x"}, Resources: &spec.Resources{GPU: &spec.GPU{Type: "a100-40gb", Count: 1}}}
		f.Default()
		specs[n] = f
	}
	cat, err := cost.DefaultCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(src, deployedSpecs{specs, map[string]time.Time{"new": now.Add(-30 * time.Minute), "old": now.Add(-48 * time.Hour)}}, cat)
	h.now = func() time.Time { return now }
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/usage?from=4h", nil))
	var rep api.UsageReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"new": 3.67 / 3600 * 1800, "old": 3.67 / 3600 * 4 * 3600}
	for _, fu := range rep.Functions {
		for _, a := range fu.Alternatives {
			if a.Offer == "gcp-a2-highgpu-1g" && math.Abs(a.CostUSD-want[fu.Function]) > 1e-9 {
				t.Errorf("%s: always-on %s = $%g, want $%g", fu.Function, a.Offer, a.CostUSD, want[fu.Function])
			}
		}
	}
	if len(rep.Functions) != 2 {
		t.Fatalf("functions = %+v", rep.Functions)
	}
}

// TestUsageHandlerScopedToKey: an invoke key sees only the functions it
// covers, and asking for another is refused without saying whether it
// has usage.
func TestUsageHandlerScopedToKey(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	src := &fakeUsage{bs: []metering.Bucket{
		{Function: "mine", Hardware: "cpu", Start: now.Add(-time.Hour), Requests: 1},
		{Function: "other", Hardware: "cpu", Start: now.Add(-time.Hour), Requests: 7},
	}}
	h := NewHandler(src, nil, nil)
	h.now = func() time.Time { return now }
	alice := &auth.Principal{KeyID: "a", Name: "alice", Scope: auth.ScopeInvoke, Functions: []string{"mine"}}
	admin := &auth.Principal{KeyID: "r", Name: "root", Scope: auth.ScopeAdmin}
	tests := []struct {
		name   string
		p      *auth.Principal
		query  string
		status int
		want   []string
	}{
		{"invoke key, all", alice, "", 200, []string{"mine"}},
		{"invoke key, its function", alice, "?function=mine", 200, []string{"mine"}},
		{"invoke key, another function", alice, "?function=other", 403, nil},
		{"invoke key, a function that does not exist", alice, "?function=nope", 403, nil},
		{"admin, all", admin, "", 200, []string{"mine", "other"}},
		{"auth off, all", nil, "", 200, []string{"mine", "other"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/v1/usage"+tc.query, nil)
			if tc.p != nil {
				req = req.WithContext(auth.NewContext(req.Context(), tc.p))
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, tc.status)
			}
			if tc.status != 200 {
				if strings.Contains(w.Body.String(), "other") && !strings.Contains(tc.query, "other") {
					t.Errorf("refusal names another function: %s", w.Body)
				}
				return
			}
			var rep api.UsageReport
			if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range rep.Functions {
				got = append(got, f.Function)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("functions = %v, want %v", got, tc.want)
			}
		})
	}
}

type leaderBudgets struct{ spent float64 }

func (l leaderBudgets) Budget(string, time.Time) *api.BudgetStatus {
	return &api.BudgetStatus{SpentUSD: l.spent, USDPerDay: 1, Action: "warn"}
}

// TestUsageBudgetsFromElsewhere: a gateway's report takes each budget
// from WithBudgets (the leader's view), not from its own meter, which
// runs no instance.
func TestUsageBudgetsFromElsewhere(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	src := &fakeUsage{bs: []metering.Bucket{{Function: "llm", Hardware: "cpu", Start: now.Add(-time.Hour), Requests: 3}}}
	f := &spec.Function{Name: "llm", Command: []string{"x"}, Budget: &spec.Budget{USDPerDay: 1}}
	f.Default()
	h := NewHandler(src, fakeSpecs{"llm": f}, nil).WithBudgets(leaderBudgets{spent: 0.42})
	h.now = func() time.Time { return now }
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/usage", nil))
	var rep api.UsageReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Functions) != 1 || rep.Functions[0].Budget == nil || rep.Functions[0].Budget.SpentUSD != 0.42 {
		t.Fatalf("functions %+v: want the budget WithBudgets reports ($0.42 spent)", rep.Functions)
	}
}
