package route

import (
	"fmt"
	"time"
)

// Choice is the pool a call goes to.
type Choice string

const (
	Persistent Choice = "persistent"
	Serverless Choice = "serverless"
)

// Other returns the other pool (the fallback when c is down).
func (c Choice) Other() Choice {
	if c == Persistent {
		return Serverless
	}
	return Persistent
}

// Target returns the route's target for c.
func (r *Route) Target(c Choice) Target {
	if c == Persistent {
		return r.Targets.Persistent
	}
	return r.Targets.Serverless
}

// Reason codes: a small fixed set, fit for a metric label.
const (
	ReasonAboveThreshold  = "above_threshold"  // QPS above the threshold: persistent
	ReasonBelowThreshold  = "below_threshold"  // QPS at or below the threshold (or the leave level): serverless
	ReasonHysteresis      = "hysteresis"       // persistent while QPS is between the leave level and the threshold
	ReasonHold            = "hold"             // the other pool is wanted, but the current choice is younger than Hold
	ReasonCheaper         = "cheaper"          // cost policy: the chosen pool costs less for the measured traffic
	ReasonCostUnavailable = "cost_unavailable" // cost policy without a usable cost model: decided by QPS
)

// Reason says why a choice was made: Code for metrics, Detail for people.
type Reason struct {
	Code   string
	Detail string
}

func (r Reason) String() string { return r.Code + ": " + r.Detail }

// State is the standing choice of a route and when it was made. The zero
// State means no choice yet.
type State struct {
	Choice Choice
	Since  time.Time
}

// Apply returns the state after choosing c at now: Since moves only when
// the choice changes.
func (s State) Apply(now time.Time, c Choice) State {
	if s.Choice == c {
		return s
	}
	return State{Choice: c, Since: now}
}

// CostComparer prices the two targets of a route for a traffic level. The
// composition root implements it with Ember's cost model and metering
// (function targets) and the targets' listed prices (URL targets); Decide
// calls it for the cost policy only.
type CostComparer interface {
	// HourlyCosts returns the expected cost per hour, in one currency, of
	// serving qps on r's persistent and serverless targets.
	HourlyCosts(r *Route, qps float64) (persistent, serverless float64, err error)
}

// Observations are the inputs of one decision.
type Observations struct {
	// QPS is the measured rate over the policy window (Window.QPS).
	QPS float64
	// State is the standing choice (zero before the first decision).
	State State
	// Cost prices the targets for the cost policy; nil falls back to QPS.
	Cost CostComparer
}

// Decide picks the pool for a call at now. It is pure.
//
// The qps policy switches to persistent when QPS rises above Threshold and
// back only when it falls below Threshold×Hysteresis, and never changes a
// choice younger than Hold, so traffic hovering at the threshold does not
// flap. E.g. threshold 10, hysteresis 0.8: 12 qps → persistent; 9 qps
// stays persistent; 7.9 qps → serverless (once the choice is ≥ Hold old).
//
// The cost policy does the same with the cost ratio serverless/persistent
// in place of QPS/Threshold: persistent once it is cheaper, serverless once
// serverless costs less than Hysteresis × persistent.
func (r *Route) Decide(now time.Time, obs Observations) (Choice, Reason) {
	want, why := r.want(obs)
	cur := obs.State.Choice
	if cur == "" || want == cur {
		return want, why
	}
	if age := now.Sub(obs.State.Since); age < r.Policy.Hold.D() {
		return cur, Reason{Code: ReasonHold, Detail: fmt.Sprintf("staying %s for %s more (hold %s); then %s",
			cur, (r.Policy.Hold.D() - age).Round(time.Second), r.Policy.Hold.D(), why.Detail)}
	}
	return want, why
}

// want is the choice the measurements call for, ignoring Hold.
func (r *Route) want(obs Observations) (Choice, Reason) {
	p := r.Policy
	if p.Type == PolicyCost {
		if obs.Cost == nil {
			c, why := r.byQPS(obs)
			return c, Reason{Code: ReasonCostUnavailable, Detail: "no cost model; " + why.Detail}
		}
		pc, sc, err := obs.Cost.HourlyCosts(r, obs.QPS)
		if err != nil || pc < 0 || sc < 0 {
			c, why := r.byQPS(obs)
			return c, Reason{Code: ReasonCostUnavailable, Detail: fmt.Sprintf("cost model failed (%v); %s", err, why.Detail)}
		}
		costs := fmt.Sprintf("at %.3g qps persistent costs $%.4g/h, serverless $%.4g/h", obs.QPS, pc, sc)
		if obs.State.Choice == Persistent {
			if sc < pc*p.Hysteresis {
				return Serverless, Reason{Code: ReasonCheaper, Detail: costs}
			}
			return Persistent, Reason{Code: ReasonCheaper, Detail: costs}
		}
		if pc < sc {
			return Persistent, Reason{Code: ReasonCheaper, Detail: costs}
		}
		return Serverless, Reason{Code: ReasonCheaper, Detail: costs}
	}
	return r.byQPS(obs)
}

func (r *Route) byQPS(obs Observations) (Choice, Reason) {
	p := r.Policy
	leave := p.Threshold * p.Hysteresis
	win := p.Window.D()
	switch {
	case obs.QPS > p.Threshold:
		return Persistent, Reason{Code: ReasonAboveThreshold,
			Detail: fmt.Sprintf("%.3g qps over %s > threshold %g", obs.QPS, win, p.Threshold)}
	case obs.State.Choice == Persistent && obs.QPS >= leave:
		return Persistent, Reason{Code: ReasonHysteresis,
			Detail: fmt.Sprintf("%.3g qps over %s: staying persistent until below %g", obs.QPS, win, leave)}
	case obs.State.Choice == Persistent:
		return Serverless, Reason{Code: ReasonBelowThreshold,
			Detail: fmt.Sprintf("%.3g qps over %s < %g (threshold %g × hysteresis %g)", obs.QPS, win, leave, p.Threshold, p.Hysteresis)}
	default:
		return Serverless, Reason{Code: ReasonBelowThreshold,
			Detail: fmt.Sprintf("%.3g qps over %s ≤ threshold %g", obs.QPS, win, p.Threshold)}
	}
}
