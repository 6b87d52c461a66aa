package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// kubeconfigForRoles returns the kubeconfig of a running API server (the
// roles need one only for their Lease), or skips.
func kubeconfigForRoles(t *testing.T) string {
	t.Helper()
	k := os.Getenv("EMBER_TEST_KUBECONFIG")
	if k == "" {
		t.Skip("EMBER_TEST_KUBECONFIG is unset: start a control plane with scripts/kube-cluster.sh and PostgreSQL with scripts/postgres-test.sh, and export the kubeconfig and DSN they print (EMBER_TEST_KUBECONFIG, EMBER_TEST_POSTGRES)")
	}
	return k
}

// ctlProc is one `ember controller` process.
type ctlProc struct {
	name, addr string
	cmd        *exec.Cmd
	logs       *syncBuffer
	done       chan struct{}
}

func startController(t *testing.T, name string, env []string, args ...string) *ctlProc {
	t.Helper()
	c := &ctlProc{name: name, addr: freeAddr(t), logs: &syncBuffer{}, done: make(chan struct{})}
	all := append([]string{"controller", "--addr", c.addr, "--data-dir", t.TempDir(), "--node-name", name,
		"--tick", "100ms", "--log-level", "debug"}, args...)
	c.cmd = exec.Command(bins.ember, all...)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("controller %s log:\n%s", name, c.logs.String())
		}
	})
	eventually(t, 30*time.Second, "controller "+name+" answers /healthz", func() bool {
		resp, err := http.Get("http://" + c.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return c
}

// leads asks a controller's internal API whether it leads (200) or not
// (503 naming the holder).
func (c *ctlProc) leads(token string) bool {
	req, _ := http.NewRequest("GET", "http://"+c.addr+"/internal/v1/endpoints?gateway=probe&wait=0s", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// metrics is the controller's GET /metrics with the API key key; it
// fails the test on anything but 200.
func (c *ctlProc) metrics(t *testing.T, key string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+c.addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("controller %s /metrics: %v", c.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("controller %s /metrics: %d %v %.200s", c.name, resp.StatusCode, err, b)
	}
	return b
}

// peakLive replays a controller's log: the most instances of fn that were
// live at once (spawned and not yet stopped or failed), in log order.
func peakLive(ctlLog, fn string) int {
	spawned := regexp.MustCompile(`msg="instance spawned".*instance\.function=` + fn + ` `)
	ended := regexp.MustCompile(`msg="instance (stopped|failed)".* function=` + fn + ` `)
	live, peak := 0, 0
	for _, line := range strings.Split(ctlLog, "\n") {
		switch {
		case spawned.MatchString(line):
			live++
			peak = max(peak, live)
		case ended.MatchString(line):
			live--
		}
	}
	return peak
}

// rolesEnv is what every role process of one test shares: a database of
// its own, a fresh cluster token and a Lease of its own on the API
// server (short timings, so a failover fits in a test).
type rolesEnv struct {
	token  string
	env    []string // EMBER_CLUSTER_TOKEN, EMBER_STORE
	kube   []string // --kubeconfig, --kube-namespace, --lease-name
	timing []string // --lease-duration 4s, --lease-renew-deadline 3s, --lease-retry-period 500ms
}

func newRolesEnv(t *testing.T) rolesEnv {
	t.Helper()
	kubeconfig := kubeconfigForRoles(t)
	token, env := clusterEnv(postgresDSN(t))
	return rolesEnv{
		token:  token,
		env:    env,
		kube:   []string{"--kubeconfig", kubeconfig, "--kube-namespace", "default", "--lease-name", "ember-e2e-" + token[:8]},
		timing: []string{"--lease-duration", "4s", "--lease-renew-deadline", "3s", "--lease-retry-period", "500ms"},
	}
}

// clusterEnv is a fresh cluster token and the environment every role of
// one test's cluster shares: the token and the PostgreSQL store dsn.
func clusterEnv(dsn string) (token string, env []string) {
	var b [16]byte
	rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	return token, []string{"EMBER_CLUSTER_TOKEN=" + token, "EMBER_STORE=" + dsn}
}

// controllers starts two controllers and waits until the first leads.
func (r rolesEnv) controllers(t *testing.T) (leader, standby *ctlProc) {
	t.Helper()
	c1 := startController(t, "ctl-1", r.env, append(r.kube, r.timing...)...)
	eventually(t, 30*time.Second, "ctl-1 leads", func() bool { return c1.leads(r.token) })
	c2 := startController(t, "ctl-2", r.env, append(r.kube, r.timing...)...)
	if c2.leads(r.token) {
		t.Fatal("two controllers lead")
	}
	return c1, c2
}

// gateways starts two gateways on one database (the second holds the
// first's admin key), each with extra flags.
func (r rolesEnv) gateways(t *testing.T, extra ...string) (*server, *server) {
	t.Helper()
	g1 := startRole(t, "gateway", "", r.env, append(r.kube, extra...)...)
	return g1, startPeerRole(t, g1, r.env, append(r.kube, extra...)...)
}

// TestRolesBurstAndFailover: PostgreSQL, two `ember controller` (leader
// elected on a Lease of a real API server) and two `ember gateway`, all
// real processes with the local process driver. A burst of 100 calls
// split over both gateways to a function with concurrency 4, max 8: all
// succeed, the leader never runs more than 8 instances, and no instance
// reports more than 4 in flight (the sim's own count). Then the leader is
// SIGKILLed: the standby takes the Lease within 15 s and the gateways
// serve through it.
func TestRolesBurstAndFailover(t *testing.T) {
	re := newRolesEnv(t)
	token, env, kube := re.token, re.env, re.kube
	c1, c2 := re.controllers(t)

	g1 := startRole(t, "gateway", "", env, kube...)
	g2 := startPeerRole(t, g1, env, kube...)
	g1.deploy(simSpec("burst", "{concurrency: 4, max: 8, target: 1, queue: 200, idle_timeout: 60s}"))
	eventually(t, 10*time.Second, "the deploy through gateway 1 is served by gateway 2", func() bool {
		r := g2.call("GET", "/v1/functions/burst", "")
		return r.status == 200
	})

	// The cold path: a call to a function at zero through a gateway (the
	// poke reaches the leader at once; the new instance reaches the
	// gateway by the long poll, not the next report).
	g2.deploy(simSpec("cold", "{max: 1, idle_timeout: 1s}"))
	eventually(t, 10*time.Second, "gateway 1 knows cold", func() bool { return g1.call("GET", "/v1/functions/cold", "").status == 200 })
	cold := g1.call("POST", "/v1/run/cold/predict", `{"sleep_ms":1}`)
	if cold.status != 200 || cold.header.Get("Ember-Cold-Start") != "true" {
		t.Fatalf("first call to cold: %d cold-start=%q %s", cold.status, cold.header.Get("Ember-Cold-Start"), cold.body)
	}
	warm := g1.call("POST", "/v1/run/cold/predict", `{"sleep_ms":1}`)
	t.Logf("from zero through a gateway: %s (Server-Timing %q); warm: %s",
		cold.elapsed.Round(time.Millisecond), cold.header.Get("Server-Timing"), warm.elapsed.Round(time.Microsecond))

	// A deploy that waits, through a gateway: the leader proves the
	// version (starts one instance at min 0) and the rollout the gateway
	// shows is the leader's.
	r := g2.call("POST", "/v1/functions?wait=true", simSpec("proved", "{max: 1}"))
	if r.status != 201 {
		t.Fatalf("deploy with wait: %d %s", r.status, r.body)
	}
	eventually(t, 15*time.Second, "the rollout of proved is ready through gateway 2", func() bool {
		r := g2.call("GET", "/v1/functions/proved/rollout", "")
		var ro struct {
			Ready int `json:"ready"`
		}
		json.Unmarshal(r.body, &ro)
		return r.status == 200 && ro.Ready >= 1
	})

	type answer struct {
		Instance string `json:"instance"`
		InFlight int    `json:"in_flight"`
	}
	var mu sync.Mutex
	var failures []string
	perInstance := map[string]int{} // instance → most in flight it reported
	var wg sync.WaitGroup
	for i := range 100 {
		gw := []*server{g1, g2}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := gw.call("POST", "/v1/run/burst/predict", `{"sleep_ms":300}`)
			mu.Lock()
			defer mu.Unlock()
			if r.status != 200 {
				failures = append(failures, fmt.Sprintf("call %d via %s: %d %s", i, gw.addr, r.status, r.body))
				return
			}
			var a answer
			if err := json.Unmarshal(r.body, &a); err != nil {
				failures = append(failures, fmt.Sprintf("call %d: %v: %s", i, err, r.body))
				return
			}
			perInstance[a.Instance] = max(perInstance[a.Instance], a.InFlight)
		}()
	}
	wg.Wait()
	peak := peakLive(c1.logs.String(), "burst")
	if len(failures) > 0 {
		t.Fatalf("%d of 100 calls failed:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	for id, n := range perInstance {
		if n > 4 {
			t.Errorf("instance %s reported %d in flight, over concurrency 4", id, n)
		}
	}
	if len(perInstance) > 8 || peak > 8 {
		t.Errorf("%d instances answered, %d were live at most at once; want ≤ 8", len(perInstance), peak)
	}
	t.Logf("burst: 100/100 ok over %d instances (most live at once on the leader: %d); most in flight on one instance: %v",
		len(perInstance), peak, perInstance)

	// A gateway dies mid-burst: only the calls in flight on it fail; the
	// other serves all of its own (with half the shares until the leader
	// drops the dead one, then all of them).
	var viaG1 []int
	var g1mu sync.Mutex
	var wg2 sync.WaitGroup
	for i := range 40 {
		gw := []*server{g1, g2}[i%2]
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			status := tryCall(gw, "/v1/run/burst/predict", `{"sleep_ms":500}`)
			if gw == g1 {
				g1mu.Lock()
				viaG1 = append(viaG1, status)
				g1mu.Unlock()
			}
		}()
	}
	eventually(t, 10*time.Second, "the burst in flight on the instances", func() bool {
		return simInFlight(c1.logs.String()) >= 20
	})
	g2.cmd.Process.Signal(syscall.SIGKILL)
	wg2.Wait()
	for i, st := range viaG1 {
		if st != 200 {
			t.Errorf("call %d via the surviving gateway: %d", i, st)
		}
	}
	eventually(t, 10*time.Second, "gateway 1 serves after gateway 2 died", func() bool {
		return g1.call("POST", "/v1/run/burst/predict", `{"sleep_ms":1}`).status == 200
	})
	t.Logf("gateway 2 SIGKILLed mid-burst: %d/%d calls via gateway 1 succeeded", len(viaG1), len(viaG1))

	// Back to zero: the leader stops cold's instance once no gateway has
	// used it for its idle timeout.
	eventually(t, 15*time.Second, "cold scaled back to zero on the leader", func() bool {
		return regexp.MustCompile(`instance stopped.*function=cold .*reason="idle for 1s"`).MatchString(c1.logs.String())
	})

	// The leader dies without a word: the standby takes the Lease once
	// it expires, and the gateways find it there.
	killed := time.Now()
	c1.cmd.Process.Signal(syscall.SIGKILL)
	<-c1.done
	eventually(t, 15*time.Second, "ctl-2 leads after ctl-1 was killed", func() bool { return c2.leads(token) })
	took := time.Since(killed)
	var served time.Duration
	eventually(t, 30*time.Second, "a call through the gateway succeeds on the new leader", func() bool {
		return g1.call("POST", "/v1/run/burst/predict", `{"sleep_ms":1}`).status == 200
	})
	served = time.Since(killed)
	if took > 15*time.Second {
		t.Errorf("takeover took %s, want ≤ 15 s", took)
	}
	t.Logf("leader SIGKILLed: standby led after %s, the gateway served after %s (lease 4s/3s/500ms)",
		took.Round(time.Millisecond), served.Round(time.Millisecond))
}

// tryCall POSTs body to gw and returns the status, or 0 when the gateway
// went away (the calls on a killed gateway fail so).
func tryCall(gw *server, path, body string) int {
	req, _ := http.NewRequest("POST", gw.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+gw.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// simInFlight sums the in flight the sim instances a controller logged
// report themselves (GET /stats).
func simInFlight(ctlLog string) int {
	var addrs []string
	for _, m := range regexp.MustCompile(`instance ready.*instance\.addr=(127\.0\.0\.1:\d+)`).FindAllStringSubmatch(ctlLog, -1) {
		if !slices.Contains(addrs, m[1]) {
			addrs = append(addrs, m[1])
		}
	}
	return simStatsAt(addrs)
}

// simStatsAt sums the in flight that the sims at addrs report themselves
// (GET /stats); one that does not answer counts none.
func simStatsAt(addrs []string) (inFlight int) {
	c := http.Client{Timeout: 2 * time.Second}
	for _, addr := range addrs {
		resp, err := c.Get("http://" + addr + "/stats")
		if err != nil {
			continue
		}
		var st struct {
			InFlight int `json:"in_flight"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		inFlight += st.InFlight
	}
	return inFlight
}

// startPeerRole is startPeer for `ember gateway`.
func startPeerRole(t *testing.T, first *server, env []string, extra ...string) *server {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin.key"), []byte(first.key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startRole(t, "gateway", dir, env, extra...)
}
