package cost

import (
	"fmt"
	"math"
)

// Option is one way to run the workload, priced for a month.
type Option struct {
	// Name is "<kind> <offer id>", e.g. "always-on aws-p4d.24xlarge".
	Name  string `json:"name"`
	Offer string `json:"offer"`
	Kind  string `json:"kind"`
	// MonthlyUSD is the cost of 30 days.
	MonthlyUSD float64 `json:"monthly_usd"`
	// Utilization is busy instance-seconds over the instance-seconds paid
	// for (always-on: the instances the fleet runs; serverless: their lives).
	Utilization float64 `json:"utilization"`
	// GPUUtilization is busy GPU-seconds over paid GPU-seconds; it differs
	// from Utilization when a priced unit holds more GPUs than are used.
	GPUUtilization float64 `json:"gpu_utilization"`
	// Units is the number of priced units (always-on) in the fleet.
	Units int `json:"units,omitempty"`
	// Seconds are the instance-seconds by state the offer runs.
	Seconds Seconds `json:"seconds"`
	// BilledSeconds are the unit-seconds charged, after billing rules.
	BilledSeconds float64 `json:"billed_seconds"`
	// Savings is 1 - MonthlyUSD / the reference option's.
	Savings float64 `json:"savings"`
	Note    string  `json:"note,omitempty"`
}

// Result is the answer of Estimate.
type Result struct {
	Inputs Inputs `json:"inputs"`
	// Usage is the serverless usage the options were priced on.
	Usage Usage `json:"usage"`
	// Other is the other engine's usage when both ran.
	Other *Usage `json:"other_engine,omitempty"`
	// Options side by side; Reference names the one savings are against.
	Options    []Option    `json:"options"`
	Reference  string      `json:"reference"`
	Crossovers []Crossover `json:"crossovers"`
	Notes      []string    `json:"notes"`
}

// Estimate runs the engine on in and prices the usage under every offer in
// cat for in.Hardware. Crossovers are computed with the closed forms.
func Estimate(in Inputs, cat *Catalogue, engine string) (*Result, error) {
	in = in.withDefaults()
	if err := in.validate(); err != nil {
		return nil, err
	}
	if len(cat.ForHardware(in.Hardware)) == 0 {
		return nil, fmt.Errorf("%w %q", ErrUnknownHardware, in.Hardware)
	}
	res := &Result{Inputs: in}
	var err error
	switch engine {
	case "", EngineAnalytic:
		res.Usage = analytic(in)
	case EngineSimulate:
		res.Usage, err = Simulate(in)
	case EngineBoth:
		res.Usage = analytic(in)
		var sim Usage
		sim, err = Simulate(in)
		res.Other = &sim
	default:
		return nil, fmt.Errorf("%w: engine: must be analytic, simulate or both (got %q)", ErrInvalidInputs, engine)
	}
	if err != nil {
		return nil, err
	}
	res.Options = price(in, cat, res.Usage)
	res.Reference = reference(res.Options)
	setSavings(res.Options, res.Reference)
	res.Crossovers = Crossovers(in, cat)
	res.Notes = notes(in, res)
	return res, nil
}

// price turns usage into one Option per offer for in.Hardware. Always-on
// offers appear twice when a unit holds several GPUs: sized (whole units for
// the fleet at the target utilisation) and fixed (the seed's single box).
func price(in Inputs, cat *Catalogue, u Usage) []Option {
	month := Month.Seconds()
	busy := in.lambda() * in.SecondsPerRequest / float64(max(in.Concurrency, 1)) // instance-seconds per second at full packing
	var out []Option
	for _, o := range cat.ForHardware(in.Hardware) {
		gpi := float64(max(in.GPUsPerInstance, 0))
		switch o.Kind {
		case KindAlwaysOn:
			// Instances the fleet runs: enough for the load at the target utilisation.
			n := max(1, in.Min, int(math.Ceil(busy/in.Target-1e-9)))
			out = append(out, alwaysOn(o, "always-on "+o.ID, n, gpi, u, month))
			if o.GPUsPerUnit > 1 {
				// The seed's comparison: one box running one copy of the
				// model, more only when the load cannot physically fit.
				n := max(1, in.Min, int(math.Ceil(busy-1e-9)))
				opt := alwaysOn(o, "always-on "+o.ID+" (fixed)", n, gpi, u, month)
				opt.Units = max(1, opt.Units)
				out = append(out, opt)
			}
		default:
			out = append(out, serverless(o, gpi, u))
		}
	}
	return out
}

func alwaysOn(o Offer, name string, instances int, gpi float64, u Usage, month float64) Option {
	units := instances
	if o.GPUsPerUnit > 0 && gpi > 0 {
		units = int(math.Ceil(float64(instances)*gpi/float64(o.GPUsPerUnit) - 1e-9))
	}
	busy := u.Seconds.Busy
	opt := Option{
		Name: name, Offer: o.ID, Kind: o.Kind, Units: units,
		MonthlyUSD:    float64(units) * o.PerSecond() * month,
		BilledSeconds: float64(units) * month,
		Seconds:       Seconds{Busy: busy, Idle: max(float64(instances)*month-busy, 0)},
		Utilization:   busy / (float64(instances) * month),
	}
	opt.GPUUtilization = opt.Utilization
	if o.GPUsPerUnit > 0 && gpi > 0 {
		opt.GPUUtilization = busy * gpi / (float64(units*o.GPUsPerUnit) * month)
	}
	return opt
}

func serverless(o Offer, gpi float64, u Usage) Option {
	b := o.Billing
	var billed float64
	onlyBusy := b.Bills(StateBusy) && !b.Bills(StateLoading) && !b.Bills(StateIdle)
	all := b.Bills(StateBusy) && b.Bills(StateLoading) && b.Bills(StateIdle)
	switch {
	case onlyBusy && u.busySegs != nil:
		billed = b.Seconds(u.busySegs) * u.segScale
	case onlyBusy:
		billed = b.SecondsApprox(u.BusyPeriods, u.Seconds.Busy)
	case all && u.lifeSegs != nil:
		billed = b.Seconds(u.lifeSegs) * u.segScale
	default:
		var total float64
		for _, st := range b.BilledStates {
			switch st {
			case StateLoading:
				total += u.Seconds.Loading
			case StateBusy:
				total += u.Seconds.Busy
			case StateIdle:
				total += u.Seconds.Idle
			}
		}
		count := u.Starts
		if !b.Bills(StateIdle) {
			count = u.BusyPeriods
		}
		billed = b.SecondsApprox(count, total)
	}
	// Units per instance: an instance of 2 GPUs on a 1-GPU offer is 2 units.
	per := 1.0
	if o.GPUsPerUnit > 0 && gpi > 0 {
		per = gpi / float64(o.GPUsPerUnit)
	}
	name := "serverless " + o.ID
	if o.Kind == KindHosted {
		name = "ember serverless " + o.ID
	}
	opt := Option{
		Name: name, Offer: o.ID, Kind: o.Kind,
		MonthlyUSD:    billed * per * o.PerSecond(),
		BilledSeconds: billed * per,
		Seconds:       u.Seconds,
	}
	if t := u.Seconds.Total(); t > 0 {
		opt.Utilization = u.Seconds.Busy / t
		opt.GPUUtilization = opt.Utilization
	}
	return opt
}

// reference is the first always-on option: savings are quoted against it,
// as the seed quotes them against its p4d.
func reference(opts []Option) string {
	for _, o := range opts {
		if o.Kind == KindAlwaysOn {
			return o.Name
		}
	}
	if len(opts) > 0 {
		return opts[0].Name
	}
	return ""
}

func setSavings(opts []Option, ref string) {
	var refUSD float64
	for _, o := range opts {
		if o.Name == ref {
			refUSD = o.MonthlyUSD
		}
	}
	for i := range opts {
		if refUSD > 0 {
			opts[i].Savings = 1 - opts[i].MonthlyUSD/refUSD
		}
	}
}

func notes(in Inputs, res *Result) []string {
	var n []string
	u := res.Usage
	n = append(n, fmt.Sprintf("engine %s: %.0f requests/month, %.1f%% cold starts, instance-seconds loading %.0f / busy %.0f / idle %.0f",
		u.Engine, u.Requests, 100*u.ColdStartRate, u.Seconds.Loading, u.Seconds.Busy, u.Seconds.Idle))
	if o := res.Other; o != nil {
		a, b := u.Seconds.Total(), o.Seconds.Total()
		diff := 0.0
		if a > 0 {
			diff = (b - a) / a
		}
		n = append(n, fmt.Sprintf("engine %s: %.1f%% cold starts, instance-seconds loading %.0f / busy %.0f / idle %.0f (%+.1f%% vs %s)",
			o.Engine, 100*o.ColdStartRate, o.Seconds.Loading, o.Seconds.Busy, o.Seconds.Idle, 100*diff, u.Engine))
		if math.Abs(diff) > 0.05 {
			n = append(n, "the engines differ by more than 5%: the closed forms assume Poisson arrivals and do not model the decider's panic spares or least-loaded spreading at concurrency > 1; trust the simulation, which runs the real autoscaler")
		}
	}
	for _, o := range res.Options {
		if o.Kind == KindHosted && o.BilledSeconds > 0 {
			per := o.MonthlyUSD / o.BilledSeconds
			n = append(n, fmt.Sprintf("%s: compute (busy) %s + cold-start loading %s + keep-warm idle %s, computed from idle timeout %s and cold start %s (the usual back-of-envelope estimate instead adds a guessed $%d to $150 of compute)",
				o.Name, usd(o.Seconds.Busy*per), usd(o.Seconds.Loading*per), usd(o.Seconds.Idle*per), in.IdleTimeout, in.ColdStart, seedColdStartGuessUSD))
		}
		if o.Units > 0 && o.GPUUtilization < o.Utilization-1e-12 {
			n = append(n, fmt.Sprintf("%s: a unit holds more GPUs than the model uses; the instances are %.1f%% busy but the GPUs paid for only %.2f%%",
				o.Name, 100*o.Utilization, 100*o.GPUUtilization))
		}
	}
	if in.Hardware == "a100-40gb" {
		n = append(n, SeedNotes()...)
	}
	if in.Trace != nil {
		n = append(n, fmt.Sprintf("trace: %d requests over %.0f s (%.0f requests/day); the closed forms see it as Poisson at that mean rate",
			len(in.Trace.Arrivals), in.Trace.Span, in.Trace.RequestsPerDay()))
	}
	return n
}
