package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRolesRouteQPSAcrossGateways: a qps route with threshold 4 called
// at 3/s through each of two `ember gateway` processes. Neither alone
// crosses the threshold; their total (6/s) does. Each gateway reports its
// route calls to the leader, which tells the other, so both switch to
// persistent with a reason naming the total rate.
func TestRolesRouteQPSAcrossGateways(t *testing.T) {
	kubeconfig := kubeconfigForRoles(t)
	token, env := clusterEnv(postgresDSN(t))
	kube := []string{"--kubeconfig", kubeconfig, "--kube-namespace", "default", "--lease-name", "ember-e2e-" + token[:8]}
	c := startController(t, "ctl-1", env, kube...)
	eventually(t, 30*time.Second, "ctl-1 leads", func() bool { return c.leads(token) })
	g1 := startRole(t, "gateway", "", env, kube...)
	g2 := startPeerRole(t, g1, env, kube...)

	ext := startExternal(t) // both targets: the same sim by two names
	spec := `{"name": "chat", "targets": {"persistent": {"url": "` + ext + `"}, "serverless": {"url": "` + strings.Replace(ext, "127.0.0.1", "localhost", 1) + `"}},
		"policy": {"type": "qps", "threshold": 4, "window": "10s", "hold": "1ms"}}`
	if r := g1.call("POST", "/v1/routes", spec); r.status != 201 {
		t.Fatalf("apply route: %d %s", r.status, r.body)
	}
	eventually(t, 10*time.Second, "gateway 2 has the route", func() bool { return g2.call("GET", "/v1/routes/chat", "").status == 200 })

	// 3 calls/s through each gateway until the test ends.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent [2]atomic.Int64
	var failed atomic.Value
	start := time.Now()
	for i, gw := range []*server{g1, g2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / 3)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if st := tryCall(gw, "/v1/run/chat/predict", `{"sleep_ms":1}`); st != 200 {
					failed.Store(st)
				}
				sent[i].Add(1)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	type status struct {
		Status struct {
			Choice string  `json:"choice"`
			Reason string  `json:"reason"`
			QPS    float64 `json:"qps"`
		} `json:"status"`
	}
	var seen [2]status
	eventually(t, 40*time.Second, "both gateways route chat to persistent", func() bool {
		for i, gw := range []*server{g1, g2} {
			r := gw.call("GET", "/v1/routes/chat", "")
			if r.status != 200 || json.Unmarshal(r.body, &seen[i]) != nil || seen[i].Status.Choice != "persistent" {
				return false
			}
		}
		return true
	})
	elapsed := time.Since(start).Seconds()
	for i := range seen {
		own := float64(sent[i].Load()) / elapsed
		st := seen[i].Status
		if own >= 4 {
			t.Errorf("gateway %d sent %.2f calls/s, want < 4 (each alone below the threshold)", i+1, own)
		}
		if !strings.HasPrefix(st.Reason, "above_threshold") || st.QPS <= 4 || st.QPS <= own+1 {
			t.Errorf("gateway %d: %+v, want above_threshold at the total rate (> 4 qps; it sent %.2f/s itself)", i+1, st, own)
		}
		t.Logf("gateway %d: sent %.2f calls/s itself; route status %q at %.2f qps", i+1, own, st.Reason, st.QPS)
	}
	// A call takes the decision of the last second (the status shows
	// what the next decision gives): calls follow within a second.
	for i, gw := range []*server{g1, g2} {
		eventually(t, 5*time.Second, fmt.Sprintf("a call through gateway %d goes to persistent", i+1), func() bool {
			r := gw.call("POST", "/v1/run/chat/predict", `{"sleep_ms":1}`)
			return r.status == 200 && r.header.Get("Ember-Route") == "persistent"
		})
	}
	if v := failed.Load(); v != nil {
		t.Errorf("a routed call failed with %v", v)
	}
}
