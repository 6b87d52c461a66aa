package ratelimit

import (
	"sync/atomic"
	"testing"
	"time"
)

// gateways is a settable live-gateway count (the roles slice's reporter
// in production).
type gateways struct{ n atomic.Int64 }

func (g *gateways) Share() int { return int(g.n.Load()) }

func TestSplit(t *testing.T) {
	tests := []struct {
		l    Limit
		n    int
		want Limit
	}{
		{Limit{Rate: 10, Burst: 10}, 1, Limit{Rate: 10, Burst: 10}},
		{Limit{Rate: 10, Burst: 10}, 0, Limit{Rate: 10, Burst: 10}}, // no count yet: alone
		{Limit{Rate: 10, Burst: 10}, 2, Limit{Rate: 5, Burst: 5}},
		{Limit{Rate: 10, Burst: 10}, 3, Limit{Rate: 10.0 / 3, Burst: 3}}, // 3×3 ≤ 10
		{Limit{Rate: 10}, 4, Limit{Rate: 2.5, Burst: 2}},                 // default burst 10, over 4
		{Limit{Rate: 1, Burst: 1}, 4, Limit{Rate: 0.25, Burst: 1}},       // never a bucket of 0
		{Limit{MaxConcurrency: 8}, 2, Limit{MaxConcurrency: 4}},
		{Limit{MaxConcurrency: 1}, 3, Limit{MaxConcurrency: 1}},
		{Limit{}, 5, Limit{}}, // unlimited stays unlimited
	}
	for _, tc := range tests {
		if got := Split(tc.l, tc.n); got != tc.want {
			t.Errorf("Split(%+v, %d) = %+v, want %+v", tc.l, tc.n, got, tc.want)
		}
	}
}

// offer sends perSec requests per second for d to the limiters in turn
// (a load balancer's round robin), on an injected clock, and returns how
// many each allowed.
func offer(start time.Time, d time.Duration, perSec int, spec Spec, ls ...*Limiter) (now time.Time, allowed []int) {
	allowed = make([]int, len(ls))
	step := time.Second / time.Duration(perSec)
	now = start
	for i := 0; now.Before(start.Add(d)); i++ {
		k := i % len(ls)
		if dec, release := ls[k].Acquire(now, spec); dec.Allowed {
			allowed[k]++
			release()
		}
		now = now.Add(step)
	}
	return now, allowed
}

func TestShareHoldsTheTotalAcrossGateways(t *testing.T) {
	spec := Spec{Key: "key:k", Name: `API key "k"`, Limit: Limit{Rate: 10, Burst: 10}}
	t0 := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name   string
		n      int
		lbs    int // gateways the traffic goes to
		lo, hi int // total allowed over 10 s at 100 req/s offered
	}{
		// One gateway alone: 10 burst + 10/s × 10 s.
		{"one gateway", 1, 1, 108, 111},
		// Two gateways, each its half: still 110 in total (each sees a
		// request every 20 ms, so a token can wait up to 20 ms unused).
		{"two gateways, even traffic", 2, 2, 106, 111},
		// Unshared, two gateways would let 220 through.
		{"two gateways, unshared (the bug this prevents)", 1, 2, 216, 221},
		// The trade-off: traffic on one of two gateways gets its half.
		{"two gateways, all traffic on one", 2, 1, 53, 56},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &gateways{}
			g.n.Store(int64(tc.n))
			ls := make([]*Limiter, tc.lbs)
			for i := range ls {
				ls[i] = New()
				ls[i].ShareWith(g)
			}
			_, allowed := offer(t0, 10*time.Second, 100, spec, ls...)
			total := 0
			for _, a := range allowed {
				total += a
			}
			if total < tc.lo || total > tc.hi {
				t.Fatalf("allowed %v = %d in total, want %d..%d", allowed, total, tc.lo, tc.hi)
			}
		})
	}
}

func TestShareChangeKeepsTokens(t *testing.T) {
	spec := Spec{Key: "key:k", Name: `API key "k"`, Limit: Limit{Rate: 10, Burst: 10}}
	now := time.Unix(1_700_000_000, 0)
	g := &gateways{}
	g.n.Store(1)
	l := New()
	l.ShareWith(g)
	take := func(max int) int {
		n := 0
		for range max {
			d, release := l.Acquire(now, spec)
			if !d.Allowed {
				break
			}
			release()
			n++
		}
		return n
	}
	if got := take(3); got != 3 { // 7 tokens left of 10
		t.Fatalf("took %d, want 3", got)
	}
	// A second gateway joins: this one's bucket is now 5, and holds 5.
	g.n.Store(2)
	if got := take(100); got != 5 {
		t.Fatalf("after a gateway joined: %d allowed at once, want 5 (tokens clamped to the halved burst)", got)
	}
	// It leaves again: the burst is 10 once more, but the bucket is not
	// refilled; tokens come back at the full 10/s.
	g.n.Store(1)
	if got := take(100); got != 0 {
		t.Fatalf("after a gateway left: %d allowed at once, want 0 (no fresh burst)", got)
	}
	now = now.Add(500 * time.Millisecond)
	if got := take(100); got != 5 {
		t.Fatalf("0.5 s later: %d allowed, want 5 (the whole 10/s again)", got)
	}
	// Headers show this gateway's share.
	g.n.Store(2)
	now = now.Add(10 * time.Second)
	if d, _ := l.Acquire(now, spec); d.Limit != 5 {
		t.Fatalf("RateLimit-Limit = %d, want 5 (this gateway's burst)", d.Limit)
	}
}

func TestShareSplitsConcurrency(t *testing.T) {
	g := &gateways{}
	g.n.Store(2)
	l := New()
	l.ShareWith(g)
	spec := Spec{Key: "key:k", Limit: Limit{MaxConcurrency: 4}}
	now := time.Unix(1_700_000_000, 0)
	var held []func()
	for range 2 {
		d, release := l.Acquire(now, spec)
		if !d.Allowed {
			t.Fatal("refused below this gateway's share")
		}
		held = append(held, release)
	}
	if d, _ := l.Acquire(now, spec); d.Allowed || d.Reason != "concurrency" {
		t.Fatalf("third in flight with max 4 over 2 gateways: %+v, want refused", d)
	}
	for _, r := range held {
		r()
	}
}
