package cost

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func seedInputs() Inputs {
	return Inputs{RequestsPerDay: 1000, SecondsPerRequest: 5, Hardware: "a100-40gb"}
}

func mustCatalogue(t *testing.T) *Catalogue {
	t.Helper()
	cat, err := DefaultCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s mismatch (-want +got; go test -update rewrites):\n%s", path, d)
	}
}

func option(t *testing.T, res *Result, name string) Option {
	t.Helper()
	for _, o := range res.Options {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("no option %q", name)
	return Option{}
}

func near(got, want, rel float64) bool { return math.Abs(got-want) <= rel*math.Abs(want) }

// The seed's scenario: 1,000 requests/day × 5 s on A100-40GB.
func TestSeedScenario(t *testing.T) {
	res, err := Estimate(seedInputs(), mustCatalogue(t), EngineAnalytic)
	if err != nil {
		t.Fatal(err)
	}
	p4d := option(t, res, "always-on aws-p4d.24xlarge (fixed)")
	rep := option(t, res, "serverless replicate-like-a100-40gb")
	ember := option(t, res, "ember serverless ember-a100-40gb")
	checks := []struct {
		name      string
		got, want float64
		rel       float64
	}{
		{"p4d monthly", p4d.MonthlyUSD, 23040, 1e-9},
		{"p4d utilisation", p4d.Utilization, 0.0579, 0.01},
		{"p4d GPU utilisation (8 GPUs)", p4d.GPUUtilization, 0.0579 / 8, 0.01},
		{"replicate-like monthly", rep.MonthlyUSD, 345, 1e-9},
		{"replicate-like savings", rep.Savings, 0.985, 0.001},
		{"ember busy compute", ember.Seconds.Busy * 0.001, 150, 1e-6},
		// Computed overhead: e^{-λT} of requests cold at T = 120 s plus
		// ~65 s of keep-warm idle per request gap.
		{"ember monthly", ember.MonthlyUSD, 2317.65, 0.001},
		{"cold-start rate", res.Usage.ColdStartRate, 0.307, 0.01},
	}
	for _, c := range checks {
		if !near(c.got, c.want, c.rel) {
			t.Errorf("%s = %.6g, want %.6g (±%g%%)", c.name, c.got, c.want, 100*c.rel)
		}
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, res); err != nil {
		t.Fatal(err)
	}
	golden(t, "seed_scenario", buf.Bytes())
}

// With a short keep-warm the seed's serverless figure comes close to its
// compute: the overhead is what the idle timeout buys.
func TestSeedSavingsWithoutKeepWarm(t *testing.T) {
	in := seedInputs()
	in.IdleTimeout = -1 // stop as soon as idle
	in.ColdStart = -1   // and start instantly: the seed's "compute only"
	res, err := Estimate(in, mustCatalogue(t), EngineAnalytic)
	if err != nil {
		t.Fatal(err)
	}
	ember := option(t, res, "ember serverless ember-a100-40gb")
	if !near(ember.MonthlyUSD, 150, 1e-6) {
		t.Errorf("ember with no keep-warm = %.2f, want 150", ember.MonthlyUSD)
	}
	// The seed's 99.1 % is (23040 - 150 - 50) / 23040.
	if got, want := 1-(ember.MonthlyUSD+seedColdStartGuessUSD)/seedAlwaysOnUSD, 0.991; !near(got, want, 0.001) {
		t.Errorf("seed savings = %.4f, want %.3f", got, want)
	}
}

func TestCrossoverTable(t *testing.T) {
	cat := mustCatalogue(t)
	in := seedInputs().withDefaults()
	names, rows := Sweep(in, cat, SeedLevels)
	cs := Crossovers(in, cat)
	var buf bytes.Buffer
	if err := WriteSweep(&buf, names, rows, cs); err != nil {
		t.Fatal(err)
	}
	golden(t, "crossover_table", buf.Bytes())

	// Each found crossover really is where the two costs meet.
	for _, c := range cs {
		if !c.Found {
			continue
		}
		in.RequestsPerDay = c.RequestsPerDay
		opts := price(in, cat, analytic(in))
		var a, b float64
		for _, o := range opts {
			switch o.Name {
			case c.A:
				a = o.MonthlyUSD
			case c.B:
				b = o.MonthlyUSD
			}
		}
		// Always-on costs step, so allow one unit step of slack there.
		if !near(a, b, 0.02) && !strings.HasPrefix(c.A, "always-on") {
			t.Errorf("%s vs %s at %.0f/day: %.2f vs %.2f, want equal", c.A, c.B, c.RequestsPerDay, a, b)
		}
	}
}

// The two engines agree within 5% on Poisson arrivals.
func TestAnalyticAgreesWithSimulation(t *testing.T) {
	cat := mustCatalogue(t)
	tests := []struct {
		name string
		in   Inputs
	}{
		{"seed", Inputs{RequestsPerDay: 1000, SecondsPerRequest: 5, Target: 1}},
		{"seed short keep-warm", Inputs{RequestsPerDay: 1000, SecondsPerRequest: 5, Target: 1, IdleTimeout: 10 * time.Second}},
		{"10k/day", Inputs{RequestsPerDay: 10_000, SecondsPerRequest: 5, Target: 1}},
		{"cpu 50k/day 0.2s", Inputs{RequestsPerDay: 50_000, SecondsPerRequest: 0.2, Hardware: "cpu", Target: 1, ColdStart: 2 * time.Second, IdleTimeout: 60 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Enough arrivals for a stable estimate (≥ ~10,000), few enough to be quick.
			tt.in.SimDuration = time.Duration(min(10*86400, 2e4/tt.in.RequestsPerDay*86400)) * time.Second
			a, err := Estimate(tt.in, cat, EngineBoth)
			if err != nil {
				t.Fatal(err)
			}
			sim := *a.Other
			if got, want := sim.Seconds.Total(), a.Usage.Seconds.Total(); !near(got, want, 0.05) {
				t.Errorf("instance-seconds: simulated %.0f, analytic %.0f: differ by more than 5%%", got, want)
			}
			if got, want := sim.Seconds.Busy, a.Usage.Seconds.Busy; !near(got, want, 0.05) {
				t.Errorf("busy seconds: simulated %.0f, analytic %.0f", got, want)
			}
			if got, want := sim.ColdStartRate, a.Usage.ColdStartRate; math.Abs(got-want) > 0.05*want+0.005 {
				t.Errorf("cold-start rate: simulated %.4f, analytic %.4f", got, want)
			}
		})
	}
}

func TestSimulationIsDeterministic(t *testing.T) {
	in := Inputs{RequestsPerDay: 5000, SecondsPerRequest: 2, SimDuration: 24 * time.Hour, Seed: 7}
	a, err := Simulate(in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Simulate(in)
	if a.Seconds != b.Seconds || a.ColdStarts != b.ColdStarts {
		t.Errorf("same seed, different answers: %+v vs %+v", a.Seconds, b.Seconds)
	}
	in.Seed = 8
	c, _ := Simulate(in)
	if a.Seconds == c.Seconds {
		t.Errorf("different seeds gave identical usage %+v", a.Seconds)
	}
}

// With min instances the simulation never goes below them and never
// cold-starts at low traffic.
func TestSimulationMinKeepsWarm(t *testing.T) {
	in := Inputs{RequestsPerDay: 100, SecondsPerRequest: 1, Min: 1, SimDuration: 24 * time.Hour}
	u, err := Simulate(in)
	if err != nil {
		t.Fatal(err)
	}
	if u.ColdStarts != 0 {
		t.Errorf("cold starts with min 1 = %v, want 0", u.ColdStarts)
	}
	if got, want := u.Seconds.Busy+u.Seconds.Idle, Month.Seconds(); !near(got, want, 1e-6) {
		t.Errorf("instance-seconds with min 1 = %.0f, want one instance all month %.0f", got, want)
	}
}

func TestShapesRun(t *testing.T) {
	for _, shape := range []string{ShapePoisson, ShapeDiurnal, ShapeBursty} {
		t.Run(shape, func(t *testing.T) {
			in := Inputs{RequestsPerDay: 2000, SecondsPerRequest: 2, Shape: shape, SimDuration: 10 * 24 * time.Hour}
			u, err := Simulate(in)
			if err != nil {
				t.Fatal(err)
			}
			// About 20,000 requests in ten days, scaled to 60,000 a month.
			if !near(u.Requests, 60_000, 0.15) {
				t.Errorf("requests = %.0f, want ~60000", u.Requests)
			}
			a, err := Analytic(in)
			if err != nil {
				t.Fatal(err)
			}
			if a.Seconds.Busy <= 0 || a.Seconds.Total() < a.Seconds.Busy {
				t.Errorf("analytic seconds %+v", a.Seconds)
			}
		})
	}
}

func TestBillingSeconds(t *testing.T) {
	tests := []struct {
		name string
		b    Billing
		segs []float64
		want float64
	}{
		{"exact", Billing{}, []float64{5, 2.5}, 7.5},
		{"per second", Billing{MinIncrementSeconds: 1}, []float64{5.2, 0.1}, 7},
		{"per minute", Billing{MinIncrementSeconds: 60}, []float64{5, 61}, 180},
		{"min charge", Billing{MinIncrementSeconds: 1, MinChargeSeconds: 60}, []float64{5, 90.5}, 151},
		{"float noise does not cost an increment", Billing{MinIncrementSeconds: 1}, []float64{5.0000000001}, 5},
		{"empty segment free", Billing{MinChargeSeconds: 60}, []float64{0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.Seconds(tt.segs); !near(got, tt.want, 1e-9) {
				t.Errorf("Seconds(%v) = %g, want %g", tt.segs, got, tt.want)
			}
		})
	}
}

// Billed states decide what each offer charges for the same usage.
func TestBilledStates(t *testing.T) {
	u := Usage{Seconds: Seconds{Loading: 100, Busy: 1000, Idle: 5000}, Starts: 10, BusyPeriods: 200}
	tests := []struct {
		name   string
		states []string
		want   float64
	}{
		{"active only", []string{StateBusy}, 1000},
		{"lifetime", []string{StateLoading, StateBusy, StateIdle}, 6100},
		{"loading and busy", []string{StateLoading, StateBusy}, 1100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Offer{ID: "x", Kind: KindServerless, Hardware: "h", GPUsPerUnit: 1, PricePerSecond: 0.01, Billing: Billing{BilledStates: tt.states}}
			opt := serverless(o, 1, u)
			if !near(opt.BilledSeconds, tt.want, 1e-9) || !near(opt.MonthlyUSD, tt.want*0.01, 1e-9) {
				t.Errorf("billed %g s / $%g, want %g s / $%g", opt.BilledSeconds, opt.MonthlyUSD, tt.want, tt.want*0.01)
			}
		})
	}
}

func TestCatalogueMerge(t *testing.T) {
	cat := mustCatalogue(t)
	merged, err := cat.Merge([]byte(`offers:
  - id: ember-a100-40gb
    provider: my lab
    kind: hosted
    hardware: a100-40gb
    gpus_per_unit: 1
    price_per_hour: 1.8
    billing: {billed_states: [busy, idle]}
  - id: ember-l4
    provider: my lab
    kind: hosted
    hardware: l4
    gpus_per_unit: 1
    price_per_second: 0.0002
    billing: {billed_states: [loading, busy, idle]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(merged.Offers), len(cat.Offers)+1; got != want {
		t.Errorf("offers = %d, want %d", got, want)
	}
	for _, o := range merged.Offers {
		if o.ID == "ember-a100-40gb" && !near(o.PerSecond(), 0.0005, 1e-9) {
			t.Errorf("override price/s = %g, want 0.0005", o.PerSecond())
		}
	}
	for _, o := range cat.Offers {
		if o.ID == "ember-a100-40gb" && o.PerSecond() != 0.001 {
			t.Errorf("Merge modified the receiver: %g", o.PerSecond())
		}
	}
	bad := []string{
		"offers: [{id: x, kind: nope, hardware: h, price_per_second: 1}]",
		"offers: [{id: x, kind: hosted, hardware: h}]",
		"offers: [{id: x, kind: hosted, hardware: h, price_per_second: 1, billing: {billed_states: [sleeping]}}]",
		"offers: [{id: x, kind: hosted, hardware: h, price_per_second: 1, colour: red}]",
	}
	for _, b := range bad {
		if _, err := cat.Merge([]byte(b)); err == nil {
			t.Errorf("Merge(%q) = nil error, want one", b)
		}
	}
}

func TestEstimateErrors(t *testing.T) {
	cat := mustCatalogue(t)
	if _, err := Estimate(Inputs{RequestsPerDay: 1, SecondsPerRequest: 1, Hardware: "tpu-v9"}, cat, ""); !errors.Is(err, ErrUnknownHardware) {
		t.Errorf("unknown hardware: err = %v, want ErrUnknownHardware", err)
	}
	if _, err := Estimate(Inputs{RequestsPerDay: 1}, cat, ""); !errors.Is(err, ErrInvalidInputs) {
		t.Errorf("no seconds/request: err = %v, want ErrInvalidInputs", err)
	}
	if _, err := Estimate(seedInputs(), cat, "guess"); !errors.Is(err, ErrInvalidInputs) {
		t.Errorf("bad engine: err = %v, want ErrInvalidInputs", err)
	}
}

func TestUSD(t *testing.T) {
	for v, want := range map[float64]string{23040: "$23,040.00", 345: "$345.00", 1234567.891: "$1,234,567.89", -5: "-$5.00"} {
		if got := usd(v); got != want {
			t.Errorf("usd(%g) = %q, want %q", v, got, want)
		}
	}
}
