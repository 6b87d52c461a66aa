package e2e

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/cost"
)

// TestReplayMatchesCostModel drives a real function with arrivals from a
// generated Poisson trace and compares the metered cost with what the cost
// model's simulation engine (`ember cost --trace F --engine simulate`)
// predicts for the same trace: within 5 %.
func TestReplayMatchesCostModel(t *testing.T) {
	if testing.Short() {
		t.Skip("replays about 30 s of traffic")
	}
	const (
		n       = 24
		rate    = 1.0 // arrivals per second
		service = 0.3 // seconds per request
		idle    = 3 * time.Second
	)
	// The trace, as `ember cost --trace` reads it: "unix_seconds,duration".
	rng := rand.New(rand.NewPCG(6, 6))
	var lines []string
	at := 0.0
	for i := range n {
		lines = append(lines, fmt.Sprintf("%.3f,%g", 1_700_000_000+at, service))
		at += rng.ExpFloat64() / rate
		if i == n/2 {
			at += 2 * idle.Seconds() // a lull: the function scales to zero and cold-starts again
		}
	}
	tr, err := cost.ParseTrace(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}

	s := startServer(t, "", "--gpus", "off") // resources.gpu only prices the replay
	s.deploy(simSpec("replay", fmt.Sprintf("{min: 0, max: 1, concurrency: 1, target: 1, idle_timeout: %s}", idle),
		"env: {SIM_START_DELAY: 300ms}",
		"resources: {gpu: {type: a100-40gb, count: 1}}"))

	// Replay: each request leaves at its offset from the start.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i, a := range tr.Arrivals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(start.Add(time.Duration(a * float64(time.Second))))) // the trace's schedule
			r := s.call("POST", "/v1/run/replay/predict", fmt.Sprintf(`{"sleep_ms": %d}`, int(tr.Durations[i]*1000)))
			if r.status != 200 {
				errs <- fmt.Sprintf("request %d: %d %s", i, r.status, r.body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	eventually(t, 20*time.Second, "scale to zero", func() bool { return len(s.instances("replay")) == 0 })

	rep, err := s.c.Usage(context.Background(), client.UsageQuery{Function: "replay", From: "1h"})
	if err != nil || len(rep.Functions) != 1 {
		t.Fatalf("usage = %+v, %v", rep, err)
	}
	m := rep.Functions[0]

	// The model gets the platform's parameters and the measured cold start.
	// The trace's span is stretched so the last keep-warm tail ends inside it.
	coldStart := time.Duration(m.Seconds.Loading / float64(m.Starts) * float64(time.Second))
	tr.Span = tr.Arrivals[len(tr.Arrivals)-1] + service + idle.Seconds() + 5
	cat, _ := cost.DefaultCatalogue()
	res, err := cost.Estimate(cost.Inputs{
		Trace: tr, Hardware: "a100-40gb", GPUsPerInstance: 1,
		Concurrency: 1, Max: 1, Target: 1, IdleTimeout: idle, ColdStart: coldStart,
	}, cat, cost.EngineSimulate)
	if err != nil {
		t.Fatal(err)
	}
	var modelUSD float64
	for _, o := range res.Options {
		if o.Offer == "ember-a100-40gb" {
			modelUSD = o.MonthlyUSD * tr.Span / cost.Month.Seconds() // the month scaled back to the trace
		}
	}
	sec := res.Usage.Seconds
	scale := tr.Span / cost.Month.Seconds()
	t.Logf("metered: %d starts, loading %.2f busy %.2f idle %.2f s, $%.5f", m.Starts, m.Seconds.Loading, m.Seconds.Busy, m.Seconds.Idle, m.CostUSD)
	t.Logf("model:   %.0f starts, loading %.2f busy %.2f idle %.2f s, $%.5f", res.Usage.Starts*scale,
		sec.Loading*scale, sec.Busy*scale, sec.Idle*scale, modelUSD)
	if math.Abs(m.CostUSD-modelUSD) > 0.05*modelUSD {
		t.Errorf("metered cost $%.5f vs cost model $%.5f on the same trace: off by %.1f%%, want within 5%%",
			m.CostUSD, modelUSD, 100*(m.CostUSD-modelUSD)/modelUSD)
	}
}
