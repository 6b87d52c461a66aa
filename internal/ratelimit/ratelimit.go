// Package ratelimit enforces per-key and per-function token-bucket rates and
// concurrency caps, and reports decisions as Retry-After and RateLimit-*
// headers. Time is passed in, so callers and tests control it.
package ratelimit

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is one subject's budget. Zero fields mean unlimited.
type Limit struct {
	// Rate is the sustained requests per second the bucket refills at.
	Rate float64
	// Burst is the bucket size: requests allowed at once after a quiet
	// spell. With a Rate and no Burst, one second of Rate (at least 1).
	Burst int
	// MaxConcurrency caps requests in flight at once.
	MaxConcurrency int
}

func (l Limit) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.Rate)))
}

// Sharer says how many gateways share every limit: N live gateways each
// enforce 1/N of a subject's rate, burst and concurrency, so the total
// across them is the configured limit (the gateway's report to the
// controller leader provides it; nil or a value below 1 means 1). Share
// is called on every Acquire: keep it an atomic load.
type Sharer interface{ Share() int }

// Split returns the part of l one of n gateways enforces: the rate over
// n, and the burst and concurrency cap over n rounded down but at least 1
// (a bucket of 0 would refuse everything). Rounding down keeps the total
// at most the configured limit whenever it is at least n.
func Split(l Limit, n int) Limit {
	if n <= 1 || l == (Limit{}) {
		return l
	}
	out := Limit{}
	if l.Rate > 0 {
		out.Rate = l.Rate / float64(n)
		out.Burst = max(1, l.burst()/n)
	}
	if l.MaxConcurrency > 0 {
		out.MaxConcurrency = max(1, l.MaxConcurrency/n)
	}
	return out
}

// Spec names a subject and its limit for one request. Kind and Key are
// the bucket's identity (Kind "API key", Key its id; Kind "function", Key
// its name); messages call it Kind and Name (`API key "ci"`). They are
// kept apart, not joined into one string, so a request builds none.
type Spec struct {
	Kind  string
	Key   string
	Name  string
	Limit Limit
}

// The kinds of subject Ember limits.
const (
	KindAPIKey   = "API key"
	KindFunction = "function"
)

// subject is an entry's identity in the map.
type subject struct{ kind, key string }

// Decision is the answer for one request.
type Decision struct {
	Allowed bool
	// Kind and Name are the subject that refused the request or, when
	// allowed, the one closest to its limit (whose numbers fill the
	// headers).
	Kind, Name string
	// Reason is "rate" or "concurrency" when refused.
	Reason string
	// Limit, Remaining and Reset describe the token bucket for the
	// RateLimit-* headers; Limit is 0 when no rate applies.
	Limit     int
	Remaining int
	Reset     time.Duration // until the bucket is full again
	// RetryAfter is when a refused request may succeed.
	RetryAfter time.Duration
}

// ConcurrencyRetryAfter is the Retry-After given when a concurrency cap
// refuses a request: when a slot frees is unknown, and a second is a short
// but not hammering wait.
const ConcurrencyRetryAfter = time.Second

// Limiter holds the buckets and in-flight counts of many subjects. It is
// safe for concurrent use. Subjects appear on first use; full, idle buckets
// are dropped as the map grows, since a full bucket carries no state.
type Limiter struct {
	share Sharer // nil: one gateway; set before use (ShareWith)

	mu      sync.Mutex // guards the following
	entries map[subject]*entry
	sweepAt int // len(entries) at which Acquire next sweeps
}

type entry struct {
	limit    Limit
	bucket   *rate.Limiter // nil without a Rate
	inFlight int
}

const minSweep = 1024

// New returns an empty Limiter.
func New() *Limiter {
	return &Limiter{entries: map[subject]*entry{}, sweepAt: minSweep}
}

// ShareWith makes l enforce its share of every limit (Split by s.Share(),
// read on each Acquire). Call it before l is used. When the share
// changes, a subject's bucket keeps the tokens it holds (clamped to the
// new burst), so neither a gateway joining nor one leaving hands out a
// fresh burst.
func (l *Limiter) ShareWith(s Sharer) { l.share = s }

// Acquire decides one request against every spec at now: it is allowed only
// if all allow it, and then takes a token from each bucket and a slot from
// each concurrency cap. release, non-nil only when allowed, returns the
// slots; call it when the request ends (calling it twice is harmless).
// Specs with a zero Limit are ignored.
func (l *Limiter) Acquire(now time.Time, specs ...Spec) (d Decision, release func()) {
	n := 1
	if l.share != nil {
		n = l.share.Share()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.entries) >= l.sweepAt {
		l.sweepLocked(now)
		l.sweepAt = max(minSweep, 2*len(l.entries))
	}
	var small [4]*entry // a call has one to three subjects: no allocation
	es := small[:0]
	if len(specs) > len(small) {
		es = make([]*entry, 0, len(specs))
	}
	es = es[:len(specs)]
	for i, s := range specs {
		if s.Limit == (Limit{}) {
			continue
		}
		es[i] = l.entryLocked(now, s, Split(s.Limit, n))
	}
	// Check everything before taking anything, so a refusal by one subject
	// costs the others nothing.
	var deny Decision // deny.Reason != "": refused
	for i, e := range es {
		if e == nil {
			continue
		}
		if c := decideLocked(now, e, specs[i]); !c.Allowed && (deny.Reason == "" || c.RetryAfter > deny.RetryAfter) {
			deny = c
		}
	}
	if deny.Reason != "" {
		return deny, nil
	}
	d = Decision{Allowed: true}
	var held []*entry
	for i, e := range es {
		if e == nil {
			continue
		}
		if e.bucket != nil {
			e.bucket.AllowN(now, 1) // cannot fail: checked above under l.mu
			c := bucketState(now, e)
			c.Kind, c.Name = specs[i].Kind, specs[i].Name
			if d.Limit == 0 || c.Remaining < d.Remaining {
				d = c
			}
		}
		if e.limit.MaxConcurrency > 0 {
			e.inFlight++
			held = append(held, e)
		}
	}
	if len(held) == 0 {
		return d, noRelease // no slot taken: nothing to give back, nothing to allocate
	}
	var once sync.Once
	return d, func() {
		once.Do(func() {
			l.mu.Lock()
			for _, e := range held {
				e.inFlight--
			}
			l.mu.Unlock()
		})
	}
}

func noRelease() {}

// entryLocked returns s's entry, created or updated to lim (s.Limit or
// this gateway's share of it). pre: l.mu held.
func (l *Limiter) entryLocked(now time.Time, s Spec, lim Limit) *entry {
	k := subject{s.Kind, s.Key}
	e := l.entries[k]
	if e == nil {
		e = &entry{}
		l.entries[k] = e
	}
	if e.limit == lim {
		return e
	}
	e.limit = lim
	switch {
	case lim.Rate <= 0:
		e.bucket = nil
	case e.bucket == nil:
		e.bucket = rate.NewLimiter(rate.Limit(lim.Rate), lim.burst())
	default:
		// Keep the tokens already spent: a changed limit (or share) must
		// not hand out a fresh burst. Tokens above a smaller burst are
		// clamped at the next reading.
		e.bucket.SetLimitAt(now, rate.Limit(lim.Rate))
		e.bucket.SetBurstAt(now, lim.burst())
	}
	return e
}

// decideLocked says whether e admits one more request at now, without
// taking anything. pre: l.mu held.
func decideLocked(now time.Time, e *entry, s Spec) Decision {
	d := Decision{Allowed: true, Kind: s.Kind, Name: s.Name}
	if e.bucket != nil {
		d = bucketState(now, e)
		d.Kind, d.Name = s.Kind, s.Name
		if tokens := e.bucket.TokensAt(now); tokens < 1 {
			// E.g. rate 0.5/s with 0.25 tokens left: (1-0.25)/0.5 = 1.5s.
			d.Allowed, d.Reason = false, "rate"
			d.RetryAfter = time.Duration((1 - tokens) / e.limit.Rate * float64(time.Second))
			return d
		}
	}
	if e.limit.MaxConcurrency > 0 && e.inFlight >= e.limit.MaxConcurrency {
		d.Allowed, d.Reason, d.RetryAfter = false, "concurrency", ConcurrencyRetryAfter
	}
	return d
}

// bucketState reads e's bucket for the headers. pre: e.bucket != nil.
func bucketState(now time.Time, e *entry) Decision {
	tokens := e.bucket.TokensAt(now)
	burst := e.bucket.Burst()
	d := Decision{Allowed: true, Limit: burst, Remaining: max(0, int(math.Floor(tokens)))}
	if missing := float64(burst) - tokens; missing > 0 {
		d.Reset = time.Duration(missing / e.limit.Rate * float64(time.Second))
	}
	return d
}

// Sweep drops subjects that hold no state worth keeping at now: nothing in
// flight and a full (or no) bucket. It returns how many remain.
func (l *Limiter) Sweep(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	return len(l.entries)
}

// pre: l.mu held.
func (l *Limiter) sweepLocked(now time.Time) {
	for k, e := range l.entries {
		if e.inFlight == 0 && (e.bucket == nil || e.bucket.TokensAt(now) >= float64(e.bucket.Burst())) {
			delete(l.entries, k)
		}
	}
}

// Forget drops a subject (a deleted key or function).
func (l *Limiter) Forget(kind, key string) {
	l.mu.Lock()
	delete(l.entries, subject{kind, key})
	l.mu.Unlock()
}
