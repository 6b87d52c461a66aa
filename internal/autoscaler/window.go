package autoscaler

import "time"

// Default window shape: one-second buckets, one minute of history, which is
// enough for the default 60s stable window.
const (
	DefaultGranularity = time.Second
	DefaultSpan        = 60 * time.Second
)

// Window records concurrency observations (in-flight plus queued requests
// for one function) in fixed-size time buckets and averages them over a
// trailing duration. Time is always passed in; the window never reads the
// clock.
//
// A Window is not safe for concurrent use: the controller that feeds it and
// calls Decide owns it. Decide only reads it.
type Window struct {
	granularity time.Duration
	// buckets is a ring indexed by bucket number modulo len(buckets). Each
	// slot remembers which bucket it holds (at), so a slot left over from a
	// previous lap reads as empty without a sweep on every Record.
	buckets []bucket

	first      time.Time // start of the oldest bucket ever recorded; zero until the first Record
	latest     time.Time // time of the newest sample
	lastActive time.Time // time of the newest non-zero sample
}

type bucket struct {
	at  time.Time // bucket start; zero when the slot has never been used
	sum float64
	n   int
}

// NewWindow returns a window of buckets of the given granularity that keeps
// span of history. A non-positive granularity or span takes the default
// (1s and 60s). Averages over more than span are cut to span.
func NewWindow(granularity, span time.Duration) *Window {
	if granularity <= 0 {
		granularity = DefaultGranularity
	}
	if span <= 0 {
		span = DefaultSpan
	}
	return &Window{
		granularity: granularity,
		buckets:     make([]bucket, ceilDiv(span, granularity)),
	}
}

// Record adds one observation at now. Several samples in one bucket are
// averaged, so a controller that samples faster than the granularity does
// not weigh busy seconds more. A sample older than the span is dropped.
func (w *Window) Record(now time.Time, concurrency float64) {
	start := now.Truncate(w.granularity)
	b := &w.buckets[w.index(start)]
	switch {
	case b.at.Equal(start):
	case b.at.After(start):
		return // the slot already holds a newer lap: this sample is too old
	default:
		*b = bucket{at: start}
	}
	b.sum += concurrency
	b.n++

	if w.first.IsZero() || start.Before(w.first) {
		w.first = start
	}
	if !now.Before(w.latest) {
		w.latest = now
	}
	if concurrency != 0 && now.After(w.lastActive) {
		w.lastActive = now
	}
}

// Average returns the mean concurrency over the buckets covering the last d
// up to and including now's bucket. A bucket with no samples counts as 0, but
// buckets before the first sample ever recorded do not count at all: a window
// that started recording 5s ago averages over 5s, not over d. It returns 0
// when nothing was recorded in range.
//
// E.g. granularity 1s, samples 10 at t=0s and 20 at t=1s, nothing at t=2s:
// Average(t=2s, 60s) = (10+20+0)/3 = 10.
func (w *Window) Average(now time.Time, d time.Duration) float64 {
	if w.first.IsZero() {
		return 0
	}
	n := min(max(ceilDiv(d, w.granularity), 1), len(w.buckets))
	end := now.Truncate(w.granularity)
	var sum float64
	var count int
	for i := range n {
		start := end.Add(-time.Duration(i) * w.granularity)
		if start.Before(w.first) {
			break // older buckets predate recording
		}
		count++
		if b := w.buckets[w.index(start)]; b.at.Equal(start) {
			sum += b.sum / float64(b.n)
		}
	}
	if count == 0 {
		return 0
	}
	return sum / float64(count)
}

// LastActive returns the time of the newest non-zero sample, or the zero
// time if there has been none.
func (w *Window) LastActive() time.Time { return w.lastActive }

// index maps a bucket start to its ring slot. It uses UnixNano, so times
// must lie within years 1678..2262, as for any time.Duration arithmetic.
func (w *Window) index(start time.Time) int {
	n := int64(len(w.buckets))
	k := start.UnixNano() / int64(w.granularity) % n
	if k < 0 {
		k += n
	}
	return int(k)
}

// ceilDiv returns ceil(a/b) for b > 0, and 0 for a <= 0.
func ceilDiv(a, b time.Duration) int {
	if a <= 0 {
		return 0
	}
	return int((a-1)/b + 1) // not (a+b-1)/b, which overflows near MaxInt64
}
