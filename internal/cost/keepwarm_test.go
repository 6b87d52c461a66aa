package cost

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/keepalive"
)

func runOne(t *testing.T, ft FunctionTrace, span float64, p Policy, cfg keepalive.Config, prices keepalive.Prices) Usage {
	t.Helper()
	in := Inputs{Hardware: "a100-40gb", ColdStart: 10 * time.Second, Concurrency: 1, RequestsPerDay: 1, SecondsPerRequest: 0.5}
	in.IdleTimeout = p.Fixed
	if p.Auto {
		in.IdleTimeout = -1
		in.KeepWarm = &KeepWarmPolicy{Config: cfg, Prices: prices}
	}
	in = in.withDefaults()
	if err := in.validate(); err != nil {
		t.Fatal(err)
	}
	return newSim(in).run(ft.Arrivals, ft.Durations, span)
}

// A busy period then a quiet day: the learned window must close. The
// closing event used to land a nanosecond inside the window (float
// seconds truncated to a Duration), the decider held the instance, and
// nothing looked again until the next request: a day of idle.
func TestAutoWindowClosesAfterTheLastCall(t *testing.T) {
	for _, start := range []float64{0, 13785.35562914346, 1234.567, 40000.1} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			var ft FunctionTrace
			for i := range 300 {
				ft.Arrivals = append(ft.Arrivals, start+float64(i)*12.3)
			}
			last := ft.Arrivals[len(ft.Arrivals)-1]
			u := runOne(t, ft, 86400+start, Policy{Auto: true}, keepalive.Config{}, keepalive.Prices{ColdStart: 10 * time.Second})
			// Idle during the period is at most its length; after it, the
			// learned keep-alive (about 13 s) and a tick.
			if limit := last - start + 60; u.Seconds.Idle > limit {
				t.Fatalf("idle %.0f instance-s, want ≤ %.0f: the instance outlived its window", u.Seconds.Idle, limit)
			}
			if u.ColdStarts != 1 {
				t.Fatalf("cold starts = %v, want 1", u.ColdStarts)
			}
		})
	}
}

// overlapping: 5 calls a minute placed at random, 0.5 s each, for 4 hours,
// so calls sometimes overlap and a second instance is needed (the Azure
// 2019 excerpt's shape).
func overlapping(t *testing.T) (FunctionTrace, float64) {
	t.Helper()
	var b strings.Builder
	b.WriteString("HashOwner,HashApp,HashFunction,Trigger")
	for m := 1; m <= 1440; m++ {
		fmt.Fprintf(&b, ",%d", m)
	}
	b.WriteString("\no,a,f,queue")
	for m := 1; m <= 1440; m++ {
		n := 0
		if m > 5 && m <= 245 {
			n = 5
		}
		fmt.Fprintf(&b, ",%d", n)
	}
	b.WriteString("\n")
	mt, err := ParseAzure2019(strings.NewReader(b.String()), nil, 7)
	if err != nil {
		t.Fatal(err)
	}
	ft := mt.Functions[0]
	ft.Durations = make([]float64, len(ft.Arrivals))
	for i := range ft.Durations {
		ft.Durations[i] = 0.5
	}
	return ft, mt.Span
}

// Auto that never trusts its histogram falls back to the fixed window, so
// it must do what that fixed window does, with one instance or several.
// Extra instances used to stop as soon as idle under auto: every overlap
// paid a cold start that the fixed window avoided.
func TestAutoFallbackIsTheFixedWindow(t *testing.T) {
	ft, span := overlapping(t)
	never := keepalive.Config{MinSamples: 1 << 30}
	auto := runOne(t, ft, span, Policy{Auto: true}, never, keepalive.Prices{})
	fixed := runOne(t, ft, span, Policy{Fixed: keepalive.DefaultFallback}, never, keepalive.Prices{})
	if fixed.PeakInstances < 2 {
		t.Fatalf("peak %d instances: the trace should need a second one", fixed.PeakInstances)
	}
	if auto.ColdStarts != fixed.ColdStarts || auto.Starts != fixed.Starts {
		t.Fatalf("auto (fallback) cold starts %v, starts %v; fixed %s: %v, %v", auto.ColdStarts, auto.Starts, keepalive.DefaultFallback, fixed.ColdStarts, fixed.Starts)
	}
	if d := math.Abs(auto.Seconds.Idle - fixed.Seconds.Idle); d > 0.01*fixed.Seconds.Idle {
		t.Fatalf("auto (fallback) idle %.0f, fixed %.0f", auto.Seconds.Idle, fixed.Seconds.Idle)
	}
}

// With the histogram trusted and priced at the default, auto on the
// overlapping trace is no worse than fixed 10 min in idle seconds and
// within a few cold starts of it (the p99 tail), and far better than the
// all-day instance it used to leave behind.
func TestAutoOnOverlappingTrace(t *testing.T) {
	ft, span := overlapping(t)
	pr := keepalive.Prices{IdlePerSecond: 0.001, ColdStart: 10 * time.Second}
	auto := runOne(t, ft, span, Policy{Auto: true}, keepalive.Config{}, pr)
	fixed := runOne(t, ft, span, Policy{Fixed: 10 * time.Minute}, keepalive.Config{}, pr)
	if auto.Seconds.Idle > fixed.Seconds.Idle {
		t.Fatalf("auto idle %.0f > fixed 10m %.0f", auto.Seconds.Idle, fixed.Seconds.Idle)
	}
	if auto.ColdStarts > fixed.ColdStarts+0.01*auto.Requests {
		t.Fatalf("auto cold starts %v, fixed 10m %v of %v", auto.ColdStarts, fixed.ColdStarts, auto.Requests)
	}
}

func TestParseAzure2021(t *testing.T) {
	head := "app,func,end_timestamp,duration\n"
	tests := []struct {
		name, in string
		err      string // substring; "" = ok
		fns      int
		first    []float64
	}{
		{name: "two functions", in: head + "a,f,10,2\na,g,5,1\na,f,20,0.5\n", fns: 2, first: []float64{4, 15.5}},
		{name: "zero duration", in: head + "a,f,3,0\n", fns: 1, first: []float64{0}},
		{name: "bad header", in: "x,y,z,w\na,f,1,1\n", err: "want the 2021 header"},
		{name: "short line", in: head + "a,f,1,1\na,f\n", err: "line 3: 2 fields, want 4"},
		{name: "not a number", in: head + "a,f,soon,1\n", err: `line 2: end_timestamp "soon"`},
		{name: "end before duration", in: head + "a,f,1,5\n", err: "line 2"},
		{name: "negative duration", in: head + "a,f,1,-1\n", err: "line 2"},
		{name: "NaN", in: head + "a,f,NaN,1\n", err: "line 2"},
		{name: "empty", in: head, err: "want the 2021 header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mt, err := ParseAzure2021(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrTrace) {
					t.Fatalf("err = %v, want ErrTrace containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(mt.Functions) != tt.fns {
				t.Fatalf("%d functions, want %d", len(mt.Functions), tt.fns)
			}
			got := mt.Functions[0].Arrivals
			if fmt.Sprint(got) != fmt.Sprint(tt.first) {
				t.Fatalf("arrivals %v, want %v", got, tt.first)
			}
		})
	}
}

func TestParseAzure2019Errors(t *testing.T) {
	head := "HashOwner,HashApp,HashFunction,Trigger,1,2\n"
	tests := []struct{ name, in, err string }{
		{"bad header", "a,b,c,d,1,2\no,a,f,t,1,1\n", "want the 2019 header"},
		{"short line", head + "o,a,f,t,1\n", "line 2: 5 fields, want 6"},
		{"negative", head + "o,a,f,t,1,-3\n", `line 2, minute 2: "-3"`},
		{"too many in a minute", head + "o,a,f,t,1,100001\n", "line 2, minute 2"},
		{"word", head + "o,a,f,t,1,1\no,a,g,t,x,1\n", `line 3, minute 1: "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAzure2019(strings.NewReader(tt.in), nil, 1)
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrTrace) {
				t.Fatalf("err = %v, want ErrTrace containing %q", err, tt.err)
			}
		})
	}
}

func TestGenerateTrace(t *testing.T) {
	a, b := GenerateTrace(3, 8, 1), GenerateTrace(3, 8, 1)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("same seed, different population")
	}
	if fmt.Sprint(GenerateTrace(4, 8, 1)) == fmt.Sprint(a) {
		t.Fatal("different seeds, same population")
	}
	want := []string{GenPeriodic, GenBursty, GenDiurnal, GenRare}
	for i, f := range a.Functions {
		if f.Shape != want[i%4] {
			t.Fatalf("function %d shape %s, want %s", i, f.Shape, want[i%4])
		}
		if len(f.Arrivals) == 0 {
			t.Fatalf("%s: no arrivals", f.Name)
		}
		for j, at := range f.Arrivals {
			if at < 0 || at >= a.Span || (j > 0 && at < f.Arrivals[j-1]) {
				t.Fatalf("%s: arrival %d at %v out of order or outside [0, %v)", f.Name, j, at, a.Span)
			}
		}
	}
}

// A 2019 minute's calls: even spreads them at (i+½)·60/n; uniform draws
// them from the seed, in the minute, sorted.
func TestAzure2019Placement(t *testing.T) {
	in := "HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f,t,3,0\n"
	even, err := ParseAzure2019Placed(strings.NewReader(in), nil, 1, PlaceEven)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(even.Functions[0].Arrivals); got != "[10 30 50]" {
		t.Fatalf("even arrivals %s, want [10 30 50]", got)
	}
	uni, err := ParseAzure2019Placed(strings.NewReader(in), nil, 1, PlaceUniform)
	if err != nil {
		t.Fatal(err)
	}
	a := uni.Functions[0].Arrivals
	if len(a) != 3 || fmt.Sprint(a) == "[10 30 50]" || a[0] < 0 || a[2] >= 60 || a[0] > a[1] || a[1] > a[2] {
		t.Fatalf("uniform arrivals %v, want 3 sorted random times in [0, 60)", a)
	}
	if _, err := ParsePlacement("spread"); err == nil || !strings.Contains(err.Error(), "want uniform") {
		t.Fatalf("ParsePlacement(spread) = %v", err)
	}
}
