package route

import (
	"sync"
	"time"
)

// Window counts requests in one-second buckets over a trailing span and
// reports their rate. Time is passed in. It is safe for concurrent use: the
// gateway records from every request goroutine.
type Window struct {
	span   time.Duration
	warmup time.Duration
	start  time.Time

	mu      sync.Mutex // guards buckets
	buckets []bucket   // ring indexed by unix second modulo len
}

type bucket struct {
	sec int64 // unix second this slot counts; a stale slot reads as empty
	n   int64
}

// NewWindow measures over span (DefaultWindow if ≤ 0), starting at start.
// Until span has passed since start, the rate is averaged over the time
// elapsed, but over at least DefaultWarmup (or span, if shorter), so that a
// cold start neither hides traffic for minutes nor reads three quick
// requests as 100 qps.
func NewWindow(span time.Duration, start time.Time) *Window {
	if span <= 0 {
		span = DefaultWindow
	}
	n := int((span + time.Second - 1) / time.Second)
	return &Window{span: span, warmup: min(DefaultWarmup, span), start: start, buckets: make([]bucket, n)}
}

// Span is the window's length.
func (w *Window) Span() time.Duration { return w.span }

// Record counts n requests at now.
func (w *Window) Record(now time.Time, n int) {
	sec := now.Unix()
	w.mu.Lock()
	b := &w.buckets[w.slot(sec)]
	if b.sec != sec {
		*b = bucket{sec: sec}
	}
	b.n += int64(n)
	w.mu.Unlock()
}

// QPS is the request rate over the span ending at now.
func (w *Window) QPS(now time.Time) float64 {
	sec := now.Unix()
	oldest := sec - int64(len(w.buckets)) + 1
	var total int64
	w.mu.Lock()
	for _, b := range w.buckets {
		if b.sec >= oldest && b.sec <= sec {
			total += b.n
		}
	}
	w.mu.Unlock()
	over := min(w.span, max(w.warmup, now.Sub(w.start)))
	return float64(total) / over.Seconds()
}

func (w *Window) slot(sec int64) int {
	i := sec % int64(len(w.buckets))
	if i < 0 {
		i += int64(len(w.buckets))
	}
	return int(i)
}
