package autoscaler

import (
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// simulate plays load (concurrency by whole second after t0) into a window
// and calls Decide once a second for seconds 0..until, the way the
// controller does: panic memory is fed back, and Ready becomes the previous
// Desired (instances are assumed to start at once). It returns the
// decisions by second.
func simulate(p Params, load func(s int) float64, until int) []Decision {
	w := NewWindow(time.Second, time.Minute)
	out := make([]Decision, 0, until+1)
	for s := 0; s <= until; s++ {
		now := sec(float64(s))
		w.Record(now, load(s))
		d := Decide(p, w, now)
		p.PanicSince, p.PanicDesired, p.Ready = d.PanicSince, d.PanicDesired, d.Desired
		out = append(out, d)
	}
	return out
}

// steps returns a load of v[i] from second from[i] on.
func steps(from []int, v []float64) func(int) float64 {
	return func(s int) float64 {
		var cur float64
		for i, f := range from {
			if s >= f {
				cur = v[i]
			}
		}
		return cur
	}
}

func TestDecideScenarios(t *testing.T) {
	// per instance 10×0.5 = 5 unless said otherwise.
	base := Params{Min: 0, Max: 100, Concurrency: 10, Target: 0.5, IdleTimeout: 30 * time.Second}
	with := func(f func(*Params)) Params { p := base; f(&p); return p }

	type want struct {
		Desired int
		Panic   bool
		Reason  string // substring; empty means don't check
	}
	tests := []struct {
		name  string
		p     Params
		load  func(int) float64
		until int
		want  map[int]want // by second
	}{
		{
			name: "steady load",
			p:    with(func(p *Params) { p.Ready = 3 }),
			load: steps([]int{0}, []float64{12}), until: 180,
			want: map[int]want{
				0:   {3, false, "stable demand 12.0 / 5.0 per instance"},
				90:  {3, false, ""},
				180: {3, false, ""},
			},
		},
		{
			name: "burst enters panic within the panic window",
			p:    with(func(p *Params) { p.Ready = 2 }),
			load: steps([]int{0, 120}, []float64{10, 50}), until: 125,
			want: map[int]want{
				119: {2, false, "stable"},
				120: {4, true, "panic: demand 16.7 ≥ 2×capacity"}, // (5×10+50)/6 → 4 ≥ 2×2
				125: {10, true, "panic"},                          // stable would say ceil(14/5) = 3
			},
		},
		{
			name: "panic holds then exits after the stable window",
			p:    with(func(p *Params) { p.Ready = 2 }),
			load: steps([]int{0, 120, 130}, []float64{10, 50, 10}), until: 200,
			want: map[int]want{
				120: {4, true, ""},
				129: {10, true, ""},
				// panic demand is back to 10 (→ 2) but panic never scales down.
				150: {10, true, "holding 10"},
				179: {10, true, ""},
				// 60s after the only trigger: stable (9×50+51×10)/60 = 16 → 4.
				180: {4, false, "stable demand 16.0"},
			},
		},
		{
			name: "decay after load drops",
			p:    with(func(p *Params) { p.Ready = 6 }),
			load: steps([]int{0, 60}, []float64{30, 10}), until: 120,
			want: map[int]want{
				59:  {6, false, ""},
				75:  {5, false, ""}, // (45×30+15×10)/60 = 25
				90:  {4, false, ""}, // 20
				105: {3, false, ""}, // 15
				119: {2, false, ""}, // window 60..119 is all 10
				120: {2, false, ""},
			},
		},
		{
			name: "scale to zero after idle timeout",
			p:    with(func(p *Params) { p.Ready = 2 }),
			load: steps([]int{0, 60}, []float64{10, 0}), until: 100,
			want: map[int]want{
				59: {2, false, ""},
				89: {1, false, "stable"}, // last non-zero at 59: 30s ago, still flowing
				90: {0, false, "idle"},
			},
		},
		{
			name: "idle timeout 0 stops at the first zero sample",
			p:    with(func(p *Params) { p.Ready = 2; p.IdleTimeout = 0 }),
			load: steps([]int{0, 60}, []float64{10, 0}), until: 61,
			want: map[int]want{59: {2, false, ""}, 60: {0, false, "idle"}},
		},
		{
			name: "min holds while idle",
			p:    with(func(p *Params) { p.Min = 2 }),
			load: steps([]int{0}, []float64{0}), until: 10,
			want: map[int]want{0: {2, false, "idle"}, 10: {2, false, "idle"}},
		},
		{
			name: "min raises a small demand",
			p:    with(func(p *Params) { p.Min = 2; p.Ready = 2 }),
			load: steps([]int{0}, []float64{1}), until: 10,
			want: map[int]want{10: {2, false, "(raised to min 2)"}},
		},
		{
			name: "max caps demand and panic",
			p:    with(func(p *Params) { p.Max = 3 }),
			load: steps([]int{0}, []float64{100}), until: 10,
			want: map[int]want{0: {3, true, "capped at max 3"}, 10: {3, true, ""}},
		},
		{
			name: "buffer only while flowing",
			p:    with(func(p *Params) { p.Buffer = 1; p.Ready = 3 }),
			load: steps([]int{0, 60}, []float64{10, 0}), until: 100,
			want: map[int]want{
				30: {3, false, ""}, // 2 + 1
				90: {0, false, "idle"},
			},
		},
		{
			name: "unlimited concurrency sizes 100×target per instance",
			p:    with(func(p *Params) { p.Concurrency = 0; p.Target = 0.7; p.Ready = 3 }),
			load: steps([]int{0}, []float64{150}), until: 10,
			want: map[int]want{10: {3, false, "/ 70.0 per instance"}}, // ceil(150/70)
		},
		{
			name: "zero target takes the default",
			p:    with(func(p *Params) { p.Concurrency = 10; p.Target = 0; p.Ready = 2 }),
			load: steps([]int{0}, []float64{14}), until: 10,
			want: map[int]want{10: {2, false, "/ 7.0 per instance"}},
		},
		{
			name: "fractional demand rounds up",
			p:    with(func(p *Params) { p.Concurrency = 1; p.Target = 1; p.Ready = 3 }),
			load: steps([]int{0}, []float64{2.2}), until: 10,
			want: map[int]want{10: {3, false, ""}},
		},
		{
			name: "exact multiple does not round up on float noise",
			p:    with(func(p *Params) { p.Concurrency = 4; p.Target = 0.7; p.Ready = 2 }),
			load: steps([]int{0}, []float64{5.6}), until: 10,
			want: map[int]want{10: {2, false, ""}},
		},
		{
			name: "at least one instance while flowing",
			p:    with(func(p *Params) { p.Ready = 1 }),
			load: steps([]int{0}, []float64{0.01}), until: 10,
			want: map[int]want{10: {1, false, ""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := simulate(tt.p, tt.load, tt.until)
			for _, s := range slices.Sorted(maps.Keys(tt.want)) {
				w, d := tt.want[s], got[s]
				if d.Desired != w.Desired || d.Panic != w.Panic {
					t.Errorf("t=%ds: Desired, Panic = %d, %v; want %d, %v (reason %q, demand %.2f/%.2f)",
						s, d.Desired, d.Panic, w.Desired, w.Panic, d.Reason, d.StableDemand, d.PanicDemand)
				}
				if !strings.Contains(d.Reason, w.Reason) {
					t.Errorf("t=%ds: Reason = %q, want it to contain %q", s, d.Reason, w.Reason)
				}
			}
		})
	}
}

// TestDecidePanicMemory checks the fed-back fields directly, one call at a time.
func TestDecidePanicMemory(t *testing.T) {
	w := NewWindow(time.Second, time.Minute)
	for s := range 61 {
		w.Record(sec(float64(s)), 5) // flat load: 1 instance at 5 per instance
	}
	p := Params{Max: 100, Concurrency: 10, Target: 0.5, IdleTimeout: time.Minute, Ready: 1}
	now := sec(60)
	tests := []struct {
		name string
		p    func(Params) Params
		want Decision
	}{
		{
			name: "no memory, no trigger",
			p:    func(p Params) Params { return p },
			want: Decision{Desired: 1, StableDemand: 5, PanicDemand: 5, Reason: "stable demand 5.0 / 5.0 per instance"},
		},
		{
			name: "memory keeps the panic count while the hold lasts",
			p: func(p Params) Params {
				p.PanicSince, p.PanicDesired = now.Add(-30*time.Second), 7
				return p
			},
			want: Decision{
				Desired: 7, Panic: true, StableDemand: 5, PanicDemand: 5,
				Reason:     "panic since 00:00:30: demand 5.0 / 5.0 per instance, holding 7",
				PanicSince: now.Add(-30 * time.Second), PanicDesired: 7,
			},
		},
		{
			name: "buffer is not fed back into the panic count",
			p: func(p Params) Params {
				p.PanicSince, p.PanicDesired, p.Buffer = now.Add(-30*time.Second), 7, 2
				return p
			},
			want: Decision{
				Desired: 9, Panic: true, StableDemand: 5, PanicDemand: 5,
				Reason:     "panic since 00:00:30: demand 5.0 / 5.0 per instance, holding 7 + buffer 2",
				PanicSince: now.Add(-30 * time.Second), PanicDesired: 7,
			},
		},
		{
			name: "memory expires after the stable window",
			p: func(p Params) Params {
				p.PanicSince, p.PanicDesired = now.Add(-60*time.Second), 7
				return p
			},
			want: Decision{Desired: 1, StableDemand: 5, PanicDemand: 5, Reason: "stable demand 5.0 / 5.0 per instance"},
		},
		{
			name: "a re-trigger resets PanicSince",
			p: func(p Params) Params {
				p.PanicSince, p.PanicDesired, p.PanicThreshold, p.Ready = now.Add(-50*time.Second), 1, 0.5, 0
				return p
			},
			want: Decision{
				Desired: 1, Panic: true, StableDemand: 5, PanicDemand: 5,
				Reason:     "panic: demand 5.0 ≥ 0.5×capacity",
				PanicSince: now, PanicDesired: 1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.p(p), w, now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideDoesNotMutateWindow(t *testing.T) {
	w := NewWindow(time.Second, 10*time.Second)
	for s := range 25 {
		w.Record(sec(float64(s)), float64(s%7))
	}
	before := *w
	before.buckets = slices.Clone(w.buckets)
	for s := 20; s < 100; s += 3 {
		Decide(Params{Max: 10, Concurrency: 2, Ready: 1, IdleTimeout: time.Minute}, w, sec(float64(s)))
	}
	if diff := cmp.Diff(before, *w, cmp.AllowUnexported(Window{}, bucket{})); diff != "" {
		t.Errorf("Decide modified the window (-before +after):\n%s", diff)
	}
}

func FuzzDecide(f *testing.F) {
	f.Add(0, 4, 0, 10, 0.7, 0, int64(30), 0.0, 12.0, int64(1))
	f.Add(2, 2, 3, 0, 0.0, 5, int64(0), 1e300, math.Inf(1), int64(0))
	f.Add(-1, 3, -2, -4, math.NaN(), -1, int64(-5), math.NaN(), -3.0, int64(99))
	f.Fuzz(func(t *testing.T, lo, hi, buffer, conc int, target float64, ready int, idleSec int64, a, b float64, panicAgo int64) {
		if lo < 0 || hi < lo || idleSec < -1e6 || idleSec > 1e6 || panicAgo < 0 || panicAgo > 1e6 {
			t.Skip("outside the precondition 0 <= Min <= Max or far from any real clock")
		}
		w := NewWindow(time.Second, time.Minute)
		for s := range 90 {
			v := a
			if s%3 == 0 {
				v = b
			}
			w.Record(sec(float64(s)), v)
		}
		now := sec(90)
		p := Params{
			Min: lo, Max: hi, Buffer: buffer, Concurrency: conc, Target: target, Ready: ready,
			IdleTimeout: time.Duration(idleSec) * time.Second,
			PanicSince:  now.Add(-time.Duration(panicAgo) * time.Second), PanicDesired: buffer * conc,
		}
		d := Decide(p, w, now)
		if d.Desired < lo || d.Desired > hi {
			t.Fatalf("Decide(%+v) = %d, want within [%d, %d] (reason %q)", p, d.Desired, lo, hi, d.Reason)
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	w := NewWindow(time.Second, time.Minute)
	for s := range 120 {
		w.Record(sec(float64(s)), float64(10+s%5))
	}
	p := Params{Max: 10, Concurrency: 4, Target: 0.7, IdleTimeout: time.Minute, Ready: 4}
	now := sec(119)
	b.ReportAllocs()
	for b.Loop() {
		Decide(p, w, now)
	}
}

// TestDecidePokeSizesAtOnce is the single sizing rule for scale from zero:
// a poke's Current is demand now, whatever the window holds, and the panic
// it enters holds the count while the averages catch up, so no second wave
// follows.
func TestDecidePokeSizesAtOnce(t *testing.T) {
	p := Params{Max: 10, Concurrency: 4, Target: 0.7, IdleTimeout: 2 * time.Minute}
	fresh := func() *Window { return NewWindow(time.Second, time.Minute) }
	// A function idle for a minute after earlier traffic: the last 6 s
	// read 0, so an average alone would be diluted.
	history := func() *Window {
		w := fresh()
		w.Record(sec(0), 20)
		for s := 1; s <= 60; s++ {
			w.Record(sec(float64(s)), 0)
		}
		return w
	}
	tests := []struct {
		name    string
		w       *Window
		current float64
		want    int
	}{
		{"8 waiting, never seen traffic", fresh(), 8, 3}, // ceil(8 / 2.8)
		{"8 waiting after idle history", history(), 8, 3},
		{"1 waiting", fresh(), 1, 1},
		{"no poke, never seen traffic", fresh(), 0, 0},
		{"NaN counts as no poke", fresh(), math.NaN(), 0},
		{"100 waiting, capped at max", fresh(), 100, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := p
			q.Current = tt.current
			if got := Decide(q, tt.w, sec(61)); got.Desired != tt.want {
				t.Errorf("Decide(current %v).Desired = %d, want %d (%s)", tt.current, got.Desired, tt.want, got.Reason)
			}
		})
	}

	// The ticks after the poke: the 3 are starting (Ready 3), the window
	// fills with the 8 now in flight and then with nothing once they are
	// served; the count stays 3, never 4, until idle.
	w := history()
	q := p
	q.Current = 8
	d := Decide(q, w, sec(61))
	q.Current = 0
	for s := 62; s <= 120; s++ {
		load := 0.0
		if s < 64 {
			load = 8
		}
		w.Record(sec(float64(s)), load)
		q.Ready, q.PanicSince, q.PanicDesired = d.Desired, d.PanicSince, d.PanicDesired
		d = Decide(q, w, sec(float64(s)))
		if d.Desired != 3 {
			t.Fatalf("tick at %ds after the poke: desired %d, want 3 (%s)", s, d.Desired, d.Reason)
		}
	}
}
