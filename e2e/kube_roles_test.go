package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// names returns the Pods whose names start with prefix that the recorder
// ever saw, and those live now (not yet deleted).
func (r *podRecorder) names(prefix string) (created, live []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for n := range r.created {
		if strings.HasPrefix(n, prefix) {
			created = append(created, n)
		}
	}
	for n := range r.live {
		if strings.HasPrefix(n, prefix) {
			live = append(live, n)
		}
	}
	slices.Sort(created)
	slices.Sort(live)
	return created, live
}

// simStats sums the in flight that the running sim Pods whose names start
// with prefix report themselves (GET /stats on the Pod's address).
func (k *kubeCluster) simStats(t *testing.T, ns, prefix string) (inFlight int) {
	t.Helper()
	var addrs []string
	for _, p := range k.pods(t, ns) {
		if !strings.HasPrefix(p.Name, prefix) || p.Status.PodIP == "" || len(p.Spec.Containers) == 0 || len(p.Spec.Containers[0].Ports) == 0 {
			continue
		}
		addrs = append(addrs, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(p.Spec.Containers[0].Ports[0].ContainerPort))))
	}
	return simStatsAt(addrs)
}

// simAnswer is the sim's /predict answer: which instance served the call
// and how many calls it had in flight then, by its own count.
type simAnswer struct {
	Instance string `json:"instance"`
	InFlight int    `json:"in_flight"`
}

// TestKubeRolesOnPods runs the split roles on the real control plane with
// a real kubelet and real Pods: two `ember controller` (PostgreSQL store,
// leader elected on a Lease with short timings) and two `ember gateway`,
// all real processes with --backend kubernetes --kube-network host, and a
// container function whose image is the sim. Pods are counted by a watch
// on the API server (the pod recorder), never by Ember's own view.
//
//   - A function at min 0 gets one Pod on its first call and none after its
//     idle timeout.
//   - 100 calls split over both gateways to concurrency 4, max 8: all
//     succeed, never more than 8 Pods live, no Pod above 4 in flight (the
//     sim's count in its answer).
//   - A gateway SIGKILLed mid-burst: every call on the other succeeds.
//   - The leader SIGKILLed: the standby leads within 15 s, adopts the
//     Pods (it logs how many), and the same Pods serve; no Pod is created.
func TestKubeRolesOnPods(t *testing.T) {
	k := kubeTest(t)
	dsn := postgresDSN(t)
	ns := k.namespace(t)
	image := k.simImage(t)
	rec := k.recordPods(t, ns)
	token, env := clusterEnv(dsn)
	kube := []string{"--kubeconfig", k.kubeconfig, "--kube-namespace", ns, "--lease-name", "ember-controller",
		"--backend", "kubernetes", "--kube-network", "host"}
	timing := []string{"--lease-duration", "4s", "--lease-renew-deadline", "3s", "--lease-retry-period", "500ms"}

	c1 := startController(t, "ctl-1", env, append(kube, timing...)...)
	eventually(t, 30*time.Second, "ctl-1 leads", func() bool { return c1.leads(token) })
	c2 := startController(t, "ctl-2", env, append(kube, timing...)...)
	if c2.leads(token) {
		t.Fatal("two controllers lead")
	}
	g1 := startRole(t, "gateway", "", env, kube...)
	g2 := startPeerRole(t, g1, env, kube...)
	fn := func(name, scaling string) string {
		return fmt.Sprintf("name: %s\nruntime: container\nimage: %s\nenv: {SIM_HOST: 0.0.0.0}\nscaling: %s\n", name, image, scaling)
	}

	// From zero to one Pod and back.
	g1.deploy(fn("kzero", "{min: 0, max: 1, idle_timeout: 2s}"))
	eventually(t, 10*time.Second, "gateway 2 knows kzero", func() bool { return g2.call("GET", "/v1/functions/kzero", "").status == 200 })
	if created, _ := rec.names("ember-kzero-"); len(created) != 0 {
		t.Fatalf("Pods %v before any call, want none (min 0)", created)
	}
	cold := g2.call("POST", "/v1/run/kzero/predict", `{"echo":"hi"}`)
	if cold.status != 200 || !strings.Contains(string(cold.body), `"hi"`) {
		t.Fatalf("first call from zero through gateway 2: %d %s", cold.status, cold.body)
	}
	if warm := g1.call("POST", "/v1/run/kzero/predict", `{"echo":"again"}`); warm.status != 200 {
		t.Fatalf("warm call through gateway 1: %d %s", warm.status, warm.body)
	}
	eventually(t, 60*time.Second, "kzero's Pod deleted after its 2s idle timeout", func() bool {
		_, live := rec.names("ember-kzero-")
		return len(live) == 0
	})
	if created, _ := rec.names("ember-kzero-"); len(created) != 1 {
		t.Errorf("the API server saw kzero Pods %v, want exactly 1", created)
	}
	t.Logf("kzero: from zero through a gateway in %s, one Pod, back to zero after its idle timeout", cold.elapsed.Round(time.Millisecond))

	// A burst over both gateways; a recorder of its own counts its Pods.
	burstRec := k.recordPods(t, ns)
	g2.deploy(fn("kburst", "{concurrency: 4, max: 8, target: 1, queue: 200, idle_timeout: 120s}"))
	eventually(t, 10*time.Second, "gateway 1 knows kburst", func() bool { return g1.call("GET", "/v1/functions/kburst", "").status == 200 })
	var mu sync.Mutex
	var failures []string
	perPod := map[string]int{} // instance → the most in flight it reported
	var wg sync.WaitGroup
	burstStart := time.Now()
	for i := range 100 {
		gw := []*server{g1, g2}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := gw.call("POST", "/v1/run/kburst/predict", `{"sleep_ms":300}`)
			mu.Lock()
			defer mu.Unlock()
			var a simAnswer
			if r.status != 200 || json.Unmarshal(r.body, &a) != nil {
				failures = append(failures, fmt.Sprintf("call %d via %s: %d %s", i, gw.addr, r.status, r.body))
				return
			}
			perPod[a.Instance] = max(perPod[a.Instance], a.InFlight)
		}()
	}
	wg.Wait()
	burstTook := time.Since(burstStart)
	if len(failures) > 0 {
		t.Fatalf("%d of 100 calls failed:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	for id, n := range perPod {
		if n > 4 {
			t.Errorf("Pod of instance %s reported %d in flight, over concurrency 4", id, n)
		}
	}
	created, _ := burstRec.names("ember-kburst-")
	_, maxLive := burstRec.counts()
	if maxLive > 8 || len(perPod) > 8 {
		t.Errorf("at most %d Pods live at once, %d answered; want ≤ 8 (max 8)", maxLive, len(perPod))
	}
	t.Logf("burst: 100/100 ok in %s; Pods created %d, at most %d live at once (API server); most in flight per Pod (its own count): %v",
		burstTook.Round(time.Millisecond), len(created), maxLive, perPod)

	// Gateway 2 dies mid-burst: only its calls fail; gateway 1 serves all
	// of its own and goes on serving.
	var viaG1, viaG2 []int
	var wg2 sync.WaitGroup
	for i := range 40 {
		gw := []*server{g1, g2}[i%2]
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			st := tryCall(gw, "/v1/run/kburst/predict", `{"sleep_ms":1000}`)
			mu.Lock()
			defer mu.Unlock()
			if gw == g1 {
				viaG1 = append(viaG1, st)
			} else {
				viaG2 = append(viaG2, st)
			}
		}()
	}
	// Both gateways have calls on the Pods (each may use its half of
	// each Pod's concurrency 4).
	inFlight := 0
	eventually(t, 30*time.Second, "the second burst in flight on the Pods", func() bool {
		inFlight = k.simStats(t, ns, "ember-kburst-")
		return inFlight >= 8
	})
	g2.cmd.Process.Signal(syscall.SIGKILL)
	wg2.Wait()
	for i, st := range viaG1 {
		if st != 200 {
			t.Errorf("call %d via the surviving gateway: %d", i, st)
		}
	}
	failedG2 := 0
	for _, st := range viaG2 {
		if st != 200 {
			failedG2++
		}
	}
	if r := g1.call("POST", "/v1/run/kburst/predict", `{"sleep_ms":1}`); r.status != 200 {
		t.Errorf("gateway 1 after gateway 2 died: %d %s", r.status, r.body)
	}
	t.Logf("gateway 2 SIGKILLed mid-burst (%d calls in flight on the Pods): %d/%d calls via gateway 1 ok; %d/%d via gateway 2 failed (in flight or queued on it)",
		inFlight, len(viaG1), len(viaG1), failedG2, len(viaG2))

	// The leader dies without a word: the standby takes the Lease, adopts
	// the running Pods and serves through them; no Pod is created.
	createdBefore, liveBefore := burstRec.names("ember-kburst-")
	if len(liveBefore) == 0 {
		t.Fatal("no kburst Pod live before the leader is killed")
	}
	killed := time.Now()
	c1.cmd.Process.Signal(syscall.SIGKILL)
	<-c1.done
	eventually(t, 15*time.Second, "ctl-2 leads after ctl-1 was killed", func() bool { return c2.leads(token) })
	took := time.Since(killed)
	adoptedRE := regexp.MustCompile(`msg="adopted running instances" count=(\d+)`)
	var adopted int
	eventually(t, 30*time.Second, "ctl-2 logs its adoption", func() bool {
		m := adoptedRE.FindStringSubmatch(c2.logs.String())
		if m == nil {
			return false
		}
		adopted, _ = strconv.Atoi(m[1])
		return true
	})
	if adopted != len(liveBefore) {
		t.Errorf("ctl-2 adopted %d instances, want the %d live Pods %v", adopted, len(liveBefore), liveBefore)
	}
	served := map[string]bool{}
	var wg3 sync.WaitGroup
	for range 16 {
		wg3.Add(1)
		go func() {
			defer wg3.Done()
			r := g1.call("POST", "/v1/run/kburst/predict", `{"sleep_ms":100}`)
			var a simAnswer
			mu.Lock()
			defer mu.Unlock()
			if r.status != 200 || json.Unmarshal(r.body, &a) != nil {
				t.Errorf("call after the takeover: %d %s", r.status, r.body)
				return
			}
			served["ember-"+a.Instance] = true
		}()
	}
	wg3.Wait()
	servedAfter := time.Since(killed)
	for pod := range served {
		if !slices.Contains(liveBefore, pod) {
			t.Errorf("Pod %s served after the takeover; it was not live before (%v)", pod, liveBefore)
		}
	}
	if createdAfter, _ := burstRec.names("ember-kburst-"); len(createdAfter) != len(createdBefore) {
		t.Errorf("Pods created during the takeover: before %v, after %v; want none", createdBefore, createdAfter)
	}
	if took > 15*time.Second {
		t.Errorf("takeover took %s, want ≤ 15 s", took)
	}
	t.Logf("leader SIGKILLed: ctl-2 led after %s (lease 4s/3s/500ms), adopted %d of %d live Pods, 16/16 calls served after %s by adopted Pods %v; no Pod created",
		took.Round(time.Millisecond), adopted, len(liveBefore), servedAfter.Round(time.Millisecond), slices.Sorted(maps.Keys(served)))
}
