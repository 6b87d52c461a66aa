package cost

import (
	"fmt"
	"testing"
	"time"
)

func TestScratch(t *testing.T) {
	for _, tc := range []Inputs{
		{RequestsPerDay: 1000, SecondsPerRequest: 5, Target: 1},
		{RequestsPerDay: 1000, SecondsPerRequest: 5, Target: 0.7},
		{RequestsPerDay: 1000, SecondsPerRequest: 5, Target: 1, IdleTimeout: 10 * time.Second},
		{RequestsPerDay: 10000, SecondsPerRequest: 5, Target: 1},
		{RequestsPerDay: 100000, SecondsPerRequest: 5, Target: 1},
		{RequestsPerDay: 100000, SecondsPerRequest: 5, Target: 0.7},
		{RequestsPerDay: 100000, SecondsPerRequest: 5, Target: 0.7, Concurrency: 4},
		{RequestsPerDay: 500000, SecondsPerRequest: 5, Target: 0.7},
	} {
		st := time.Now()
		a, _ := Analytic(tc)
		s, _ := Simulate(tc)
		fmt.Printf("%+v\n  A %+v cold %.4f starts %.0f\n  S %+v cold %.4f starts %.0f peak %d (%v)\n", tc, a.Seconds, a.ColdStartRate, a.Starts, s.Seconds, s.ColdStartRate, s.Starts, s.PeakInstances, time.Since(st))
	}
}
