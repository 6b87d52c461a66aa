package route

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ember-run/ember/internal/spec"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestParse(t *testing.T) {
	r, err := Parse([]byte(`
name: llama
targets:
  persistent: {url: "http://vllm.internal:8000"}
  serverless: {function: llama-sl}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Route{
		Name: "llama",
		Targets: Targets{
			Persistent: Target{URL: "http://vllm.internal:8000"},
			Serverless: Target{Function: "llama-sl"},
		},
		Policy:  Policy{Type: PolicyQPS, Window: spec.Duration(5 * time.Minute), Threshold: 10, Hysteresis: 0.8, Hold: spec.Duration(time.Minute)},
		Timeout: spec.Duration(DefaultTimeout),
	}
	if d := cmp.Diff(want, r); d != "" {
		t.Errorf("Parse (-want +got):\n%s", d)
	}

	bad := []struct {
		yaml string
		want []string
	}{
		{`name: x`, []string{"targets.persistent: set function or url", "targets.serverless: set function or url"}},
		{`{name: "Bad Name", targets: {persistent: {function: a}, serverless: {function: b}}}`, []string{"name: must match"}},
		{`{name: x, targets: {persistent: {function: a, url: "http://h"}, serverless: {url: "ftp://h"}}}`,
			[]string{"targets.persistent: set function or url, not both", "targets.serverless.url: must be an http(s) base URL"}},
		{`{name: x, targets: {persistent: {function: a}, serverless: {function: a}}}`, []string{"targets: persistent and serverless are the same"}},
		{`{name: x, targets: {persistent: {function: a}, serverless: {function: b}}, policy: {type: latency, hysteresis: 1.5, window: 10ms}}`,
			[]string{"policy.type: must be qps or cost", "policy.hysteresis: must be in (0, 1]", "policy.window: must be ≥ 1s"}},
		{`{name: x, targets: {persistent: {function: a}, serverless: {function: b}}, polcy: {}}`, []string{`unknown field "polcy"`}},
		{`{name: x, targets: {persistent: {url: "http://h"}, serverless: {function: b}}, policy: {type: cost}}`,
			[]string{"targets.persistent: the cost policy needs usd_per_hour or usd_per_request for a url target"}},
		{`{name: x, targets: {persistent: {url: "http://h", usd_per_hour: -1}, serverless: {function: b, usd_per_hour: 2}}}`,
			[]string{"targets.persistent: usd_per_hour and usd_per_request must be ≥ 0 (got -1, 0)", "targets.serverless: usd_per_hour and usd_per_request price url targets"}},
	}
	for _, tc := range bad {
		_, err := Parse([]byte(tc.yaml))
		if err == nil {
			t.Errorf("Parse(%s): want an error", tc.yaml)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Parse(%s) = %q, want it to contain %q", tc.yaml, err, w)
			}
		}
	}
}

func testRoute(mod func(*Policy)) *Route {
	r := &Route{Name: "llm", Targets: Targets{Persistent: Target{Function: "llm-big"}, Serverless: Target{Function: "llm-small"}}}
	r.Default()
	if mod != nil {
		mod(&r.Policy)
	}
	return r
}

func TestDecideQPS(t *testing.T) {
	r := testRoute(nil) // threshold 10, hysteresis 0.8, hold 1m
	tests := []struct {
		name   string
		qps    float64
		state  State
		at     time.Duration // now - t0
		choice Choice
		code   string
	}{
		{name: "first, quiet", qps: 2, choice: Serverless, code: ReasonBelowThreshold},
		{name: "first, busy", qps: 15, choice: Persistent, code: ReasonAboveThreshold},
		{name: "at threshold stays serverless", qps: 10, state: State{Serverless, t0}, at: time.Hour, choice: Serverless, code: ReasonBelowThreshold},
		{name: "rise above", qps: 10.5, state: State{Serverless, t0}, at: time.Hour, choice: Persistent, code: ReasonAboveThreshold},
		{name: "rise above within hold", qps: 30, state: State{Serverless, t0}, at: 30 * time.Second, choice: Serverless, code: ReasonHold},
		{name: "dip inside band", qps: 8.5, state: State{Persistent, t0}, at: time.Hour, choice: Persistent, code: ReasonHysteresis},
		{name: "at leave level stays", qps: 8, state: State{Persistent, t0}, at: time.Hour, choice: Persistent, code: ReasonHysteresis},
		{name: "fall below leave level", qps: 7.9, state: State{Persistent, t0}, at: time.Hour, choice: Serverless, code: ReasonBelowThreshold},
		{name: "fall within hold", qps: 0, state: State{Persistent, t0}, at: 59 * time.Second, choice: Persistent, code: ReasonHold},
		{name: "fall at hold end", qps: 0, state: State{Persistent, t0}, at: time.Minute, choice: Serverless, code: ReasonBelowThreshold},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, why := r.Decide(t0.Add(tc.at), Observations{QPS: tc.qps, State: tc.state})
			if c != tc.choice || why.Code != tc.code {
				t.Errorf("Decide(qps=%g, %+v) = %s, %s; want %s, %s", tc.qps, tc.state, c, why, tc.choice, tc.code)
			}
			if why.Detail == "" {
				t.Error("empty reason detail")
			}
		})
	}
}

// fakeCost prices persistent as a flat hourly cost and serverless as
// proportional to traffic.
type fakeCost struct {
	flat, perQPS float64
	err          error
}

func (f fakeCost) HourlyCosts(_ *Route, qps float64) (float64, float64, error) {
	return f.flat, f.perQPS * qps, f.err
}

func TestDecideCost(t *testing.T) {
	r := testRoute(func(p *Policy) { p.Type = PolicyCost; p.Hold = spec.Duration(time.Nanosecond) })
	cm := fakeCost{flat: 4, perQPS: 1} // crossover at 4 qps; leave below 4×... serverless < 0.8×4 → qps < 3.2
	tests := []struct {
		name   string
		qps    float64
		state  Choice
		cost   CostComparer
		choice Choice
		code   string
	}{
		{name: "serverless cheaper", qps: 2, state: Serverless, cost: cm, choice: Serverless, code: ReasonCheaper},
		{name: "persistent cheaper", qps: 5, state: Serverless, cost: cm, choice: Persistent, code: ReasonCheaper},
		{name: "slightly cheaper serverless keeps persistent", qps: 3.5, state: Persistent, cost: cm, choice: Persistent, code: ReasonCheaper},
		{name: "clearly cheaper serverless", qps: 3, state: Persistent, cost: cm, choice: Serverless, code: ReasonCheaper},
		{name: "no model falls back to qps", qps: 12, state: Serverless, cost: nil, choice: Persistent, code: ReasonCostUnavailable},
		{name: "model error falls back to qps", qps: 3, state: Serverless, cost: fakeCost{err: errors.New("no prices")}, choice: Serverless, code: ReasonCostUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, why := r.Decide(t0.Add(time.Hour), Observations{QPS: tc.qps, State: State{tc.state, t0}, Cost: tc.cost})
			if c != tc.choice || why.Code != tc.code {
				t.Errorf("Decide(qps=%g from %s) = %s, %s; want %s, %s", tc.qps, tc.state, c, why, tc.choice, tc.code)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	w := NewWindow(time.Minute, t0)
	// Three requests in the first second read as 3/30s, not 3/1s (warm-up).
	w.Record(t0, 3)
	if got, want := w.QPS(t0), 0.1; math.Abs(got-want) > 1e-9 {
		t.Errorf("QPS during warm-up = %g, want %g", got, want)
	}
	for s := 1; s < 60; s++ {
		w.Record(t0.Add(time.Duration(s)*time.Second), 2)
	}
	// 3 + 59×2 = 121 requests in the 59s since the start.
	if got, want := w.QPS(t0.Add(59*time.Second)), 121.0/59; math.Abs(got-want) > 1e-9 {
		t.Errorf("QPS at 59s = %g, want %g", got, want)
	}
	// One second later the first bucket has left the window.
	if got, want := w.QPS(t0.Add(60*time.Second)), 118.0/60; math.Abs(got-want) > 1e-9 {
		t.Errorf("QPS at 60s = %g, want %g", got, want)
	}
	// Long silence: stale slots read as empty without a sweep.
	if got := w.QPS(t0.Add(10 * time.Minute)); got != 0 {
		t.Errorf("QPS after silence = %g, want 0", got)
	}
}

// simulate drives a route second by second: load(s) requests arrive in
// second s; after each second the route decides. It returns the choice in
// each second and the seconds at which the choice changed.
func simulate(r *Route, seconds int, load func(s int) int) (choices []Choice, switches []int) {
	w := NewWindow(r.Policy.Window.D(), t0)
	var st State
	for s := range seconds {
		now := t0.Add(time.Duration(s) * time.Second)
		w.Record(now, load(s))
		c, _ := r.Decide(now, Observations{QPS: w.QPS(now), State: st})
		if st.Choice != "" && c != st.Choice {
			switches = append(switches, s)
		}
		st = st.Apply(now, c)
		choices = append(choices, c)
	}
	return choices, switches
}

func TestSyntheticLoad(t *testing.T) {
	r := testRoute(nil) // 5m window, threshold 10, leave below 8, hold 1m
	const minute = 60

	t.Run("rise then fall", func(t *testing.T) {
		// 5 qps for 10m, 20 qps for 10m, then 0 for 15m.
		load := func(s int) int {
			switch {
			case s < 10*minute:
				return 5
			case s < 20*minute:
				return 20
			default:
				return 0
			}
		}
		choices, switches := simulate(r, 35*minute, load)
		if len(switches) != 2 {
			t.Fatalf("switches at %v, want exactly 2 (up, then down)", switches)
		}
		// Up: the 5m average passes 10 once 1/3 of the window is at 20 qps:
		// 5 + 15×f > 10 → f > 1/3 → 100s after the step.
		if up := switches[0]; up != 10*minute+100 {
			t.Errorf("switched to persistent at %ds, want %ds", up, 10*minute+100)
		}
		// Down: the window falls below 8 qps when 8/20 of it still holds
		// traffic: 180s after the traffic stops.
		if down := switches[1]; down != 20*minute+180 {
			t.Errorf("switched back to serverless at %ds, want %ds", down, 20*minute+180)
		}
		if choices[15*minute] != Persistent || choices[34*minute] != Serverless {
			t.Errorf("choices at 15m, 34m = %s, %s; want persistent, serverless", choices[15*minute], choices[34*minute])
		}
	})

	t.Run("hovering at threshold does not flap", func(t *testing.T) {
		// 30 minutes alternating 12 and 7 qps minute by minute: the average
		// wanders around 9.5-10.5, the band is 8-10.
		load := func(s int) int {
			if (s/minute)%2 == 0 {
				return 12
			}
			return 7
		}
		_, switches := simulate(r, 30*minute, load)
		if len(switches) > 1 {
			t.Errorf("switches at %v: flapping", switches)
		}
	})

	t.Run("burst shorter than needed stays serverless", func(t *testing.T) {
		// A 60s burst at 40 qps over a 2 qps base: 2 + 38×(60/300) = 9.6 qps.
		load := func(s int) int {
			if s >= 10*minute && s < 11*minute {
				return 40
			}
			return 2
		}
		_, switches := simulate(r, 20*minute, load)
		if len(switches) != 0 {
			t.Errorf("switches at %v, want none", switches)
		}
	})

	t.Run("spiky traffic with short hold", func(t *testing.T) {
		// Without hold the band alone must stop flapping: 11 and 9 qps alternating second by second.
		r := testRoute(func(p *Policy) { p.Hold = spec.Duration(time.Nanosecond); p.Window = spec.Duration(10 * time.Second) })
		load := func(s int) int {
			if s < 60 {
				return 0
			}
			if s%2 == 0 {
				return 11
			}
			return 9
		}
		_, switches := simulate(r, 10*minute, load)
		if len(switches) > 1 {
			t.Errorf("switches at %v: flapping", switches)
		}
	})
}

func TestListedHourlyCost(t *testing.T) {
	tg := Target{URL: "http://h", USDPerHour: 2, USDPerRequest: 0.001}
	if got, want := tg.ListedHourlyCost(0.5), 2+0.001*0.5*3600; got != want {
		t.Errorf("ListedHourlyCost(0.5) = %g, want %g", got, want)
	}
}
