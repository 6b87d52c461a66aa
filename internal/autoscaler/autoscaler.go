// Package autoscaler is Ember's pure scaling decider: given a function's
// scaling parameters, a window of concurrency observations and the current
// time, it says how many instances the function should have. It does no I/O,
// starts no goroutines and never reads the clock; time arrives as a parameter.
package autoscaler

import (
	"fmt"
	"math"
	"time"
)

// Defaults for zero-valued Params fields.
const (
	DefaultStableWindow   = 60 * time.Second
	DefaultPanicWindow    = 6 * time.Second
	DefaultPanicThreshold = 2.0
	DefaultTarget         = 0.7
	// UnlimitedConcurrency stands in for Concurrency 0 (no hard cap) when
	// sizing: an uncapped instance is assumed to serve 100 requests at once.
	UnlimitedConcurrency = 100
)

// maxInstances bounds the demand-derived count before Max is applied, so
// absurd observations (Inf, 1e300) cannot overflow int.
const maxInstances = 1 << 30

// Params are the scaling inputs for one function at one moment.
type Params struct {
	// Min is the effective minimum (spec min raised by active schedule windows).
	Min int
	Max int
	// Buffer spare instances are added while traffic flows.
	Buffer int
	// Concurrency is the per-instance hard cap (0 = unlimited).
	Concurrency int
	// Target is the utilisation of Concurrency to aim for, in (0, 1].
	Target float64
	// IdleTimeout: traffic "flows" while a non-zero observation lies within
	// the last IdleTimeout; after that the decision falls to Min.
	IdleTimeout time.Duration
	// StableWindow and PanicWindow are the averaging windows (defaults 60s and 6s).
	StableWindow time.Duration
	PanicWindow  time.Duration
	// PanicThreshold is the ratio of panic-window demand to current capacity
	// that enters panic mode (default 2.0).
	PanicThreshold float64
	// Ready is the number of instances ready or starting now.
	Ready int
	// Current is the concurrency (in flight plus queued) an activator saw
	// at this instant, carried by its poke when requests wait for a slot
	// (Knative's first-request stat); 0 on a plain tick. Neither average
	// counts below it, so a burst from zero is sized at once by the same
	// rule as everything else rather than from an average diluted by the
	// idle seconds before it.
	Current float64

	// PanicSince and PanicDesired are the panic memory: the controller feeds
	// back the previous Decision's fields of the same names (zero at first).
	// Passing them in keeps Decide pure.
	PanicSince   time.Time
	PanicDesired int
}

// Decision is the decider's answer.
type Decision struct {
	// Desired is the instance count to scale to, within [Min, Max].
	Desired int
	// Panic is true while panic mode holds the count up.
	Panic bool
	// StableDemand and PanicDemand are the averaged concurrency that led here.
	StableDemand float64
	PanicDemand  float64
	// Reason explains the decision in a few words, for logs and status.
	Reason string
	// PanicSince is when panic was last triggered (zero when not in panic)
	// and PanicDesired the highest count panic has asked for, before Buffer
	// and bounds. Feed both back into the next Params.
	PanicSince   time.Time
	PanicDesired int
}

// Decide returns how many instances the function should have at now. It is
// pure: it reads w (never modifies it) and p, and returns the panic memory
// the caller must feed back through the next Params.
//
// The count follows Knative's KPA. Demand (average concurrency) over the
// stable window, divided by what one instance should carry
// (Concurrency×Target), gives the stable count. The same over the short panic
// window reacts to bursts: when it reaches PanicThreshold× the ready count,
// panic mode starts, uses the panic count and never scales down until a whole
// stable window passes without a new trigger.
//
// E.g. Concurrency 4, Target 0.7 → 2.8 per instance (never below 1). Ready 1 and a burst to
// 20 over the last 6s → panic count ceil(20/2.8) = 8 ≥ 2×1: panic, desired 8
// even though the 60s average may still read 3 (→ 2 instances).
//
// A poke's Current is demand now: with nothing ready and 8 requests waiting,
// both counts are ceil(8/2.8) = 3 ≥ 2×1, so panic starts 3 at once and holds
// them while the averages catch up; no second wave follows.
//
// Idle wins over panic: once traffic stops for IdleTimeout the count falls to
// Min and the panic memory is dropped. The window's span must cover
// StableWindow, or the stable average covers only the span.
//
// pre: 0 <= Min <= Max. Should Max < Min anyway, Max wins: it is the cost cap.
func Decide(p Params, w *Window, now time.Time) Decision {
	p = withDefaults(p)
	per := float64(p.Concurrency) * p.Target
	if p.Concurrency == 0 {
		per = UnlimitedConcurrency * p.Target
	}
	// A request occupies a whole slot: with Concurrency 1 a target below 1
	// would keep a spare instance per request (two GPUs for one call), so
	// headroom never goes below one request per instance. Use Buffer for
	// deliberate spares.
	per = max(per, 1)
	current := p.Current
	if !(current > 0) { // also catches NaN
		current = 0
	}
	d := Decision{
		StableDemand: max(w.Average(now, p.StableWindow), current),
		PanicDemand:  max(w.Average(now, p.PanicWindow), current),
	}

	if current == 0 && !flowing(w, now, p.IdleTimeout) {
		d.Desired = clamp(p.Min, p.Min, p.Max)
		d.Reason = "idle"
		return d
	}

	stableN := max(instances(d.StableDemand, per), 1)
	panicN := max(instances(d.PanicDemand, per), 1)
	ready := max(p.Ready, 1)
	triggered := float64(panicN) >= p.PanicThreshold*float64(ready) && panicN > p.Ready

	desired := stableN
	d.Reason = fmt.Sprintf("stable demand %.1f / %.1f per instance", d.StableDemand, per)
	since := p.PanicSince
	if triggered {
		since = now // entering, or re-triggering, restarts the hold
	}
	if !since.IsZero() && now.Sub(since) < p.StableWindow {
		prev := 0
		if !p.PanicSince.IsZero() {
			prev = p.PanicDesired
		}
		desired = max(panicN, prev)
		d.Panic, d.PanicSince, d.PanicDesired = true, since, desired
		if triggered {
			d.Reason = fmt.Sprintf("panic: demand %.1f ≥ %g×capacity", d.PanicDemand, p.PanicThreshold)
		} else {
			d.Reason = fmt.Sprintf("panic since %s: demand %.1f / %.1f per instance, holding %d",
				since.Format(time.TimeOnly), d.PanicDemand, per, desired)
		}
	}

	if p.Buffer > 0 {
		desired += p.Buffer
		d.Reason += fmt.Sprintf(" + buffer %d", p.Buffer)
	}
	d.Desired = clamp(desired, p.Min, p.Max)
	switch {
	case d.Desired < desired:
		d.Reason += fmt.Sprintf(" (capped at max %d)", p.Max)
	case d.Desired > desired:
		d.Reason += fmt.Sprintf(" (raised to min %d)", p.Min)
	}
	return d
}

// withDefaults fills zero (or nonsensical) knobs with their defaults.
func withDefaults(p Params) Params {
	if p.StableWindow <= 0 {
		p.StableWindow = DefaultStableWindow
	}
	if p.PanicWindow <= 0 {
		p.PanicWindow = DefaultPanicWindow
	}
	if !(p.PanicThreshold > 0) { // also catches NaN
		p.PanicThreshold = DefaultPanicThreshold
	}
	if !(p.Target > 0) || math.IsInf(p.Target, 0) {
		p.Target = DefaultTarget
	}
	if p.Concurrency < 0 {
		p.Concurrency = 0
	}
	return p
}

// flowing reports whether traffic still flows: the newest non-zero sample
// lies within idle of now. With idle 0 only a non-zero newest sample counts.
func flowing(w *Window, now time.Time, idle time.Duration) bool {
	last := w.LastActive()
	if last.IsZero() {
		return false
	}
	if idle <= 0 {
		return !last.Before(w.latest)
	}
	return now.Sub(last) <= idle
}

// instances is ceil(demand/per), kept within [0, maxInstances] whatever the
// float inputs (NaN and negative demand count as none). The small epsilon
// keeps float noise from adding an instance: averaging can turn an exact 2
// into 2.0000000000000004, which must stay 2.
func instances(demand, per float64) int {
	n := math.Ceil(demand/per - 1e-9)
	if !(n > 0) {
		return 0
	}
	return int(min(n, maxInstances))
}

// clamp bounds n to [lo, hi], and to 0 at the bottom; hi wins over lo.
func clamp(n, lo, hi int) int {
	return max(min(max(n, lo), hi), 0)
}
