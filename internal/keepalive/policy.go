package keepalive

import (
	"fmt"
	"math"
	"time"
)

// Defaults of Config; README's spec reference and docs/autoscaling.md
// describe them.
const (
	DefaultMinSamples = 5
	DefaultHead       = 5.0  // percentile for the pre-warm window
	DefaultTail       = 99.0 // percentile for the keep-alive window
	DefaultMargin     = 0.10 // Shahrad et al.'s 10 %
	DefaultMaxCV      = 10.0
	DefaultMaxOOB     = 0.5
	DefaultFallback   = 10 * time.Minute
	DefaultMinPreWarm = 5 * time.Second
	// DefaultColdStartWorth prices a cold start's wait, when the user sets
	// no value, as this much of the function's own hardware time: the trade
	// a fixed 10 min window makes (it pays up to 10 idle minutes to avoid
	// one cold start). Being a time, it holds on any hardware class.
	DefaultColdStartWorth = 10 * time.Minute
)

// Config tunes the policy. Zero fields take the defaults above.
type Config struct {
	// MinSamples idle times are needed before the histogram is trusted.
	MinSamples int
	// Head and Tail are the percentiles (0–100) of idle time that set the
	// pre-warm and keep-alive windows.
	Head, Tail float64
	// Margin widens the windows on both sides by this share of the spread
	// between the two percentiles (at least 2 % of the head idle time).
	Margin float64
	// MaxCV: idle times with a larger coefficient of variation are too
	// spread for percentiles to mean much; the fallback applies.
	MaxCV float64
	// MaxOOB: when more than this share of idle times exceeds Range, the
	// histogram cannot place the next arrival; the fallback applies.
	MaxOOB float64
	// Fallback is the fixed keep-alive window used while the histogram is
	// not representative (Shahrad et al.'s 10 min by default).
	Fallback time.Duration
	// MinPreWarm: shorter pre-warm windows are dropped (the instance just
	// stays warm): stopping and restarting for a few seconds saves little
	// and risks the start not finishing in time.
	MinPreWarm time.Duration
}

func (c Config) withDefaults() Config {
	if c.MinSamples <= 0 {
		c.MinSamples = DefaultMinSamples
	}
	if !(c.Head > 0 && c.Head < 100) {
		c.Head = DefaultHead
	}
	if !(c.Tail > c.Head && c.Tail <= 100) {
		c.Tail = DefaultTail
	}
	if !(c.Margin > 0 && c.Margin < 1) {
		c.Margin = DefaultMargin
	}
	if !(c.MaxCV > 0) {
		c.MaxCV = DefaultMaxCV
	}
	if !(c.MaxOOB > 0 && c.MaxOOB <= 1) {
		c.MaxOOB = DefaultMaxOOB
	}
	if c.Fallback <= 0 {
		c.Fallback = DefaultFallback
	}
	if c.MinPreWarm <= 0 {
		c.MinPreWarm = DefaultMinPreWarm
	}
	return c
}

// Prices make the policy cost-aware. A zero IdlePerSecond turns the check off.
type Prices struct {
	// IdlePerSecond is what one instance-second of the function's hardware
	// costs (USD), idle or loading.
	IdlePerSecond float64
	// ColdStart is the measured start-to-ready time of one instance.
	ColdStart time.Duration
	// ColdStartUSD is what the user says one cold start's latency is worth
	// (0: ColdStartWorth of the hardware's time).
	ColdStartUSD float64
	// ColdStartWorth is the same value as hardware time, when ColdStartUSD
	// is 0 (scaling.cold_start_worth; 0: DefaultColdStartWorth).
	ColdStartWorth time.Duration
}

// ColdStartPrice is the expected price of one cold start: its loading
// seconds on the hardware plus the user's value of the wait.
func (p Prices) ColdStartPrice() float64 {
	v := p.ColdStartUSD
	if !(v > 0) {
		worth := p.ColdStartWorth
		if worth <= 0 {
			worth = DefaultColdStartWorth
		}
		v = worth.Seconds() * p.IdlePerSecond
	}
	return p.ColdStart.Seconds()*p.IdlePerSecond + v
}

// Windows is the policy's answer for one function.
type Windows struct {
	// PreWarm is how long after a busy period ends the function has no
	// instance for the policy; 0 = stay warm from the end of the request.
	PreWarm time.Duration `json:"pre_warm"`
	// KeepAlive is how long from PreWarm an instance is kept; 0 with
	// PreWarm 0 = stop as soon as idle.
	KeepAlive time.Duration `json:"keep_alive"`
	// Extra is how long an instance beyond the first is kept idle. The
	// histogram counts the function's idle gaps, which say nothing about
	// how often it needs a second instance, so extra instances get the
	// safe fixed window (or the keep-alive, if longer) while the function
	// is expected back soon (no pre-warm, some keep-alive), and stop at
	// once otherwise. With the fallback this is exactly the fixed window.
	Extra time.Duration `json:"extra_hold"`
	// Why the windows are what they are.
	Samples  int           `json:"samples"`
	Head     time.Duration `json:"head,omitempty"` // the Head percentile's bin (lower edge)
	Tail     time.Duration `json:"tail,omitempty"` // the Tail percentile's bin (upper edge)
	CV       float64       `json:"cv"`
	OOB      float64       `json:"out_of_bounds"`
	Fallback string        `json:"fallback,omitempty"` // why the fixed window applies; "" when learned
	Reason   string        `json:"reason"`
	// ExpectedIdle is the expected idle instance-seconds per gap and
	// Avoided the share of arrivals expected warm, from the histogram.
	ExpectedIdle float64 `json:"expected_idle_s"`
	Avoided      float64 `json:"expected_warm"`
}

// Warm reports whether an instance should be held at idle time since (the
// time since the function's last busy period ended).
func (w Windows) Warm(since time.Duration) bool {
	return since >= w.PreWarm && since < w.PreWarm+w.KeepAlive
}

// Hold is how long an instance beyond the first may stay idle before it is
// stopped (the per-instance idle timeout under auto).
func (w Windows) Hold() time.Duration { return w.Extra }

// IdleHold is how long an idle instance is kept, beyond what the scaling
// decision wants, while alive instances of the function exist (itself
// included): Hold while there are others, nothing for the only one (Warm
// holds it, through the decision's min). The simulator and the live
// controller both stop instances by this rule.
func (w Windows) IdleHold(alive int) time.Duration {
	if alive <= 1 {
		return 0
	}
	return w.Hold()
}

// Predicted reports whether an arrival after idle time since falls in the
// window the policy predicted (served warm, unless the start was too slow).
func (w Windows) Predicted(since time.Duration) bool { return w.Warm(since) }

// Choose picks the windows for h. It is a pure function of its inputs.
func Choose(h *Histogram, cfg Config, pr Prices) Windows {
	cfg = cfg.withDefaults()
	w := Windows{Samples: h.Samples(), CV: h.CV(), OOB: h.OutOfBounds()}
	switch {
	case w.Samples < cfg.MinSamples:
		w.Fallback = fmt.Sprintf("%d idle times, need %d", w.Samples, cfg.MinSamples)
	case w.OOB > cfg.MaxOOB:
		w.Fallback = fmt.Sprintf("%.0f%% of idle times exceed %s", 100*w.OOB, Range)
	case w.CV > cfg.MaxCV:
		w.Fallback = fmt.Sprintf("idle times too spread (CV %.1f > %.1f)", w.CV, cfg.MaxCV)
	}
	if w.Fallback != "" {
		w.KeepAlive = cfg.Fallback
		w.Reason = "fixed " + cfg.Fallback.String() + ": " + w.Fallback
	} else {
		headLo, _, _ := h.Percentile(cfg.Head)
		_, tailHi, _ := h.Percentile(cfg.Tail)
		w.Head, w.Tail = headLo, tailHi
		// The margin is a share of the spread between the percentiles, and
		// at least 2 % of the idle time itself: a tight period needs little
		// slack, a loose one more.
		slack := max(cfg.Margin*float64(tailHi-headLo), 0.02*float64(headLo))
		pre := time.Duration(float64(headLo)-slack) - pr.ColdStart
		if pre < cfg.MinPreWarm {
			pre = 0
		}
		w.PreWarm = pre.Round(time.Second / 10)
		w.KeepAlive = (tailHi - w.PreWarm + time.Duration(slack)).Round(time.Second / 10)
		w.Reason = fmt.Sprintf("p%g of idle %s, p%g %s over %d idle times", cfg.Head, headLo, cfg.Tail, tailHi, w.Samples)
	}
	if w.Samples == 0 {
		return w.withExtra(cfg)
	}
	// Cost-aware: per idle gap, holding an instance K past the pre-warm
	// moment costs its expected idle seconds and saves the cold starts it
	// turns warm. Among the windows up to the longer of the percentile
	// window and the fallback (ends of non-empty bins), keep the one that
	// saves most; none that costs more than it saves. The fallback's length
	// is always a candidate, so at the default cold-start value the choice
	// is never worse in expectation than the fixed window. Too few
	// samples: trust the fallback.
	if pr.IdlePerSecond > 0 && w.Samples >= cfg.MinSamples {
		best, idle, warm, net := bestKeepAlive(h, w.PreWarm, w.KeepAlive, pr, cfg.Margin)
		if cfg.Fallback > w.KeepAlive {
			// Widen only for a real gain over the percentile window.
			if b, i, wm, n := bestKeepAlive(h, w.PreWarm, cfg.Fallback, pr, cfg.Margin); n > net*(1+1e-9)+1e-12 {
				best, idle, warm = b, i, wm
			}
		}
		if ext := extendTail(h, w.PreWarm.Seconds(), max(w.KeepAlive, cfg.Fallback).Seconds(), best.Seconds(), pr.ColdStartPrice(), pr.IdlePerSecond); ext > best.Seconds() {
			best = secs(ext).Round(time.Second / 10)
			w.Reason += fmt.Sprintf("; %s past the longest idle time for those not seen yet", (best - w.KeepAlive).Round(time.Second))
			w.KeepAlive = best
		}
		switch {
		case best == 0 && w.KeepAlive > 0:
			w.PreWarm = 0
			w.Reason += fmt.Sprintf("; not kept warm: idle costs more than the cold starts it avoids ($%.6f each)", pr.ColdStartPrice())
		case best < w.KeepAlive:
			w.Reason += fmt.Sprintf("; cut to %s: longer idle costs more than the cold starts it avoids ($%.6f each)", best, pr.ColdStartPrice())
		case best > w.KeepAlive:
			w.Reason += fmt.Sprintf("; widened to %s: the cold starts it avoids ($%.6f each) cost more than the idle", best, pr.ColdStartPrice())
		}
		w.KeepAlive = best
		w.ExpectedIdle, w.Avoided = idle, warm
		return w.withExtra(cfg)
	}
	w.ExpectedIdle, w.Avoided = expect(h, w)
	return w.withExtra(cfg)
}

func (w Windows) withExtra(cfg Config) Windows {
	w.Extra = 0
	if w.PreWarm == 0 && w.KeepAlive > 0 {
		w.Extra = max(w.KeepAlive, cfg.Fallback)
	}
	return w
}

// bestKeepAlive returns the keep-alive window at most limit (from pre) with
// the largest expected saving per gap: warm share × cold-start price minus
// idle seconds × price, over candidate windows ending at bin edges (widened
// by margin); 0 when no window saves anything. It also returns that
// window's expected idle seconds, warm share and net saving. One pass over
// the bins.
func bestKeepAlive(h *Histogram, pre, limit time.Duration, pr Prices, margin float64) (time.Duration, float64, float64, float64) {
	p, lim := pre.Seconds(), limit.Seconds()
	n := float64(h.n)
	if n == 0 {
		return 0, 0, 0, 0
	}
	cold, price := pr.ColdStartPrice(), pr.IdlePerSecond
	if h.counts == nil {
		return 0, 0, 0, 0
	}
	// Walking candidate ends K upward: gaps below p are cold either way;
	// gaps in [p, p+K) are warm and idle gap-p; all later gaps idle K.
	var below float64 // count of gaps < p
	for i, c := range h.counts {
		if edges[i+1] <= p {
			below += float64(c)
		}
	}
	var warmN, warmIdle float64
	bestK, bestIdle, bestWarm, bestNet := 0.0, 0.0, 0.0, 0.0
	consider := func(k float64) {
		if k <= 0 || k > lim+1e-9 {
			return
		}
		later := n - below - warmN
		idle := (warmIdle + k*later) / n
		warm := warmN / n
		if net := warm*cold - idle*price; net > bestNet {
			bestK, bestIdle, bestWarm, bestNet = k, idle, warm, net
		}
	}
	for i, c := range h.counts {
		if edges[i]-p >= lim {
			break // beyond the window: these gaps stay cold-or-idle-K
		}
		if c == 0 || edges[i+1] <= p {
			continue
		}
		mid := max((edges[i]+edges[i+1])/2, p)
		warmN += float64(c)
		warmIdle += (mid - p) * float64(c)
		consider(min((edges[i+1]-p)*(1+margin), lim))
	}
	consider(lim)
	return secs(bestK).Round(time.Second / 10), bestIdle, bestWarm, bestNet
}

// extendTail widens a keep-alive k that covers every idle time seen (from
// pre p) past the longest one, for the gaps not seen yet. Ending exactly at
// the longest gap seen makes every new longest gap a cold start, and a busy
// function meets one every few hundred gaps (with the calls that arrive
// during that start each starting an instance too). Beyond the longest
// gap M the chance of another gap is taken as 1/(n+1) (none seen yet, the
// rule of succession), spread as the tail seen so far, exponential with
// the mean excess over the median μ; the chance that the function has
// stopped altogether as (long+1)/(n+1), long being gaps seen beyond lim.
// Extending by Δ gains q·(1−e^(−Δ/μ))·cold and costs about (q·e^(−Δ/μ)+s)
// idle seconds per second at the margin, so the best Δ solves
// q·e^(−Δ/μ)·(cold/μ − price) = s·price. Returns k unchanged when k cuts
// into the seen gaps (the price check chose to go cold) or no extension
// pays.
func extendTail(h *Histogram, p, lim, k, cold, price float64) float64 {
	if k <= 0 || !(price > 0) || h.counts == nil {
		return k
	}
	top, long := -1, float64(h.oob)
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		if edges[i]-p >= lim {
			long += float64(c)
			continue
		}
		top = i
	}
	if top < 0 || edges[top+1]-p > k {
		return k
	}
	// Gaps in the median's bin count as the median: a strict period (one
	// bin) has no tail to extend.
	medLo, medHi, _ := h.Percentile(50)
	med := (medLo + medHi).Seconds() / 2
	var excess, above float64
	h.each(func(mid, c float64) {
		if mid > med {
			excess += (mid - med) * c
			above += c
		}
	})
	if above == 0 {
		return k
	}
	mu := excess / above
	n := float64(h.n)
	q, s := 1/(n+1), (long+1)/(n+1)
	if cold/mu <= price {
		return k
	}
	delta := mu * math.Log(q*(cold/mu-price)/(s*price))
	if !(delta > 0) {
		return k
	}
	return min(max(k, edges[top+1]-p+delta), lim)
}

// expect returns, over the histogram's idle times, the mean idle
// instance-seconds per gap that w spends and the share of arrivals it finds
// warm. Out-of-bounds gaps spend the whole keep-alive and find no instance.
func expect(h *Histogram, w Windows) (idle, warm float64) {
	pre, ka := w.PreWarm.Seconds(), w.KeepAlive.Seconds()
	var n float64
	h.each(func(gap, c float64) {
		n += c
		switch {
		case gap < pre:
		case gap < pre+ka:
			idle += (gap - pre) * c
			warm += c
		default:
			idle += ka * c
		}
	})
	oob := float64(h.oob)
	idle += ka * oob
	n += oob
	if n == 0 {
		return 0, 0
	}
	return idle / n, warm / n
}
