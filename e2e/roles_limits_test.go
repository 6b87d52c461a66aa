package e2e

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// statusAs POSTs body to gw with key and returns the status, 0 when the
// call did not complete (safe off the test goroutine).
func statusAs(gw *server, key, path, body string) int {
	req, _ := http.NewRequest("POST", gw.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRolesRateLimitTotal: a key limited to 10/s (burst 10) hammered
// through both gateways at once for a fixed window is allowed about
// rate × window + burst in total, as one server would allow, and clearly
// below the 2× that two gateways each enforcing the whole limit would
// allow. Each gateway enforces rate/N, burst/N with N = 2 from the leader
// (the gateway logs when N changes; the window starts after both did).
// Local process driver and the sim, as in roles_jobs_test.go.
func TestRolesRateLimitTotal(t *testing.T) {
	re := newRolesEnv(t)
	startController(t, "ctl-1", re.env, append(re.kube, re.timing...)...)
	g1, g2 := re.gateways(t)
	bothJoined(t, g1, g2)
	g1.deploy(simSpec("rl", "{min: 1, max: 1, concurrency: 64}"))
	eventually(t, 15*time.Second, "both gateways serve rl", func() bool {
		return g1.call("POST", "/v1/run/rl/predict", `{}`).status == 200 && g2.call("POST", "/v1/run/rl/predict", `{}`).status == 200
	})
	const rate, burst, window = 10, 10, 6 * time.Second
	k, err := g1.c.CreateKey(context.Background(), api.KeyCreate{Name: "rl", Scope: "invoke", Rate: "10/s", Burst: burst})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "gateway 2 knows the key", func() bool {
		return statusAs(g2, k.Secret, "/v1/run/nosuchfn/predict", `{}`) != http.StatusUnauthorized
	})
	// That probe may have taken a token on gateway 2 (it answers 404
	// after the limit): the bound below allows for it.

	// Each gateway is offered 100 calls/s (10× the whole limit) by 4
	// clients paced by one ticker, for the window.
	var mu sync.Mutex
	counts := map[int]int{}
	perGateway := map[string]int{}
	end := time.Now().Add(window)
	var wg sync.WaitGroup
	for _, g := range []*server{g1, g2} {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range tick.C {
					if time.Now().After(end) {
						return
					}
					st := statusAs(g, k.Secret, "/v1/run/rl/predict", `{}`)
					mu.Lock()
					counts[st]++
					if st == 200 {
						perGateway[g.addr]++
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	ok, limited := counts[200], counts[http.StatusTooManyRequests]
	want := rate*int(window/time.Second) + burst
	t.Logf("key at %d/s burst %d over %s through 2 gateways: %d allowed (%v per gateway), %d refused with 429, others %v; want ≈ %d",
		rate, burst, window, ok, perGateway, limited, counts, want)
	for st, c := range counts {
		if st != 200 && st != http.StatusTooManyRequests {
			t.Errorf("%d answers %d, want only 200 and 429", c, st)
		}
	}
	if limited == 0 {
		t.Fatal("no call was refused: the load did not reach the limit")
	}
	// ±25 %: the window's edges and the pacing of the clients; the
	// per-gateway failure mode allows 2 × want.
	if lo, hi := want*3/4, want*5/4; ok < lo || ok > hi {
		t.Errorf("%d calls allowed, want %d ± 25 %% ([%d, %d]); per gateway %v", ok, want, lo, hi, perGateway)
	}
	if ok >= 2*want*4/5 {
		t.Errorf("%d calls allowed: near 2 × %d, each gateway enforces the whole limit", ok, want)
	}
}

// TestRolesDeployVisibleWithin1s: a deploy through gateway A is served by
// gateway B within 1 s, the change reaching B by PostgreSQL LISTEN/NOTIFY
// (--store-poll 10s on both, so the fallback read cannot explain it).
// Twice: the first deploy (B learns the function and the leader's
// instance), then a redeploy (B serves the new version's answer). Each
// deploy waits (?wait=true) until the leader proved the version on an
// instance, so what is timed is the path to B, not an instance's start.
// Local process driver and the sim.
func TestRolesDeployVisibleWithin1s(t *testing.T) {
	re := newRolesEnv(t)
	startController(t, "ctl-1", re.env, append(re.kube, re.timing...)...)
	a, b := re.gateways(t, "--store-poll", "10s")
	// The claim is about running gateways: each has its store watch
	// listening and the leader's state (it logs N = 2 only after both).
	bothJoined(t, a, b)
	for i, tag := range []string{"one", "two"} {
		r := a.call("POST", "/v1/functions?wait=true", simSpec("vis", "{min: 0, max: 1, idle_timeout: 60s}", "env: {TAG: "+tag+"}"))
		if r.status != 201 && r.status != 200 {
			t.Fatalf("deploy %s through A: %d %s", tag, r.status, r.body)
		}
		deployed := time.Now()
		var seen, served time.Duration
		eventually(t, time.Second, "B serves "+tag+" within 1s of the deploy through A", func() bool {
			if seen == 0 {
				if fn, err := b.c.Function(context.Background(), "vis"); err == nil && fn.Version == int64(i+1) {
					seen = time.Since(deployed)
				}
			}
			// The sim's /whoami answers with its environment: TAG says
			// which version's instance served.
			// Each call ends with the 1 s, so a call that waits
			// (for an instance the leader never starts) fails the
			// test rather than hanging it.
			ctx, cancel := context.WithDeadline(context.Background(), deployed.Add(time.Second))
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", b.url+"/v1/run/vis/whoami", strings.NewReader(`{}`))
			req.Header.Set("Authorization", "Bearer "+b.key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			ok := resp.StatusCode == 200 && strings.Contains(string(body), "TAG="+tag)
			if ok {
				served = time.Since(deployed)
				if seen == 0 {
					seen = served
				}
			}
			return ok
		})
		t.Logf("deploy %q through A: B had the version after %s, served it after %s (deploy call took %s)",
			tag, seen.Round(time.Millisecond), served.Round(time.Millisecond), r.elapsed.Round(time.Millisecond))
	}
}

// bothJoined waits until each gateway has had the leader's answer counting
// both: a gateway logs the change of N from its report loop, which starts
// after its store watch listens.
func bothJoined(t *testing.T, gs ...*server) {
	t.Helper()
	for _, g := range gs {
		eventually(t, 15*time.Second, "gateway "+g.addr+" splits limits over 2", func() bool {
			return regexp.MustCompile(`live gateways changed.* gateways=2 `).MatchString(g.logs.String())
		})
	}
}
