package cost

import (
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/route"
	"github.com/ember-run/ember/internal/spec"
)

func TestAdvise(t *testing.T) {
	cat := mustCatalogue(t)
	tests := []struct {
		name    string
		ai      AdviceInputs
		rule    string
		mode    string
		wantMin int // -1: no scaling.min change expected
		route   bool
	}{
		{"seed traffic", AdviceInputs{Workload: seedInputs()}, "default", ModeServerless, 0, false},
		{"busy", AdviceInputs{Workload: Inputs{RequestsPerDay: 20 * 86400, SecondsPerRequest: 0.5}}, "average QPS > 10", ModeAlwaysOn, 15, true},
		{"bursty", AdviceInputs{Workload: seedInputs(), PeakQPS: 150}, "bursty: idle to 100+ QPS", ModeServerless, 0, false},
		{"tight latency", AdviceInputs{Workload: seedInputs(), LatencyBudget: 80 * time.Millisecond}, "latency budget < 100 ms", ModeProvisioned, 1, false},
		{"big model", AdviceInputs{Workload: seedInputs(), ModelGB: 40}, "model > 10 GB", ModeServerless, -1, false},
		{"long job", AdviceInputs{Workload: Inputs{RequestsPerDay: 10, SecondsPerRequest: 20 * 60}}, "inference > 15 min", ModeAsync, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.ai.Catalogue = cat
			recs, err := Advise(tt.ai)
			if err != nil {
				t.Fatal(err)
			}
			var got *Recommendation
			for i := range recs {
				if recs[i].Rule == tt.rule {
					got = &recs[i]
				}
			}
			if got == nil {
				t.Fatalf("rule %q did not fire; got %+v", tt.rule, recs)
			}
			if got.Mode != tt.mode {
				t.Errorf("mode = %s, want %s", got.Mode, tt.mode)
			}
			if got.MonthlyUSD <= 0 || got.AlternativeUSD <= 0 {
				t.Errorf("cost figures missing: %+v", got)
			}
			if tt.wantMin >= 0 {
				if got.Change.ScalingMin == nil || *got.Change.ScalingMin != tt.wantMin {
					t.Errorf("scaling.min change = %v, want %d", got.Change.ScalingMin, tt.wantMin)
				}
			}
			if tt.route {
				spec := got.Change.RouteSpec("llm")
				if _, err := route.Parse([]byte(spec)); err != nil || !strings.Contains(spec, "persistent: {function: llm}") {
					t.Errorf("route to apply:\n%s\nwant a valid route with llm as its persistent target (%v)", spec, err)
				}
			} else if got.Change.RoutePolicy != "" {
				t.Errorf("route policy %q for a rule that needs no route", got.Change.RoutePolicy)
			}
			if (tt.mode == ModeAsync) != (got.Change.Invoke == "async") {
				t.Errorf("invoke = %q for mode %s", got.Change.Invoke, tt.mode)
			}
			if (tt.mode == ModeAsync) != strings.Contains(got.Change.InvokeHint("llm"), "ember spawn llm") {
				t.Errorf("invoke hint = %q for mode %s", got.Change.InvokeHint("llm"), tt.mode)
			}
			// Every spec change advise prints deploys: merged into a spec
			// (as the user would paste it) it parses and sets what it says.
			frag := got.Change.SpecYAML()
			f, err := spec.Parse([]byte("name: llm\ncommand: [./server]\n" + frag))
			if err != nil {
				t.Fatalf("spec change does not deploy:\n%s\n%v", frag, err)
			}
			if m := got.Change.ScalingMin; m != nil && f.Scaling.Min != *m {
				t.Errorf("parsed scaling.min = %d, want %d", f.Scaling.Min, *m)
			}
			if tt.route {
				// the route's serverless target: a min-0 copy of the spec
				if _, err := spec.Parse([]byte("name: llm-serverless\ncommand: [./server]\nscaling: {min: 0}\n")); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// A warm instance costs more than scale-from-zero at the seed's traffic:
// the latency rule must show that price.
func TestAdviseProvisionedCostsMore(t *testing.T) {
	recs, err := Advise(AdviceInputs{Workload: seedInputs(), LatencyBudget: 50 * time.Millisecond, Catalogue: mustCatalogue(t)})
	if err != nil {
		t.Fatal(err)
	}
	// One A100 warm all month at $0.001/s is $2,592, plus a second
	// instance kept warm after overlapping requests.
	if got := recs[0].MonthlyUSD; got < 2592 || got > 1.2*2592 {
		t.Errorf("provisioned monthly = %.2f, want in [2592, 3110]", got)
	}
	if recs[0].MonthlyUSD <= recs[0].AlternativeUSD/10 {
		t.Errorf("provisioned %.2f should be dearer than scale-from-zero", recs[0].MonthlyUSD)
	}
}
