package cost

import (
	"math"
	"math/rand/v2"
)

// maxSimArrivals bounds the generated arrivals so a simulation stays quick;
// the result is scaled to a month.
const maxSimArrivals = 200_000

// simHorizon is how many seconds of traffic the simulation generates.
func simHorizon(in Inputs) float64 {
	if in.SimDuration > 0 {
		return in.SimDuration.Seconds()
	}
	month := Month.Seconds()
	lam := in.lambda()
	if lam*month <= maxSimArrivals {
		return month
	}
	h := maxSimArrivals / lam
	switch in.Shape {
	case ShapeDiurnal:
		h = max(h, 86400) // at least one whole day
	case ShapeBursty:
		h = max(h, 20*(in.BurstOn+in.BurstOff).Seconds())
	default:
		h = max(h, 3600)
	}
	return math.Min(h, month)
}

// generate returns arrival times in [0, horizon) for the shape, from a
// seeded PCG so the same Inputs always give the same arrivals.
func generate(in Inputs, horizon float64) []float64 {
	rng := rand.New(rand.NewPCG(in.Seed, 0x656d626572)) // "ember"
	lam := in.lambda()
	if lam <= 0 {
		return nil
	}
	var out []float64
	switch in.Shape {
	case ShapeDiurnal:
		// Thinning (Lewis–Shedler): candidates at the peak rate, kept with
		// probability rate(t)/peak.
		a := in.DiurnalAmplitude
		peak := lam * (1 + a)
		for t := rng.ExpFloat64() / peak; t < horizon; t += rng.ExpFloat64() / peak {
			rate := lam * (1 + a*math.Sin(2*math.Pi*t/86400-math.Pi/2))
			if rng.Float64()*peak < rate {
				out = append(out, t)
			}
		}
	case ShapeBursty:
		on, off := in.BurstOn.Seconds(), in.BurstOff.Seconds()
		lamOn := lam * (on + off) / on
		// Start in an off period so the first burst meets a cold function.
		t := rng.ExpFloat64() * off
		for t < horizon {
			end := t + rng.ExpFloat64()*on
			for a := t + rng.ExpFloat64()/lamOn; a < end && a < horizon; a += rng.ExpFloat64() / lamOn {
				out = append(out, a)
			}
			t = end + rng.ExpFloat64()*off
		}
	default:
		for t := rng.ExpFloat64() / lam; t < horizon; t += rng.ExpFloat64() / lam {
			out = append(out, t)
		}
	}
	return out
}
