package cost

import (
	"math"
)

// rates are per-second expectations for a stationary arrival rate.
type rates struct {
	secs        Seconds // instance-seconds per second, by state
	cold        float64 // cold requests per second
	starts      float64 // instance starts per second
	busyPeriods float64 // busy segments per second
}

// Analytic computes a month of usage from closed forms. They are exact for
// one instance with concurrency 1 and approximate beyond; see docs/cost-model.md.
func Analytic(in Inputs) (Usage, error) {
	in = in.withDefaults()
	if err := in.validate(); err != nil {
		return Usage{}, err
	}
	return analytic(in), nil
}

func analytic(in Inputs) Usage {
	lam := in.lambda()
	var r rates
	switch in.Shape {
	case ShapeDiurnal:
		// Piecewise stationary: 96 quarter-hours of a sinusoidal day.
		const n = 96
		for i := range n {
			f := 1 + in.DiurnalAmplitude*math.Sin(2*math.Pi*(float64(i)+0.5)/n-math.Pi/2)
			r = r.add(stationary(in, lam*f), 1.0/n)
		}
	case ShapeBursty:
		// On periods at rate λ/fOn, off periods at zero. Each off period
		// longer than the idle timeout costs the on period a scale-from-zero,
		// which the stationary form already charges at rate λ_on·e^{-λ_on T}
		// only; the off period's keep-warm tail is added here.
		on, off := in.BurstOn.Seconds(), in.BurstOff.Seconds()
		fOn := on / (on + off)
		lamOn := lam / fOn
		r = r.add(stationary(in, lamOn), fOn)
		r = r.add(stationary(in, 0), 1-fOn)
		cycles := 1 / (on + off) // per second
		alive := aliveInstances(in, lamOn)
		tail := math.Min(in.IdleTimeout.Seconds(), off)
		extra := max(alive-float64(in.Min), 0)
		r.secs.Idle += cycles * extra * tail
		// Off periods longer than T stop the extra instances; the burst
		// that follows restarts them cold.
		if off > in.IdleTimeout.Seconds() {
			pLong := math.Exp(-in.IdleTimeout.Seconds() / off) // exponential off periods
			r.cold += cycles * extra * pLong
			r.starts += cycles * extra * pLong
			r.secs.Loading += cycles * extra * pLong * in.ColdStart.Seconds()
		}
	default:
		r = stationary(in, lam)
	}
	month := Month.Seconds()
	u := Usage{
		Engine:      EngineAnalytic,
		Requests:    lam * month,
		Seconds:     r.secs.scale(month),
		ColdStarts:  r.cold * month,
		Starts:      r.starts * month,
		BusyPeriods: r.busyPeriods * month,
	}
	if u.Requests > 0 {
		u.ColdStartRate = u.ColdStarts / u.Requests
	}
	return u
}

func (r rates) add(o rates, w float64) rates {
	r.secs = r.secs.add(o.secs.scale(w))
	r.cold += o.cold * w
	r.starts += o.starts * w
	r.busyPeriods += o.busyPeriods * w
	return r
}

// aliveInstances is the mean number of instances alive at rate lam.
func aliveInstances(in Inputs, lam float64) float64 {
	return stationary(in, lam).secs.Total()
}

// stationary evaluates the closed forms at a constant Poisson rate lam.
//
// The model. Requests in flight, N(t), form an M/G/∞ process: N is Poisson
// with mean a = λ·S at any instant, and it climbs from j-1 to j at rate
// λ·π(j-1), π the Poisson pmf (insensitive to the service distribution).
// Routing fills the oldest free instance first and idle instances expire
// newest first, so instance k is alive exactly when k instances were needed
// at some moment of the last T seconds: when N reached level
// L = (k-1)·c+1 within T. Approximating those up-crossings, seen from below
// L, as Poisson with rate r = λ·π(L-1)/P(N<L):
//
//	P(instance k alive) = P(N ≥ L) + P(N < L)·(1 - e^{-r·T})
//	cold starts at k    = λ·π(L-1)·e^{-r·T}   per second
//
// For k = 1 and c = 1 this is the textbook result: P(N<1) = e^{-a} and
// r = λ, so a request finds no warm instance with probability e^{-λT}.
// E.g. the seed: λ = 1000/86400 s⁻¹, T = 120 s: e^{-λT} = 0.249, and each
// gap between requests keeps the instance idle (1 - 0.249)/λ = 64.9 s.
//
// Busy instance-seconds: with c = 1 they are λ·S. With c > 1 least-loaded
// routing spreads requests over the alive instances, so about min(N, alive)
// instances are busy; we take Σk min(P(N ≥ k), P(instance k alive)).
// A cold request holds its slot for S + C, so the load is iterated with the
// cold-start probability folded in. Instances within Min never expire.
func stationary(in Inputs, lam float64) rates {
	var r rates
	c := max(in.Concurrency, 1)
	S := in.SecondsPerRequest
	C := in.ColdStart.Seconds()
	T := in.IdleTimeout.Seconds()
	if lam <= 0 {
		r.secs.Idle = float64(in.Min)
		return r
	}
	pCold := 0.0
	for range 4 {
		a := lam * (S + pCold*C)
		p := newPoisson(a)
		r = rates{}
		var alive, busy float64
		D := max(in.Min, int(math.Ceil(lam*S/(float64(c)*in.Target)-1e-9)))
		var first float64 // P(instance 1 alive): traffic flows
		for k := 1; k <= in.Max; k++ {
			pk, cold := instanceAlive(p, lam, T, (k-1)*c+1, k)
			switch {
			case k <= in.Min:
				pk, cold = 1, 0
			case k == 1:
				first = pk
			case k <= D && pk < first:
				// The decider keeps D instances while traffic flows.
				cold *= (1 - first) / max(1-pk, 1e-12)
				pk = first
			}
			if pk < 1e-12 && k > in.Min {
				break
			}
			alive += pk
			busy += min(1-p.cdf(k-1), pk)
			r.cold += cold
		}
		if c == 1 {
			busy = lam * S
		}
		r.starts = r.cold
		r.secs.Loading = r.cold * C
		r.secs.Busy = busy
		r.secs.Idle = max(alive-busy-r.secs.Loading, 0)
		// Busy periods: with c = 1 one per request; with c > 1 one per
		// time an instance goes from idle to busy, about λ·P(N < alive).
		r.busyPeriods = lam
		if c > 1 {
			r.busyPeriods = lam * p.cdf(int(math.Round(alive))-1)
		}
		pCold = min(r.cold/lam, 1)
	}
	return r
}

// poisson is a Poisson(a) distribution with a cached pmf.
type poisson struct {
	pm []float64
	cd []float64
}

func newPoisson(a float64) *poisson {
	p := &poisson{}
	// Work in logs so large a does not underflow e^{-a}.
	n := int(a + 12*math.Sqrt(a) + 30)
	var cum float64
	for j := 0; j <= n; j++ {
		lg, _ := math.Lgamma(float64(j + 1))
		v := math.Exp(float64(j)*math.Log(a) - a - lg)
		if a == 0 && j == 0 {
			v = 1
		}
		cum += v
		p.pm = append(p.pm, v)
		p.cd = append(p.cd, min(cum, 1))
	}
	return p
}

func (p *poisson) pmf(j int) float64 {
	if j < 0 || j >= len(p.pm) {
		return 0
	}
	return p.pm[j]
}

func (p *poisson) cdf(j int) float64 {
	switch {
	case j < 0:
		return 0
	case j >= len(p.cd):
		return 1
	}
	return p.cd[j]
}

// instanceAlive returns the probability that the k-th oldest instance is
// alive and the rate at which it is started, for in-flight counts N ~ p.
// The instance is started when N climbs to hi = (k-1)·c+1 (all older slots
// full) and, since least-loaded routing hands it work whenever N reaches
// lo = k, it stops only after T seconds with N below lo. Visits above a
// level, seen from below, are taken as Poisson. Its on period is then
// A/q + (1-q)/(r·q) with r the visit rate to lo, q = e^{-r·T} the chance a
// gap outlasts T and A the mean sojourn at or above lo; its off period is
// 1/r_hi. For c = 1 (hi = lo) this reduces to P(N ≥ k) + P(N < k)(1 - e^{-rT}).
func instanceAlive(p *poisson, lam, T float64, hi, lo int) (alive, starts float64) {
	belowHi, belowLo := p.cdf(hi-1), p.cdf(lo-1)
	if belowLo <= 0 || belowHi <= 0 {
		return 1, 0
	}
	upLo := lam * p.pmf(lo-1) // up-crossings of lo per second
	upHi := lam * p.pmf(hi-1)
	if upHi <= 0 {
		return 0, 0
	}
	r := upLo / belowLo
	q := math.Exp(-r * T)
	if q <= 0 {
		return 1, 0
	}
	A := (1 - belowLo) / upLo
	on := A/q + (1-q)/(r*q)
	off := belowHi / upHi
	if math.IsInf(on, 1) || math.IsNaN(on) {
		return 1, 0 // never idle for T: always alive
	}
	return on / (on + off), 1 / (on + off)
}
