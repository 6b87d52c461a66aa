// Package keepalive is Ember's learned keep-warm policy (scaling.idle_timeout:
// auto), after the hybrid histogram policy of Shahrad et al., "Serverless in
// the Wild" (USENIX ATC'20): per function, a histogram of the idle times
// between requests; from it a pre-warm window (scale to zero right after a
// request, start an instance that long after it) and a keep-alive window
// (how long to stay warm from then), both from percentiles, a safe fixed
// window when the histogram says little, and a price check that keeps no
// instance warm when its idle seconds cost more than the cold starts they
// avoid.
//
// It is pure: no I/O, no clock (time is passed in), no goroutines. The same
// code runs in the controller, in `ember cost` simulations and in tests.
package keepalive

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Bin layout: fine where short periods need it, coarse where nobody can
// tell 10 s apart. 1 s bins to 2 min, 10 s bins to 20 min, 1 min bins to
// 4 h (Shahrad's range); longer idle times count as out of bounds. 448
// counters per function, whatever the traffic.
var edges = func() []float64 {
	var e []float64
	for s := 0.0; s < 120; s++ {
		e = append(e, s)
	}
	for s := 120.0; s < 1200; s += 10 {
		e = append(e, s)
	}
	for s := 1200.0; s <= 4*3600; s += 60 {
		e = append(e, s)
	}
	return e
}()

// nBins is the number of in-range bins: edges[i] ≤ idle < edges[i+1].
var nBins = len(edges) - 1

// Range is the longest idle time the histogram resolves.
const Range = 4 * time.Hour

// maxCount bounds the total: past it every count is halved, so memory stays
// bounded, counts never overflow, and old traffic weighs less than new.
const maxCount = 1 << 14

// Histogram counts a function's idle times. The zero value is empty and
// ready to use.
type Histogram struct {
	counts []uint32 // nBins, allocated on first Add
	oob    uint32   // idle times ≥ Range
	n      uint32   // in range + oob
	sum    float64  // of in-range idle seconds, for the mean and CV
	sumSq  float64
}

// Add records one idle time (from the end of one busy period to the next
// arrival). Negative times count as 0.
func (h *Histogram) Add(idle time.Duration) {
	s := max(idle.Seconds(), 0)
	if h.n >= maxCount {
		h.halve()
	}
	h.n++
	if s >= edges[nBins] {
		h.oob++
		return
	}
	if h.counts == nil {
		h.counts = make([]uint32, nBins)
	}
	h.counts[bin(s)]++
	h.sum += s
	h.sumSq += s * s
}

func (h *Histogram) halve() {
	before := float64(h.n - h.oob)
	var n uint32
	for i, c := range h.counts {
		h.counts[i] = c / 2
		n += c / 2
	}
	h.oob /= 2
	f := float64(n) / max(before, 1)
	h.sum *= f
	h.sumSq *= f
	h.n = n + h.oob
}

// bin returns the index of the bin holding s (0 ≤ s < edges[nBins]).
func bin(s float64) int {
	lo, hi := 0, nBins-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if edges[mid] <= s {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// Samples is the number of idle times counted (after halvings).
func (h *Histogram) Samples() int { return int(h.n) }

// OutOfBounds is the share of idle times longer than Range.
func (h *Histogram) OutOfBounds() float64 {
	if h.n == 0 {
		return 0
	}
	return float64(h.oob) / float64(h.n)
}

// CV is the coefficient of variation (σ/μ) of the in-range idle times.
func (h *Histogram) CV() float64 {
	n := float64(h.n - h.oob)
	if n < 2 || h.sum <= 0 {
		return 0
	}
	mean := h.sum / n
	v := max(h.sumSq/n-mean*mean, 0)
	return math.Sqrt(v) / mean
}

// Percentile returns the lower and upper edges of the bin that holds the
// p-th percentile (0–100) of the in-range idle times; ok is false when there
// are none.
func (h *Histogram) Percentile(p float64) (lo, hi time.Duration, ok bool) {
	n := h.n - h.oob
	if n == 0 || h.counts == nil {
		return 0, 0, false
	}
	want := max(math.Ceil(p/100*float64(n)), 1)
	var acc float64
	for i, c := range h.counts {
		acc += float64(c)
		if acc >= want {
			return secs(edges[i]), secs(edges[i+1]), true
		}
	}
	return secs(edges[nBins-1]), secs(edges[nBins]), true
}

// each calls f with every non-empty bin's midpoint and count.
func (h *Histogram) each(f func(mid float64, c float64)) {
	for i, c := range h.counts {
		if c > 0 {
			f((edges[i]+edges[i+1])/2, float64(c))
		}
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// wire is the stored form: sparse bins keyed by their lower edge in seconds,
// so a change of layout reads old state without misplacing it.
type wire struct {
	Version int               `json:"v"`
	Bins    map[string]uint32 `json:"bins,omitempty"`
	OOB     uint32            `json:"oob,omitempty"`
}

// MarshalJSON writes the non-empty bins.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	w := wire{Version: 1, OOB: h.oob, Bins: map[string]uint32{}}
	for i, c := range h.counts {
		if c > 0 {
			w.Bins[fmt.Sprint(edges[i])] = c
		}
	}
	return json.Marshal(w)
}

// ErrState is a stored histogram that cannot be read.
var ErrState = errors.New("keepalive: bad stored histogram")

// UnmarshalJSON reads what MarshalJSON wrote, rejecting out-of-range input.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if w.Version != 1 {
		return fmt.Errorf("%w: version %d (want 1)", ErrState, w.Version)
	}
	if len(w.Bins) > nBins {
		return fmt.Errorf("%w: %d bins (at most %d)", ErrState, len(w.Bins), nBins)
	}
	var out Histogram
	total := uint64(w.OOB)
	for k, c := range w.Bins {
		var s float64
		if _, err := fmt.Sscan(k, &s); err != nil || !(s >= 0) || s >= edges[nBins] {
			return fmt.Errorf("%w: bin %q is not a lower edge in [0, %g)", ErrState, k, edges[nBins])
		}
		if out.counts == nil {
			out.counts = make([]uint32, nBins)
		}
		i := bin(s)
		out.counts[i] += c
		mid := (edges[i] + edges[i+1]) / 2
		out.sum += mid * float64(c)
		out.sumSq += mid * mid * float64(c)
		total += uint64(c)
	}
	if total > maxCount {
		return fmt.Errorf("%w: %d samples (at most %d)", ErrState, total, maxCount)
	}
	out.oob, out.n = w.OOB, uint32(total)
	*h = out
	return nil
}
