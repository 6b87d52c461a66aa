package process

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/driver"
)

// BenchmarkStartReady measures a cold start of the sim server, from Start
// to Start returning a ready instance, and reports:
//
//	detect-lag-µs  time from sim's own readiness (the EMBER_SIM_READY
//	               timestamp, taken once it listens and /health will pass)
//	               to Start returning: the overhead this driver adds to a
//	               cold start (target: ≤ 5 ms, see the platform's goals)
//	boot-µs        spawn to sim's readiness: the process's own start time
//	               (including any simulated load delay)
//
// Both are the median over b.N starts; p99 variants are reported as well.
func BenchmarkStartReady(b *testing.B) {
	if simBin == "" {
		b.Skip("no go toolchain to build examples/sim")
	}
	for _, load := range []string{"0s", "50ms"} {
		// With a load delay, probes have backed off to ProbeMax by the
		// time the instance is ready, so the lag shows the cap's cost.
		b.Run("load="+load, func(b *testing.B) {
			benchStart(b, driver.StartSpec{
				Command:    []string{simBin},
				Env:        map[string]string{"SIM_LOAD_DELAY": load},
				HealthPath: "/health",
			})
		})
	}
}

func benchStart(b *testing.B, spec driver.StartSpec) {
	d := New(nil, Options{})
	var lags, boots []time.Duration
	for b.Loop() {
		inst, err := d.Start(context.Background(), spec)
		returned := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		pi := inst.(*Instance)
		readyAt := simReadyAt(b, pi)
		lags = append(lags, returned.Sub(readyAt))
		boots = append(boots, readyAt.Sub(pi.Phases()[0].At))
		if err := inst.Stop(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	report := func(ds []time.Duration, unit string) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), unit)
		b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-"+unit)
	}
	report(lags, "detect-lag-µs")
	report(boots, "boot-µs")
}

// simReadyAt waits for sim's "EMBER_SIM_READY <unixnano>" line.
func simReadyAt(b *testing.B, inst *Instance) time.Time {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range inst.Tail(ringLines) {
			if v, ok := strings.CutPrefix(l, "EMBER_SIM_READY "); ok {
				ns, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					b.Fatalf("bad ready line %q", l)
				}
				return time.Unix(0, ns)
			}
		}
		time.Sleep(100 * time.Microsecond) // poll interval
	}
	b.Fatal("sim never printed EMBER_SIM_READY")
	return time.Time{}
}
