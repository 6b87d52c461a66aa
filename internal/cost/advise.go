package cost

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Modes a recommendation can choose.
const (
	ModeServerless  = "serverless"
	ModeProvisioned = "provisioned-warm"
	ModeAlwaysOn    = "always-on"
	ModeAsync       = "async-jobs"
)

// Thresholds of the decision tree.
const (
	alwaysOnQPS      = 10
	burstPeakQPS     = 100
	latencyBudgetMin = 100 * time.Millisecond
	largeModelGB     = 10
	asyncAfter       = 15 * time.Minute
)

// AdviceInputs are the traffic and model facts the decision tree reads,
// given as parameters or measured by metering.
type AdviceInputs struct {
	// Workload is priced with Estimate; its RequestsPerDay gives average QPS.
	Workload Inputs
	// PeakQPS is the highest request rate seen or expected (0: unknown).
	PeakQPS float64
	// LatencyBudget is the response time the caller can wait (0: no budget).
	LatencyBudget time.Duration
	// ModelGB is the model's size in gigabytes.
	ModelGB float64
	// Catalogue prices the options.
	Catalogue *Catalogue
}

// SpecChange is the concrete edit to make to the function's spec.
type SpecChange struct {
	ScalingMin  *int   `json:"scaling.min,omitempty"`
	ScalingMax  *int   `json:"scaling.max,omitempty"`
	IdleTimeout string `json:"scaling.idle_timeout,omitempty"`
	// RoutePolicy, when set, is the policy of a hybrid route to put in
	// front: the function at ScalingMin as its persistent target, a min-0
	// copy as its serverless one (ember route apply; docs/gateway.md).
	RoutePolicy string `json:"route_policy,omitempty"`
	// Invoke says how to call the function when not synchronously:
	// "async" means submit jobs (POST /v1/predictions, ember spawn). It is
	// not a spec field: InvokeHint renders it as the call to make.
	Invoke  string `json:"invoke,omitempty"`
	Timeout string `json:"timeout,omitempty"`
}

// qpsRoutePolicy is the average-QPS rule as a route policy: persistent above
// 10 average QPS, serverless below.
const qpsRoutePolicy = "{type: qps, window: 5m, threshold: 10}"

// SpecYAML renders the change as a fragment of a function spec, to merge
// into the function's own: only fields a spec has, so the result deploys.
// "" when the change touches no spec field (Invoke is how to call the
// function, not a spec field: see InvokeHint).
func (c SpecChange) SpecYAML() string {
	var b strings.Builder
	if c.ScalingMin != nil || c.ScalingMax != nil || c.IdleTimeout != "" {
		b.WriteString("scaling:\n")
		if c.ScalingMin != nil {
			fmt.Fprintf(&b, "  min: %d\n", *c.ScalingMin)
		}
		if c.ScalingMax != nil {
			fmt.Fprintf(&b, "  max: %d\n", *c.ScalingMax)
		}
		if c.IdleTimeout != "" {
			fmt.Fprintf(&b, "  idle_timeout: %s\n", c.IdleTimeout)
		}
	}
	if c.Timeout != "" {
		fmt.Fprintf(&b, "timeout: %s\n", c.Timeout)
	}
	return b.String()
}

// InvokeHint says how to call fn when the change is to call it as an
// async job; "" otherwise.
func (c SpecChange) InvokeHint(fn string) string {
	if c.Invoke != "async" {
		return ""
	}
	return fmt.Sprintf("call it as an async job: ember spawn %[1]s --data @input.json (or POST /v1/predictions {\"model\": %[1]q, \"input\": ...}), then ember get ID --wait 600s or a --webhook", fn)
}

// RouteSpec renders a route that applies c.RoutePolicy to fn: fn (at
// c.ScalingMin) as the persistent target, fn+"-serverless" (a min-0 copy)
// as the serverless one. "" when c has no route policy.
func (c SpecChange) RouteSpec(fn string) string {
	if c.RoutePolicy == "" {
		return ""
	}
	return fmt.Sprintf("name: %[1]s-route\ntargets:\n  persistent: {function: %[1]s}\n  serverless: {function: %[1]s-serverless}\npolicy: %[2]s\n", fn, c.RoutePolicy)
}

// Recommendation is one rule of the decision tree that fired.
type Recommendation struct {
	Rule string `json:"rule"`
	Mode string `json:"mode"`
	Why  string `json:"why"`
	// MonthlyUSD is the recommended mode's cost; AlternativeUSD the best other.
	MonthlyUSD     float64 `json:"monthly_usd"`
	Alternative    string  `json:"alternative,omitempty"`
	AlternativeUSD float64 `json:"alternative_usd,omitempty"`
	// Inputs are the figures the rule read.
	Inputs map[string]float64 `json:"inputs"`
	Change SpecChange         `json:"change"`
}

// Advise applies the decision tree: average QPS > 10 → always-on;
// bursty traffic that goes from idle to 100+ QPS → serverless; a latency
// budget below 100 ms → provisioned warm instances (min ≥ 1) or always-on;
// a model over 10 GB → GPU serverless with a longer keep-warm; inference
// over 15 minutes → async jobs. With no rule firing, serverless from zero.
// Every recommendation carries the cost figures behind it.
func Advise(ai AdviceInputs) ([]Recommendation, error) {
	in := ai.Workload.withDefaults()
	if err := in.validate(); err != nil {
		return nil, err
	}
	res, err := Estimate(in, ai.Catalogue, EngineAnalytic)
	if err != nil {
		return nil, err
	}
	var ember, alwaysOn *Option
	for i := range res.Options {
		o := &res.Options[i]
		switch o.Kind {
		case KindHosted:
			if ember == nil {
				ember = o
			}
		case KindAlwaysOn:
			if alwaysOn == nil || o.MonthlyUSD < alwaysOn.MonthlyUSD {
				alwaysOn = o
			}
		}
	}
	if ember == nil || alwaysOn == nil {
		return nil, fmt.Errorf("%w %q: need a hosted and an always-on offer to advise", ErrUnknownHardware, in.Hardware)
	}
	avgQPS := in.lambda()
	c := float64(max(in.Concurrency, 1))
	fleet := max(1, int(math.Ceil(avgQPS*in.SecondsPerRequest/(c*in.Target)-1e-9)))
	facts := map[string]float64{
		"avg_qps":             avgQPS,
		"peak_qps":            ai.PeakQPS,
		"seconds_per_request": in.SecondsPerRequest,
		"cold_start_s":        in.ColdStart.Seconds(),
		"cold_start_rate":     res.Usage.ColdStartRate,
		"utilization":         alwaysOn.Utilization,
		"model_gb":            ai.ModelGB,
		"latency_budget_ms":   float64(ai.LatencyBudget.Milliseconds()),
	}
	rec := func(rule, mode, why string, ch SpecChange) Recommendation {
		r := Recommendation{Rule: rule, Mode: mode, Why: why, Inputs: facts, Change: ch}
		if mode == ModeAlwaysOn {
			r.MonthlyUSD, r.Alternative, r.AlternativeUSD = alwaysOn.MonthlyUSD, ember.Name, ember.MonthlyUSD
		} else {
			r.MonthlyUSD, r.Alternative, r.AlternativeUSD = ember.MonthlyUSD, alwaysOn.Name, alwaysOn.MonthlyUSD
		}
		return r
	}
	ptr := func(n int) *int { return &n }
	var out []Recommendation
	if in.SecondsPerRequest > asyncAfter.Seconds() {
		out = append(out, rec("inference > 15 min", ModeAsync,
			fmt.Sprintf("each request runs %.0f s: submit it as an async job and poll or take a webhook instead of holding a connection", in.SecondsPerRequest),
			SpecChange{Invoke: "async", Timeout: (time.Duration(in.SecondsPerRequest*1.5) * time.Second).String()}))
	}
	if avgQPS > alwaysOnQPS {
		out = append(out, rec("average QPS > 10", ModeAlwaysOn,
			fmt.Sprintf("%.1f requests/s on average keeps %d instance(s) busy around the clock; always-on costs %s vs %s serverless", avgQPS, fleet, usd(alwaysOn.MonthlyUSD), usd(ember.MonthlyUSD)),
			SpecChange{ScalingMin: ptr(fleet), RoutePolicy: qpsRoutePolicy}))
	}
	if ai.PeakQPS >= burstPeakQPS && avgQPS <= alwaysOnQPS {
		peakFleet := max(1, int(math.Ceil(ai.PeakQPS*in.SecondsPerRequest/(c*in.Target)-1e-9)))
		out = append(out, rec("bursty: idle to 100+ QPS", ModeServerless,
			fmt.Sprintf("peaks of %.0f requests/s over an average of %.2f: pay for bursts only, scale from zero up to %d instance(s)", ai.PeakQPS, avgQPS, peakFleet),
			SpecChange{ScalingMin: ptr(0), ScalingMax: ptr(peakFleet), IdleTimeout: in.IdleTimeout.String()}))
	}
	if ai.LatencyBudget > 0 && ai.LatencyBudget < latencyBudgetMin {
		mode, route := ModeProvisioned, ""
		if avgQPS > alwaysOnQPS {
			mode, route = ModeAlwaysOn, qpsRoutePolicy
		}
		r := rec("latency budget < 100 ms", mode,
			fmt.Sprintf("a %s budget cannot absorb a %s cold start (%.1f%% of requests would wait for one): keep %d instance(s) warm", ai.LatencyBudget, in.ColdStart, 100*res.Usage.ColdStartRate, fleet),
			SpecChange{ScalingMin: ptr(fleet), RoutePolicy: route})
		if mode == ModeProvisioned {
			warm := in
			warm.Min = fleet
			if wr, err := Estimate(warm, ai.Catalogue, EngineAnalytic); err == nil {
				for _, o := range wr.Options {
					if o.Offer == ember.Offer {
						r.MonthlyUSD = o.MonthlyUSD
					}
				}
			}
		}
		out = append(out, r)
	}
	if ai.ModelGB > largeModelGB {
		idle := max(in.IdleTimeout, 10*time.Minute)
		out = append(out, rec("model > 10 GB", ModeServerless,
			fmt.Sprintf("a %.0f GB model needs a GPU and loads slowly: run it as GPU serverless and keep it warm longer between requests", ai.ModelGB),
			SpecChange{IdleTimeout: idle.String()}))
	}
	if len(out) == 0 {
		out = append(out, rec("default", ModeServerless,
			fmt.Sprintf("%.2f requests/s on average uses %.1f%% of one always-on instance: scale from zero (%s vs %s always-on)", avgQPS, 100*alwaysOn.Utilization, usd(ember.MonthlyUSD), usd(alwaysOn.MonthlyUSD)),
			SpecChange{ScalingMin: ptr(0), IdleTimeout: in.IdleTimeout.String()}))
	}
	return out, nil
}
