package e2e

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/cost"
)

// hostedPrice is the catalogue's price of one instance-second of Ember's
// own hardware class hw (one GPU).
func hostedPrice(t *testing.T, hw string) float64 {
	t.Helper()
	cat, err := cost.DefaultCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cat.ForHardware(hw) {
		if o.Kind == cost.KindHosted {
			return o.PerSecond()
		}
	}
	t.Fatalf("no hosted offer for %s in the default catalogue", hw)
	return 0
}

// stoppedAt finds when the server logged that instance id stopped. The
// text log's time has millisecond precision.
func (s *server) stoppedAt(id string) (time.Time, bool) {
	re := regexp.MustCompile(`time=(\S+) level=\S+ msg="instance stopped".* instance=` + regexp.QuoteMeta(id) + `\b`)
	m := re.FindStringSubmatch(s.logs.String())
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, m[1])
	return t, err == nil
}

func within(got, want, rel float64) bool { return math.Abs(got-want) <= rel*math.Abs(want) }

// TestMeteringMatchesTimeline drives a scripted load on a real sim function
// and checks that metered loading/busy/idle seconds match the instance's
// own timeline (start, ready, requests, stop) within 1 %, and that the cost
// is the catalogue price × seconds.
func TestMeteringMatchesTimeline(t *testing.T) {
	// resources.gpu here prices the a100 class; no GPU is needed to meter it.
	s := startServer(t, "", "--gpus", "off")
	beforeDeploy := time.Now()
	s.deploy(simSpec("meter", "{min: 0, max: 1, concurrency: 1, idle_timeout: 1s}",
		"env: {SIM_START_DELAY: 300ms}",
		"resources: {gpu: {type: a100-40gb, count: 1}}"))

	// Scripted load: one cold request, then warm ones with idle gaps between.
	const n, workMs = 5, 400
	var busy float64 // seconds requests spent on the instance, seen from outside
	var id string
	for i := range n {
		r := s.call("POST", "/v1/run/meter/predict", fmt.Sprintf(`{"sleep_ms": %d}`, workMs))
		if r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
		if cold := r.header.Get(api.HeaderColdStart) == "true"; cold != (i == 0) {
			t.Errorf("request %d cold = %v", i, cold)
		}
		queueMs, _ := strconv.ParseFloat(r.header.Get(api.HeaderQueueMs), 64)
		busy += r.elapsed.Seconds() - queueMs/1000
		if id == "" {
			id = r.header.Get(api.HeaderInstance)
		} else if got := r.header.Get(api.HeaderInstance); got != id {
			t.Fatalf("request %d went to %s, want the one instance %s", i, got, id)
		}
		if i > 0 {
			// A warm request's cost header is its time on an A100 at the hosted rate.
			usd, err := strconv.ParseFloat(r.header.Get(api.HeaderCost), 64)
			want := float64(workMs) / 1000 * hostedPrice(t, "a100-40gb")
			if err != nil || !within(usd, want, 0.15) {
				t.Errorf("request %d %s = %q, want about %g", i, api.HeaderCost, r.header.Get(api.HeaderCost), want)
			}
		}
		time.Sleep(150 * time.Millisecond) // scripted idle gap between requests
	}
	ins := s.instances("meter")
	if len(ins) != 1 || ins[0].ReadyAt == nil {
		t.Fatalf("instances = %+v, want the one ready instance", ins)
	}
	started, ready := ins[0].StartedAt, *ins[0].ReadyAt
	eventually(t, 10*time.Second, "scale to zero", func() bool { return len(s.instances("meter")) == 0 })
	stopped, ok := s.stoppedAt(id)
	if !ok {
		t.Fatalf("no 'instance stopped' log line for %s", id)
	}

	rep, err := s.c.Usage(context.Background(), client.UsageQuery{Function: "meter", From: "1h"})
	existed := time.Since(beforeDeploy).Seconds() // at most: deploy to the answer
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Functions) != 1 {
		t.Fatalf("usage functions = %+v, want one", rep.Functions)
	}
	u := rep.Functions[0]
	life := stopped.Sub(started).Seconds()
	timeline := api.UsageSeconds{
		Loading: ready.Sub(started).Seconds(),
		Busy:    busy,
		Idle:    life - ready.Sub(started).Seconds() - busy,
	}
	t.Logf("timeline %+v (life %.3fs); metered %+v", timeline, life, u.Seconds)
	for _, c := range []struct {
		state     string
		got, want float64
	}{
		{"loading", u.Seconds.Loading, timeline.Loading},
		{"busy", u.Seconds.Busy, timeline.Busy},
		{"idle", u.Seconds.Idle, timeline.Idle},
		{"total", u.Seconds.Loading + u.Seconds.Busy + u.Seconds.Idle, life},
	} {
		// The client's view of busy time includes each request's trip
		// through the loopback stack and the HTTP client, which grows on a
		// loaded machine; allow 1% or 15 ms per request, whichever is more.
		tol := max(0.01*math.Abs(c.want), n*0.015)
		if math.Abs(c.got-c.want) > tol {
			t.Errorf("%s seconds = %.4f, want %.4f ± %.3f s (instance timeline)", c.state, c.got, c.want, tol)
		}
	}
	total := u.Seconds.Loading + u.Seconds.Busy + u.Seconds.Idle
	if want := total * hostedPrice(t, "a100-40gb"); !within(u.CostUSD, want, 1e-9) {
		t.Errorf("cost = %g, want catalogue price × seconds = %g", u.CostUSD, want)
	}
	if !within(u.GPUSeconds, total, 1e-9) {
		t.Errorf("gpu seconds = %g, want %g (one GPU)", u.GPUSeconds, total)
	}
	if u.Hardware != "a100-40gb" || u.Requests != n || u.ColdStarts != 1 || u.Starts != 1 || !within(u.ColdStartShare, 1.0/n, 1e-9) {
		t.Errorf("usage = %+v, want a100-40gb, %d requests, 1 cold, 1 start", u.UsageFigures, n)
	}
	names := map[string]float64{}
	for _, a := range u.Alternatives {
		names[a.Name] = a.CostUSD
	}
	if v, ok := names["ember ember-a100-40gb"]; !ok || !within(v, u.CostUSD, 1e-9) {
		t.Errorf("hosted alternative = %v, want the metered cost %g (same price, same billed states)", v, u.CostUSD)
	}
	// An always-on fleet would have run only while the function existed
	// (deployed seconds ago), not for the whole hour asked: one p4d unit
	// ($32/h) for at least the instance's life, at most deploy → now.
	if v, ok := names["always-on aws-p4d.24xlarge"]; !ok || v < 32.0/3600*life*0.99 || v > 32.0/3600*existed*1.01 {
		t.Errorf("always-on p4d = $%v, want one unit for the %.1f–%.1f s the function existed ($%.4f–%.4f)",
			v, life, existed, 32.0/3600*life, 32.0/3600*existed)
	}
	if _, ok := names["serverless replicate-like-a100-40gb"]; !ok {
		t.Errorf("alternatives %v lack the Replicate-like offer", names)
	}
}
