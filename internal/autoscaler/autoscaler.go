// Package autoscaler is Ember's pure scaling decider: given a function's
// scaling parameters, a window of concurrency observations and the current
// time, it says how many instances the function should have. It does no I/O,
// starts no goroutines and never reads the clock; time arrives as a parameter.
package autoscaler

import "time"

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
}
