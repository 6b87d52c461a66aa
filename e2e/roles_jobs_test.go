package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/jobs"
)

// The tests in this file run the roles as real processes (two `ember
// gateway`, one or two `ember controller` leader elected on a Lease of
// the dev cluster's API server, one PostgreSQL database) with the local
// process driver and the sim as the function: what they prove is in the
// gateways, the jobs tables and the Lease, which real Pods would only make
// slower (TestKube* cover the Pods).

// completedHooks is a webhook receiver that records, per prediction, the
// distinct webhook-ids of its "completed" deliveries and how many
// deliveries came in all (the same id twice is a redelivery, allowed).
type completedHooks struct {
	srv *httptest.Server
	mu  sync.Mutex
	ids map[string]map[string]int // prediction → webhook-id → deliveries
}

func newCompletedHooks(t *testing.T) *completedHooks {
	h := &completedHooks{ids: map[string]map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var p api.Prediction
		if r.Header.Get("Ember-Webhook-Event") == "completed" && json.Unmarshal(body, &p) == nil {
			h.mu.Lock()
			if h.ids[p.ID] == nil {
				h.ids[p.ID] = map[string]int{}
			}
			h.ids[p.ID][r.Header.Get(jobs.HeaderWebhookID)]++
			h.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *completedHooks) jobs() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ids)
}

// execCounts reads the sim's --exec-log: executions per input id.
func execCounts(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		if id, _, ok := strings.Cut(line, " "); ok {
			n[id]++
		}
	}
	return n
}

// claimedByLog sums the jobs a server's log says it claimed from a
// worker that stopped renewing ("claimed jobs no worker held" count=N).
func claimedByLog(log string) int {
	n := 0
	for _, m := range regexp.MustCompile(`claimed jobs no worker held.* count=(\d+)`).FindAllStringSubmatch(log, -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// TestRolesJobsSurviveKills: 200 Replicate-style predictions, each with a
// "completed" webhook, submitted over two gateways (job lease 3 s, so a
// dead gateway's jobs are claimed 3 s after its last heartbeat). Mid-run
// gateway 2 and the controller leader are SIGKILLed together. Through the
// surviving gateway: every job is terminal and succeeded (0 lost); every
// job has exactly one "completed" outbox entry in its delivery history and
// the receiver saw exactly one distinct completed webhook-id per job (0
// completed twice; redeliveries of one id are counted, allowed). The sim
// logs each execution to a file that outlives its instance, so
// re-executions (after the lost lease, or after the leader's instances
// died under a running job) are counted and logged.
func TestRolesJobsSurviveKills(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	re := newRolesEnv(t)
	c1, c2 := re.controllers(t)
	g1, g2 := re.gateways(t, "--webhook-allow", "127.0.0.1/32", "--job-lease", "3s")
	hooks := newCompletedHooks(t)
	execLog := filepath.Join(t.TempDir(), "executions.log")

	g1.deploy(simSpec("kjobs", "{min: 0, max: 4, concurrency: 8, queue: 400, idle_timeout: 60s}",
		"retries: 3", "env: {SIM_EXEC_LOG: "+execLog+"}"))
	eventually(t, 10*time.Second, "gateway 2 has kjobs", func() bool { return g2.call("GET", "/v1/functions/kjobs", "").status == 200 })

	const n = 200
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 8 { // 8 submitters, alternating gateways
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				gw := []*server{g1, g2}[i%2]
				p, err := gw.c.CreatePrediction(context.Background(), api.PredictionRequest{
					Model:   "kjobs",
					Input:   json.RawMessage(fmt.Sprintf(`{"id": "job-%d", "echo": %d, "sleep_ms": 1000}`, i, i)),
					Webhook: hooks.srv.URL, WebhookEventsFilter: []string{"completed"},
				}, client.PredictionOptions{})
				if err != nil {
					errs <- fmt.Errorf("submit %d via %s: %w", i, gw.addr, err)
					continue
				}
				ids[i] = p.ID
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Kill mid-run: some jobs done, most not (200 jobs of 1 s on 32
	// slots take about 7 s).
	eventually(t, 60*time.Second, "the first 10 completed webhooks", func() bool { return hooks.jobs() >= 10 })
	g2.cmd.Process.Kill()
	c1.cmd.Process.Kill()
	<-g2.done
	<-c1.done
	killedAt := hooks.jobs()
	t.Logf("gateway 2 and the leader SIGKILLed after %d of %d completed webhooks", killedAt, n)
	if killedAt > n/2 {
		t.Fatalf("the kills came after %d of %d jobs completed: not mid-run", killedAt, n)
	}
	eventually(t, 15*time.Second, "ctl-2 leads", func() bool { return c2.leads(re.token) })

	// 0 lost: every job terminal, read through the surviving gateway.
	final := map[string]api.Prediction{}
	eventually(t, 180*time.Second, "every job terminal on gateway 1", func() bool {
		for _, id := range ids {
			if _, ok := final[id]; ok {
				continue
			}
			p, err := g1.c.Prediction(context.Background(), id, 0)
			if err != nil {
				t.Fatalf("get %s on gateway 1: %v", id, err)
			}
			switch p.Status {
			case api.PredictionSucceeded, api.PredictionFailed, api.PredictionCanceled, api.PredictionAborted:
				final[id] = p
			}
		}
		return len(final) == n
	})
	// A delivery in flight on the dead gateway is sent again once its
	// outbox hold (2 min) ends.
	eventually(t, 180*time.Second, "a completed webhook for every job", func() bool { return hooks.jobs() == n })

	lost, twice, redelivered := 0, 0, 0
	for i, id := range ids {
		p := final[id]
		if p.Status != api.PredictionSucceeded {
			lost++
			t.Errorf("job-%d (%s): %s (%v), want succeeded", i, id, p.Status, p.Error)
		}
		// The store's history: one "completed" outbox entry per job
		// (a second terminal transition would enqueue a second one).
		entries := 0
		for _, d := range p.WebhookDeliveries {
			if d.Event == "completed" {
				entries++
			}
		}
		if entries != 1 {
			twice++
			t.Errorf("job-%d (%s): %d completed outbox entries, want 1: %+v", i, id, entries, p.WebhookDeliveries)
		}
	}
	hooks.mu.Lock()
	for i, id := range ids {
		if len(hooks.ids[id]) != 1 {
			twice++
			t.Errorf("job-%d (%s): %d distinct completed webhook ids, want 1: %v", i, id, len(hooks.ids[id]), hooks.ids[id])
		}
		for _, k := range hooks.ids[id] {
			redelivered += k - 1
		}
	}
	hooks.mu.Unlock()

	execs := execCounts(t, execLog)
	total, reexec, reexecJobs := 0, 0, 0
	for i := range n {
		k := execs[fmt.Sprintf("job-%d", i)]
		if k == 0 {
			t.Errorf("job-%d never executed on an instance", i)
		}
		total += k
		if k > 1 {
			reexec += k - 1
			reexecJobs++
		}
	}
	claimed := claimedByLog(g1.logs.String())
	if claimed == 0 {
		t.Errorf("gateway 1 claimed none of gateway 2's jobs after its lease ended")
	}
	t.Logf("jobs: %d submitted, %d lost, %d completed twice; %d executions, %d re-executions over %d jobs; "+
		"gateway 1 claimed %d jobs from the dead gateway's leases; %d duplicate deliveries of a completed webhook id",
		n, lost, twice, total, reexec, reexecJobs, claimed, redelivered)
}
