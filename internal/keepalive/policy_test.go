package keepalive

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// gaps builds a histogram from idle times in seconds.
func gaps(secs ...float64) *Histogram {
	h := &Histogram{}
	for _, s := range secs {
		h.Add(time.Duration(s * float64(time.Second)))
	}
	return h
}

func repeat(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// diurnal: idle times of a day whose rate swings between busy hours (a call
// every ~20 s) and night (a call every ~15 min), seeded.
func diurnal() []float64 {
	r := rand.New(rand.NewPCG(1, 2))
	var out []float64
	for t := 0.0; t < 86400; {
		rate := 1 / 20.0
		if h := int(t/3600) % 24; h < 7 || h >= 22 {
			rate = 1 / 900.0
		}
		g := r.ExpFloat64() / rate
		out = append(out, g)
		t += g
	}
	return out
}

func TestChoose(t *testing.T) {
	gpu := Prices{IdlePerSecond: 0.0004, ColdStart: 10 * time.Second, ColdStartUSD: 0.02}
	cpu := Prices{IdlePerSecond: 0.00001, ColdStart: 100 * time.Millisecond, ColdStartUSD: 0.02}
	bursty := append(repeat(90, 1.5), repeat(10, 3600)...)
	tests := []struct {
		name          string
		gaps          []float64
		prices        Prices
		pre, ka       time.Duration
		fallback      string // substring; "" = learned
		reasonHas     string
		minWarm       float64
		maxIdlePerGap float64
	}{
		{name: "live test: every 2s", gaps: repeat(10, 2.2), prices: cpu,
			pre: 0, ka: 3100 * time.Millisecond, minWarm: 1},
		{name: "periodic every 5 min: pre-warm then a short window", gaps: repeat(20, 300), prices: gpu,
			pre: 284 * time.Second, ka: 28600 * time.Millisecond, reasonHas: "cut to", minWarm: 1, maxIdlePerGap: 22},
		{name: "periodic, price off: no start time to leave room for", gaps: repeat(20, 300),
			pre: 294 * time.Second, ka: 22 * time.Second, minWarm: 1},
		{name: "bursty on GPU: keep warm inside bursts only", gaps: bursty, prices: gpu,
			pre: 0, ka: 2200 * time.Millisecond, reasonHas: "cut to", minWarm: 0.9, maxIdlePerGap: 2},
		{name: "bursty, no price: the tail percentile spans the pauses", gaps: bursty,
			pre: 0, ka: 4025900 * time.Millisecond, minWarm: 1},
		{name: "diurnal on GPU: the short day gaps", gaps: diurnal(), prices: gpu,
			pre: 0, minWarm: 0.5},
		{name: "one-off: too few samples, fixed window", gaps: []float64{7200}, prices: gpu,
			pre: 0, ka: DefaultFallback, fallback: "1 idle times, need 5"},
		{name: "twice a day: out of bounds, and not worth keeping warm", gaps: repeat(10, 12*3600), prices: gpu,
			pre: 0, ka: 0, fallback: "exceed", reasonHas: "not kept warm"},
		{name: "twice a day without prices: fixed window", gaps: repeat(10, 12*3600),
			pre: 0, ka: DefaultFallback, fallback: "exceed"},
		{name: "empty", pre: 0, ka: DefaultFallback, fallback: "0 idle times"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := Choose(gaps(tt.gaps...), Config{}, tt.prices)
			if w.PreWarm != tt.pre {
				t.Errorf("pre-warm = %s, want %s (%s)", w.PreWarm, tt.pre, w.Reason)
			}
			if tt.ka != 0 || tt.fallback != "" || tt.reasonHas == "not kept warm" {
				if w.KeepAlive != tt.ka {
					t.Errorf("keep-alive = %s, want %s (%s)", w.KeepAlive, tt.ka, w.Reason)
				}
			}
			if (tt.fallback == "") != (w.Fallback == "") || !strings.Contains(w.Fallback, tt.fallback) {
				t.Errorf("fallback = %q, want %q", w.Fallback, tt.fallback)
			}
			if !strings.Contains(w.Reason, tt.reasonHas) {
				t.Errorf("reason = %q, want it to say %q", w.Reason, tt.reasonHas)
			}
			if w.Avoided < tt.minWarm {
				t.Errorf("expected warm share = %.2f, want ≥ %.2f (%s)", w.Avoided, tt.minWarm, w.Reason)
			}
			if tt.maxIdlePerGap > 0 && w.ExpectedIdle > tt.maxIdlePerGap {
				t.Errorf("expected idle per gap = %.1fs, want ≤ %.1fs", w.ExpectedIdle, tt.maxIdlePerGap)
			}
		})
	}
}

func TestDiurnalKeepsLessThanTenMinutes(t *testing.T) {
	gpu := Prices{IdlePerSecond: 0.0004, ColdStart: 10 * time.Second}
	w := Choose(gaps(diurnal()...), Config{}, gpu)
	if w.KeepAlive <= 0 || w.KeepAlive >= 10*time.Minute {
		t.Errorf("keep-alive = %s, want in (0, 10m): %s", w.KeepAlive, w.Reason)
	}
}

func TestWarm(t *testing.T) {
	w := Windows{PreWarm: 10 * time.Second, KeepAlive: 5 * time.Second}
	for _, c := range []struct {
		since time.Duration
		want  bool
	}{{0, false}, {9 * time.Second, false}, {10 * time.Second, true}, {14 * time.Second, true}, {15 * time.Second, false}} {
		if got := w.Warm(c.since); got != c.want {
			t.Errorf("Warm(%s) = %v, want %v", c.since, got, c.want)
		}
	}
}

func TestHistogramBounds(t *testing.T) {
	h := &Histogram{}
	for i := 0; i < 3*maxCount; i++ {
		h.Add(time.Duration(i%50) * time.Second)
	}
	if h.Samples() > maxCount {
		t.Errorf("samples = %d, want ≤ %d after halving", h.Samples(), maxCount)
	}
	lo, _, _ := h.Percentile(50)
	if lo < 20*time.Second || lo > 30*time.Second {
		t.Errorf("median = %s after halvings, want about 25s", lo)
	}
	if h.CV() < 0.4 || h.CV() > 0.8 {
		t.Errorf("CV = %.2f, want about 0.58 (uniform 0..49)", h.CV())
	}
}

func TestHistogramJSON(t *testing.T) {
	h := gaps(1, 1, 2.5, 300, 5000, 20000)
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Histogram
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Samples() != h.Samples() || back.OutOfBounds() != h.OutOfBounds() {
		t.Errorf("round trip: %d samples, %.2f oob; want %d, %.2f", back.Samples(), back.OutOfBounds(), h.Samples(), h.OutOfBounds())
	}
	for _, p := range []float64{5, 50, 99} {
		a, _, _ := h.Percentile(p)
		b, _, _ := back.Percentile(p)
		if a != b {
			t.Errorf("p%g: %s after round trip, want %s", p, b, a)
		}
	}
	for _, bad := range []string{`{"v":2}`, `{"v":1,"bins":{"-1":1}}`, `{"v":1,"bins":{"99999":1}}`, `{"v":1,"bins":{"x":1}}`, `{"v":1,"oob":99999999}`, `[`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s: accepted, want an error", bad)
		}
	}
}

// IdleHold is the one rule by which the simulator and the live controller
// stop idle instances under auto: the fallback keeps extra instances for
// its fixed window (as idle_timeout: 10m would), a pre-warm window stops
// them at once, and the only instance is left to Warm.
func TestIdleHold(t *testing.T) {
	var empty Histogram
	fallback := Choose(&empty, Config{}, Prices{})
	var h Histogram
	for range 50 {
		h.Add(120 * time.Second)
	}
	prewarm := Choose(&h, Config{}, Prices{})
	if prewarm.PreWarm == 0 {
		t.Fatalf("periodic 120 s: no pre-warm (%+v)", prewarm)
	}
	for _, tt := range []struct {
		name  string
		w     Windows
		alive int
		want  time.Duration
	}{
		{"fallback, two alive", fallback, 2, DefaultFallback},
		{"fallback, only one", fallback, 1, 0},
		{"pre-warm, two alive", prewarm, 3, 0},
		{"none alive", fallback, 0, 0},
	} {
		if got := tt.w.IdleHold(tt.alive); got != tt.want {
			t.Errorf("%s: IdleHold(%d) = %s, want %s", tt.name, tt.alive, got, tt.want)
		}
	}
}

// A busy function (exponential gaps, mean 12 s, a 10 s cold start): a
// keep-alive ending at the longest gap seen makes every new longest gap a
// cold start; the window reaches past it for gaps not seen yet, by about
// μ·ln(price of a cold start / idle price of μ), and stays far below the
// fixed 10 min that would be paid after the function's last call.
func TestKeepAliveReachesPastTheLongestGap(t *testing.T) {
	var h Histogram
	longest := 0.0
	for i := range 300 {
		g := -12 * math.Log(1-(float64(i)+0.5)/300)
		longest = max(longest, g)
		h.Add(time.Duration(g * float64(time.Second)))
	}
	w := Choose(&h, Config{}, Prices{IdlePerSecond: 0.001, ColdStart: 10 * time.Second})
	if w.PreWarm != 0 || w.Fallback != "" {
		t.Fatalf("windows %+v, want learned, no pre-warm", w)
	}
	if ka := w.KeepAlive.Seconds(); ka < longest+20 || ka > 5*60 {
		t.Fatalf("keep-alive %s, want between the longest gap %.0f s + 20 s and 5 min (%s)", w.KeepAlive, longest, w.Reason)
	}
	if !strings.Contains(w.Reason, "past the longest idle time") {
		t.Errorf("reason %q does not say why", w.Reason)
	}
}
