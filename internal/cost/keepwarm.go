package cost

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/keepalive"
)

// FunctionTrace is one function's arrivals (seconds from the trace start,
// sorted) and service times.
type FunctionTrace struct {
	Name      string
	Shape     string // generator shape, "" for a read trace
	Arrivals  []float64
	Durations []float64 // nil: MultiTrace.Duration
}

// MultiTrace is a multi-function trace, as the Azure Functions traces are.
type MultiTrace struct {
	Functions []FunctionTrace
	Span      float64 // seconds
	// Duration is the service time of functions without their own (s).
	Duration float64
}

// Bounds on what a trace may hold, so a hostile file cannot exhaust memory.
const (
	maxTraceFunctions = 10_000
	maxTraceArrivals  = 5_000_000
	maxPerMinute      = 100_000
)

// ErrTrace is a trace that cannot be read.
var ErrTrace = errors.New("cost: bad keep-warm trace")

// ParseAzure2019 reads the Azure Functions 2019 invocation counts
// (HashOwner,HashApp,HashFunction,Trigger,1..1440: invocations per minute
// of one day). The format has no times within a minute: each minute's n
// arrivals are placed uniformly at random in it, from seed, so a replay is
// repeatable and short windows are not flattered by evenly spread calls.
// durations, if not nil, is the matching durations file (Average in ms).
func ParseAzure2019(r io.Reader, durations io.Reader, seed uint64) (*MultiTrace, error) {
	return ParseAzure2019Placed(r, durations, seed, PlaceUniform)
}

// Placement says where a 2019 minute's n arrivals go within it.
type Placement string

const (
	// PlaceUniform: n seeded-uniform random times (the default): calls
	// sometimes bunch and sometimes leave a long gap, as real ones do.
	PlaceUniform Placement = "uniform"
	// PlaceEven: at (i+½)·60/n s, evenly spread: the kindest case for short
	// windows, the one a replay of counts would give without a seed.
	PlaceEven Placement = "even"
)

// ParsePlacement reads "uniform" or "even".
func ParsePlacement(s string) (Placement, error) {
	switch p := Placement(s); p {
	case PlaceUniform, PlaceEven:
		return p, nil
	}
	return "", fmt.Errorf("%q: want uniform (seeded random times within each minute) or even", s)
}

// ParseAzure2019Placed is ParseAzure2019 with the placement of arrivals
// within each minute chosen.
func ParseAzure2019Placed(r io.Reader, durations io.Reader, seed uint64, place Placement) (*MultiTrace, error) {
	rows, err := readCSV(r)
	if err != nil {
		return nil, err
	}
	if len(rows) < 2 || len(rows[0]) < 5 || rows[0][2] != "HashFunction" || rows[0][4] != "1" {
		return nil, fmt.Errorf("%w: want the 2019 header HashOwner,HashApp,HashFunction,Trigger,1,2,…", ErrTrace)
	}
	dur := map[string]float64{}
	if durations != nil {
		drows, err := readCSV(durations)
		if err != nil {
			return nil, err
		}
		for i, row := range drows {
			if i == 0 || len(row) < 4 {
				continue
			}
			if ms, err := strconv.ParseFloat(row[3], 64); err == nil && ms > 0 && ms < 3.6e6 {
				dur[row[2]] = ms / 1000
			}
		}
	}
	minutes := len(rows[0]) - 4
	rng := rand.New(rand.NewPCG(seed, 2019))
	mt := &MultiTrace{Span: float64(minutes) * 60}
	total := 0
	for i, row := range rows[1:] {
		if len(row) != len(rows[0]) {
			return nil, fmt.Errorf("%w: line %d: %d fields, want %d", ErrTrace, i+2, len(row), len(rows[0]))
		}
		if len(mt.Functions) >= maxTraceFunctions {
			return nil, fmt.Errorf("%w: more than %d functions", ErrTrace, maxTraceFunctions)
		}
		ft := FunctionTrace{Name: short(row[2])}
		for m := range minutes {
			n, err := strconv.Atoi(row[4+m])
			if err != nil || n < 0 || n > maxPerMinute {
				return nil, fmt.Errorf("%w: line %d, minute %d: %q is not a count in [0, %d]", ErrTrace, i+2, m+1, row[4+m], maxPerMinute)
			}
			total += n
			if total > maxTraceArrivals {
				return nil, fmt.Errorf("%w: more than %d invocations", ErrTrace, maxTraceArrivals)
			}
			start := len(ft.Arrivals)
			for j := range n {
				off := rng.Float64() * 60
				if place == PlaceEven {
					off = (float64(j) + 0.5) * 60 / float64(n)
				}
				ft.Arrivals = append(ft.Arrivals, float64(m)*60+off)
			}
			slices.Sort(ft.Arrivals[start:])
		}
		if d, ok := dur[row[2]]; ok {
			ft.Durations = make([]float64, len(ft.Arrivals))
			for j := range ft.Durations {
				ft.Durations[j] = d
			}
		}
		mt.Functions = append(mt.Functions, ft)
	}
	return mt, nil
}

// ParseAzure2021 reads the Azure Functions 2021 per-invocation trace
// (app,func,end_timestamp,duration, seconds): arrival = end − duration.
func ParseAzure2021(r io.Reader) (*MultiTrace, error) {
	rows, err := readCSV(r)
	if err != nil {
		return nil, err
	}
	if len(rows) < 2 || len(rows[0]) < 4 || rows[0][2] != "end_timestamp" || rows[0][3] != "duration" {
		return nil, fmt.Errorf("%w: want the 2021 header app,func,end_timestamp,duration", ErrTrace)
	}
	if len(rows)-1 > maxTraceArrivals {
		return nil, fmt.Errorf("%w: more than %d invocations", ErrTrace, maxTraceArrivals)
	}
	type inv struct{ at, d float64 }
	by := map[string][]inv{}
	var order []string
	first := math.Inf(1)
	var last float64
	for i, row := range rows[1:] {
		if len(row) < 4 {
			return nil, fmt.Errorf("%w: line %d: %d fields, want 4", ErrTrace, i+2, len(row))
		}
		end, err1 := strconv.ParseFloat(row[2], 64)
		d, err2 := strconv.ParseFloat(row[3], 64)
		if err1 != nil || err2 != nil || !(d >= 0) || !(end >= d) || math.IsInf(end, 0) || d > 86400 {
			return nil, fmt.Errorf("%w: line %d: end_timestamp %q, duration %q: want seconds, end ≥ duration ≥ 0", ErrTrace, i+2, row[2], row[3])
		}
		key := row[0] + "/" + row[1]
		if _, ok := by[key]; !ok {
			if len(order) >= maxTraceFunctions {
				return nil, fmt.Errorf("%w: more than %d functions", ErrTrace, maxTraceFunctions)
			}
			order = append(order, key)
		}
		by[key] = append(by[key], inv{end - d, max(d, 1e-3)})
		first, last = min(first, end-d), max(last, end)
	}
	mt := &MultiTrace{Span: last - first}
	for _, key := range order {
		invs := by[key]
		sort.Slice(invs, func(i, j int) bool { return invs[i].at < invs[j].at })
		ft := FunctionTrace{Name: short(key)}
		for _, v := range invs {
			ft.Arrivals = append(ft.Arrivals, v.at-first)
			ft.Durations = append(ft.Durations, v.d)
		}
		mt.Functions = append(mt.Functions, ft)
	}
	return mt, nil
}

// ParseMultiTrace reads either Azure format, told apart by the header.
func ParseMultiTrace(r io.Reader, durations io.Reader, seed uint64, place Placement) (*MultiTrace, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(512)
	if strings.HasPrefix(string(head), "HashOwner") {
		return ParseAzure2019Placed(br, durations, seed, place)
	}
	return ParseAzure2021(br)
}

func readCSV(r io.Reader) ([][]string, error) {
	cr := csv.NewReader(io.LimitReader(r, 1<<30))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	rows, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTrace, err)
	}
	return rows, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Generator shapes (tracegen): the four kinds of function Shahrad et al.
// found in the Azure traces.
const (
	GenPeriodic = "periodic" // a timer: every P (1–30 min), small jitter
	GenBursty   = "bursty"   // bursts of calls seconds apart, hours between
	GenDiurnal  = "diurnal"  // Poisson, busy by day, quiet at night
	GenRare     = "rare"     // a few calls a day at random
)

// GenerateTrace makes count functions over days, cycling through the four
// shapes with parameters drawn from seed. Same seed and count, same trace.
func GenerateTrace(seed uint64, count int, days float64) *MultiTrace {
	rng := rand.New(rand.NewPCG(seed, 17))
	span := days * 86400
	mt := &MultiTrace{Span: span, Duration: 1}
	shapes := []string{GenPeriodic, GenBursty, GenDiurnal, GenRare}
	for i := range count {
		shape := shapes[i%len(shapes)]
		ft := FunctionTrace{Name: fmt.Sprintf("%s-%03d", shape, i), Shape: shape}
		switch shape {
		case GenPeriodic:
			period := 60 * float64(1+rng.IntN(30))
			jitter := 0.02 * period
			for t := rng.Float64() * period; t < span; t += period {
				ft.Arrivals = append(ft.Arrivals, max(t+rng.NormFloat64()*jitter, 0))
			}
		case GenBursty:
			gapH := 1 + 5*rng.Float64()
			for t := rng.Float64() * 3600; t < span; t += rng.ExpFloat64() * gapH * 3600 {
				n := 5 + rng.IntN(40)
				at := t
				for range n {
					at += rng.ExpFloat64() * (2 + 10*rng.Float64())
					ft.Arrivals = append(ft.Arrivals, at)
				}
			}
		case GenDiurnal:
			perHour := 20 + rng.Float64()*200
			for t := 0.0; t < span; {
				h := math.Mod(t/3600, 24)
				rate := perHour / 3600 * (0.1 + 0.9*max(math.Sin(math.Pi*(h-6)/14), 0))
				t += rng.ExpFloat64() / max(rate, 1e-6) * 1 // thinning-free: rate changes slowly
				ft.Arrivals = append(ft.Arrivals, t)
			}
		case GenRare:
			perDay := 1 + rng.IntN(6)
			n := int(float64(perDay) * days)
			for range n {
				ft.Arrivals = append(ft.Arrivals, rng.Float64()*span)
			}
		}
		ft.Arrivals = slices.DeleteFunc(ft.Arrivals, func(t float64) bool { return t >= span })
		slices.Sort(ft.Arrivals)
		mt.Functions = append(mt.Functions, ft)
	}
	return mt
}

// Policy is a keep-warm policy to evaluate: a fixed window, or auto.
type Policy struct {
	Name  string
	Fixed time.Duration
	Auto  bool
}

// ParsePolicy reads "fixed:10m", "fixed:120s" or "auto".
func ParsePolicy(s string) (Policy, error) {
	if s == "auto" {
		return Policy{Name: s, Auto: true}, nil
	}
	if v, ok := strings.CutPrefix(s, "fixed:"); ok {
		d, err := time.ParseDuration(v)
		if err == nil && d >= 0 {
			return Policy{Name: s, Fixed: d}, nil
		}
	}
	return Policy{}, fmt.Errorf("policy %q: want auto or fixed:DURATION (e.g. fixed:10m)", s)
}

// PolicyResult is one policy over a multi-function trace.
type PolicyResult struct {
	Policy    string  `json:"policy"`
	Requests  float64 `json:"requests"`
	ColdStart float64 `json:"cold_starts"`
	// ColdRate is overall; ColdRateP75 the 75th percentile over functions.
	ColdRate    float64 `json:"cold_start_rate"`
	ColdRateP75 float64 `json:"cold_start_rate_p75"`
	IdleSeconds float64 `json:"idle_instance_seconds"`
	IdleUSD     float64 `json:"idle_usd"`
}

// EvaluateKeepWarm replays every function of mt through the simulator (the
// real autoscaler) under each policy; base gives the hardware, cold start
// and concurrency; perSecond prices an instance-second; worth says what a
// cold start's wait is worth to auto (its ColdStartUSD or ColdStartWorth;
// the other prices are filled in from base and perSecond).
func EvaluateKeepWarm(mt *MultiTrace, policies []Policy, base Inputs, perSecond float64, worth keepalive.Prices, cfg keepalive.Config) ([]PolicyResult, error) {
	var out []PolicyResult
	for _, p := range policies {
		r := PolicyResult{Policy: p.Name}
		var rates []float64
		for _, ft := range mt.Functions {
			if len(ft.Arrivals) == 0 {
				continue
			}
			in := base
			in.RequestsPerDay = 1 // unused with arrivals given
			in.SecondsPerRequest = mt.Duration
			if !(in.SecondsPerRequest > 0) {
				in.SecondsPerRequest = 1 // the 2019 counts without a durations file
			}
			in.IdleTimeout = p.Fixed
			if p.Fixed == 0 {
				in.IdleTimeout = -1 // explicit 0: stop as soon as idle
			}
			if p.Auto {
				pr := worth
				pr.IdlePerSecond, pr.ColdStart = perSecond, base.ColdStart
				in.KeepWarm = &KeepWarmPolicy{Config: cfg, Prices: pr}
			}
			in = in.withDefaults()
			if err := in.validate(); err != nil {
				return nil, err
			}
			u := newSim(in).run(ft.Arrivals, ft.Durations, mt.Span)
			r.Requests += u.Requests
			r.ColdStart += u.ColdStarts
			r.IdleSeconds += u.Seconds.Idle
			rates = append(rates, u.ColdStarts/max(u.Requests, 1))
		}
		if r.Requests > 0 {
			r.ColdRate = r.ColdStart / r.Requests
		}
		if len(rates) > 0 {
			slices.Sort(rates)
			r.ColdRateP75 = rates[int(math.Ceil(0.75*float64(len(rates))))-1]
		}
		r.IdleUSD = r.IdleSeconds * perSecond
		out = append(out, r)
	}
	return out, nil
}

// WriteKeepWarm prints results side by side.
func WriteKeepWarm(w io.Writer, rs []PolicyResult) error {
	_, err := fmt.Fprintf(w, "%-12s %10s %10s %9s %9s %14s %12s\n", "POLICY", "REQUESTS", "COLD", "COLD %", "P75 FN %", "IDLE INST-S", "IDLE COST")
	for _, r := range rs {
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%-12s %10.0f %10.0f %8.2f%% %8.2f%% %14.0f %12s\n", r.Policy, r.Requests, r.ColdStart,
			100*r.ColdRate, 100*r.ColdRateP75, r.IdleSeconds, usd(r.IdleUSD))
	}
	return err
}
