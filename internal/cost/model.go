package cost

import (
	"errors"
	"fmt"
	"github.com/ember-run/ember/internal/keepalive"
	"math"
	"time"
)

// Arrival shapes.
const (
	ShapePoisson = "poisson"
	ShapeDiurnal = "diurnal"
	ShapeBursty  = "bursty"
)

// Engines.
const (
	EngineAnalytic = "analytic"
	EngineSimulate = "simulate"
	EngineBoth     = "both"
)

// Month is the billing period every output is scaled to: 30 days.
const Month = 30 * 24 * time.Hour

// Defaults applied by Inputs.withDefaults.
const (
	DefaultIdleTimeout = 120 * time.Second // spec.DefaultIdleTimeout
	DefaultColdStart   = 10 * time.Second
	DefaultTarget      = 0.7 // spec.DefaultTarget
	DefaultMax         = 1000
	DefaultBurstOn     = 10 * time.Minute
	DefaultBurstOff    = 90 * time.Minute
	DefaultSeed        = 1
)

// ErrInvalidInputs wraps every validation failure of Inputs.
var ErrInvalidInputs = errors.New("cost: invalid inputs")

// Inputs describe one workload on one hardware class.
type Inputs struct {
	// RequestsPerDay is the mean arrival rate. With a Trace it is taken from
	// the trace when zero.
	RequestsPerDay float64 `json:"requests_per_day"`
	// SecondsPerRequest is the service time of one request once an instance
	// is ready (GPU-busy seconds).
	SecondsPerRequest float64 `json:"seconds_per_request"`
	// Hardware names the class, e.g. "a100-40gb" or "cpu".
	Hardware string `json:"hardware"`
	// GPUsPerInstance is how many GPUs one instance occupies (default 1; 0 for cpu).
	GPUsPerInstance int `json:"gpus_per_instance"`
	// Concurrency is the in-flight cap per instance (default 1).
	Concurrency int `json:"concurrency"`
	// IdleTimeout is the keep-warm window (default 120s, the spec default).
	IdleTimeout time.Duration `json:"idle_timeout"`
	// Min instances are kept ready always.
	Min int `json:"min"`
	// Max bounds instances (default 1000).
	Max int `json:"max"`
	// ColdStart is start-to-ready time of one instance (default 10s).
	ColdStart time.Duration `json:"cold_start"`
	// Shape of arrivals: poisson (default), diurnal or bursty.
	Shape string `json:"shape"`
	// DiurnalAmplitude is the relative swing of the diurnal rate (default 0.8:
	// the rate goes from 0.2× to 1.8× the mean over a day).
	DiurnalAmplitude float64 `json:"diurnal_amplitude,omitempty"`
	// BurstOn and BurstOff are the mean on/off period lengths of the bursty
	// shape (defaults 10m and 90m); all traffic arrives in on periods.
	BurstOn  time.Duration `json:"burst_on,omitempty"`
	BurstOff time.Duration `json:"burst_off,omitempty"`
	// Target is the utilisation always-on fleets are sized to and the
	// autoscaler aims for (default 0.7).
	Target float64 `json:"target"`
	// Seed drives the simulation's random arrivals; same seed, same answer.
	Seed uint64 `json:"seed"`
	// SimDuration is how much traffic the simulation generates (default: up
	// to 30 days, cut so that at most about 200,000 arrivals are generated).
	SimDuration time.Duration `json:"sim_duration,omitempty"`
	// Trace, when set, replaces generated arrivals in the simulation.
	Trace *Trace `json:"-"`
	// KeepWarm, when set, replaces IdleTimeout with the learned keep-warm
	// policy (idle_timeout: auto) in the simulation.
	KeepWarm *KeepWarmPolicy `json:"-"`
}

// KeepWarmPolicy is the learned policy's configuration in a simulation.
type KeepWarmPolicy struct {
	Config keepalive.Config
	Prices keepalive.Prices
}

func (in Inputs) withDefaults() Inputs {
	if in.Trace != nil && in.RequestsPerDay == 0 {
		in.RequestsPerDay = in.Trace.RequestsPerDay()
	}
	if in.Trace != nil && in.SecondsPerRequest == 0 {
		in.SecondsPerRequest = in.Trace.MeanDuration()
	}
	if in.Hardware == "" {
		in.Hardware = "a100-40gb"
	}
	if in.GPUsPerInstance == 0 && in.Hardware != "cpu" {
		in.GPUsPerInstance = 1
	}
	if in.Concurrency == 0 {
		in.Concurrency = 1
	}
	if in.IdleTimeout == 0 {
		in.IdleTimeout = DefaultIdleTimeout
	}
	if in.IdleTimeout < 0 {
		in.IdleTimeout = 0
	}
	if in.Max == 0 {
		in.Max = max(DefaultMax, in.Min)
	}
	if in.ColdStart == 0 {
		in.ColdStart = DefaultColdStart
	}
	if in.ColdStart < 0 {
		in.ColdStart = 0
	}
	if in.Shape == "" {
		in.Shape = ShapePoisson
	}
	if in.DiurnalAmplitude == 0 {
		in.DiurnalAmplitude = 0.8
	}
	if in.BurstOn == 0 {
		in.BurstOn = DefaultBurstOn
	}
	if in.BurstOff == 0 {
		in.BurstOff = DefaultBurstOff
	}
	if in.Target == 0 {
		in.Target = DefaultTarget
	}
	if in.Seed == 0 {
		in.Seed = DefaultSeed
	}
	return in
}

func (in Inputs) validate() error {
	bad := func(field string, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidInputs, field, fmt.Sprintf(format, args...))
	}
	switch {
	case !(in.RequestsPerDay >= 0) || math.IsInf(in.RequestsPerDay, 0):
		return bad("requests_per_day", "must be ≥ 0 (got %g)", in.RequestsPerDay)
	case !(in.SecondsPerRequest > 0) || math.IsInf(in.SecondsPerRequest, 0):
		return bad("seconds_per_request", "must be > 0 (got %g)", in.SecondsPerRequest)
	case in.Concurrency < 0:
		return bad("concurrency", "must be ≥ 0 (got %d)", in.Concurrency)
	case in.Min < 0 || in.Max < in.Min:
		return bad("min", "need 0 ≤ min ≤ max (got %d, %d)", in.Min, in.Max)
	case !(in.Target > 0 && in.Target <= 1):
		return bad("target", "must be in (0, 1] (got %g)", in.Target)
	case in.Shape != ShapePoisson && in.Shape != ShapeDiurnal && in.Shape != ShapeBursty:
		return bad("shape", "must be poisson, diurnal or bursty (got %q)", in.Shape)
	case in.DiurnalAmplitude < 0 || in.DiurnalAmplitude > 1:
		return bad("diurnal_amplitude", "must be in [0, 1] (got %g)", in.DiurnalAmplitude)
	}
	return nil
}

// lambda is the mean arrival rate per second.
func (in Inputs) lambda() float64 { return in.RequestsPerDay / 86400 }

// Seconds are instance-seconds by state.
type Seconds struct {
	Loading float64 `json:"loading"`
	Busy    float64 `json:"busy"`
	Idle    float64 `json:"idle"`
}

// Total is all three states.
func (s Seconds) Total() float64 { return s.Loading + s.Busy + s.Idle }

func (s Seconds) scale(f float64) Seconds {
	return Seconds{Loading: s.Loading * f, Busy: s.Busy * f, Idle: s.Idle * f}
}

func (s Seconds) add(o Seconds) Seconds {
	return Seconds{Loading: s.Loading + o.Loading, Busy: s.Busy + o.Busy, Idle: s.Idle + o.Idle}
}

// Usage is what serverless instances did with the traffic over one month,
// as one engine computed it.
type Usage struct {
	Engine   string  `json:"engine"`
	Requests float64 `json:"requests"`
	// Seconds are instance-seconds by state (per instance, not per GPU).
	Seconds Seconds `json:"seconds"`
	// ColdStarts counts requests that waited for an instance to start.
	ColdStarts float64 `json:"cold_starts"`
	// ColdStartRate is ColdStarts / Requests.
	ColdStartRate float64 `json:"cold_start_rate"`
	// Starts counts instance starts (cold starts plus the autoscaler's own).
	Starts float64 `json:"starts"`
	// BusyPeriods counts contiguous busy segments over all instances.
	BusyPeriods float64 `json:"busy_periods"`
	// PeakInstances is the most instances alive at once (simulation only).
	PeakInstances int `json:"peak_instances,omitempty"`

	// Segment durations, when the engine knows them (simulation), for
	// per-segment billing rules. Scaled to the month like everything else
	// by repetition factor segScale.
	busySegs []float64
	lifeSegs []float64
	segScale float64
}

func (u Usage) scale(f float64) Usage {
	u.Requests *= f
	u.Seconds = u.Seconds.scale(f)
	u.ColdStarts *= f
	u.Starts *= f
	u.BusyPeriods *= f
	u.segScale *= f
	return u
}
