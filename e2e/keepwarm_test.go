package e2e

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
)

// TestKeepWarmAutoLearnsPeriod: a function with idle_timeout: auto, called
// every 2 s, learns the period from its idle times, serves the later calls
// warm, and after the last call stops sooner than a fixed 10 s window that
// would also have kept every call warm, so metering shows fewer idle
// seconds than that window would have spent. The learned histogram
// survives a restart.
func TestKeepWarmAutoLearnsPeriod(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	s.deploy(simSpec("kw", "{min: 0, max: 1, concurrency: 1, idle_timeout: auto}", "env: {SIM_START_DELAY: 200ms}"))

	const n, period = 11, 2 * time.Second
	var ends, starts []time.Time
	for i := range n {
		start := time.Now()
		r := s.call("POST", "/v1/run/kw/predict", `{"sleep_ms": 50}`)
		if r.status != 200 {
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
		starts, ends = append(starts, start), append(ends, time.Now())
		if cold := r.header.Get(api.HeaderColdStart) == "true"; cold != (i == 0) {
			t.Errorf("call %d cold = %v, want only the first cold", i, cold)
		}
		time.Sleep(time.Until(start.Add(period))) // the scripted load: one call every 2 s
	}
	f, err := s.c.Function(context.Background(), "kw")
	if err != nil {
		t.Fatal(err)
	}
	k := f.Status.KeepWarm
	if k == nil || k.Fallback != "" || k.Samples < 5 || k.KeepAliveS <= 0 || k.KeepAliveS >= 10 {
		t.Fatalf("keep_warm = %+v, want a learned keep-alive under 10s", k)
	}
	if k.Predicted < 3 || k.Avoided < int64(n-2) {
		t.Errorf("keep_warm = %+v, want the later arrivals predicted and served warm", k)
	}
	eventually(t, 15*time.Second, "scale to zero after the learned window", func() bool { return len(s.instances("kw")) == 0 })

	// What a fixed 10 s window would have kept idle: every gap (all under
	// 10 s) and 10 s after the last call.
	fixed := 10.0
	for i := 1; i < n; i++ {
		fixed += starts[i].Sub(ends[i-1]).Seconds()
	}
	rep, err := s.c.Usage(context.Background(), client.UsageQuery{Function: "kw", From: "1h"})
	if err != nil || len(rep.Functions) != 1 {
		t.Fatalf("usage = %+v, %v", rep, err)
	}
	idle := rep.Functions[0].Seconds.Idle
	t.Logf("idle seconds: auto %.1f, fixed 10s window %.1f; %s", idle, fixed, k.Reason)
	if idle >= fixed-3 {
		t.Errorf("auto spent %.1f idle seconds, want at least 3 fewer than a fixed 10s window (%.1f)", idle, fixed)
	}

	// The histogram survives a restart.
	s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done
	s2 := startServer(t, dir)
	eventually(t, 5*time.Second, "restored keep-warm state", func() bool {
		f, err := s2.c.Function(context.Background(), "kw")
		return err == nil && f.Status.KeepWarm != nil && f.Status.KeepWarm.Samples >= k.Samples && f.Status.KeepWarm.Fallback == ""
	})
}
