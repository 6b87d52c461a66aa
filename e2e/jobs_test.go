package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/jobs"
)

func TestJobScalesFromZeroAndCompletes(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("asyncsim", "{min: 0, max: 2, concurrency: 2}"))
	p, err := s.c.CreatePrediction(context.Background(), api.PredictionRequest{Model: "asyncsim", Input: json.RawMessage(`{"echo": "done", "sleep_ms": 100}`)}, client.PredictionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != api.PredictionStarting || p.URLs.Get == "" {
		t.Errorf("created prediction = %+v, want status starting with urls", p)
	}
	final, err := s.c.WaitPrediction(context.Background(), p.ID, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var out predictOut // the instance's whole JSON answer is the output
	if final.Status != api.PredictionSucceeded || json.Unmarshal(final.Output, &out) != nil || string(out.Output) != `"done"` {
		t.Fatalf("final = %s output %s error %v, want succeeded with \"done\"", final.Status, final.Output, final.Error)
	}
	if !final.Metrics.ColdStart {
		t.Errorf("metrics.cold_start = %v, want true (the function was at zero)", final.Metrics.ColdStart)
	}
	// Prefer: wait returns the finished prediction in one call.
	r, err := s.c.CreatePrediction(context.Background(), api.PredictionRequest{Model: "asyncsim", Input: json.RawMessage(`{"echo": 2}`)}, client.PredictionOptions{Wait: 10 * time.Second})
	if err != nil || r.Status != api.PredictionSucceeded {
		t.Errorf("Prefer: wait → %s, %v; want succeeded", r.Status, err)
	}
}

// TestJobsSurviveSIGKILL submits 200 jobs, kills the server mid-way with
// SIGKILL, restarts it, and checks every job ends exactly once: each job is
// terminal and its "completed" webhook came from one completion only.
func TestJobsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	var mu sync.Mutex
	completions := map[string]map[string]bool{} // job id → webhook ids of completed events
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Ember-Webhook-Event") == "completed" {
			var p api.Prediction
			if json.Unmarshal(body, &p) == nil {
				mu.Lock()
				if completions[p.ID] == nil {
					completions[p.ID] = map[string]bool{}
				}
				completions[p.ID][r.Header.Get(jobs.HeaderWebhookID)] = true
				mu.Unlock()
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	completed := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(completions)
	}

	s := startServer(t, "", "--webhook-allow", "127.0.0.1/32") // the receiver is on loopback
	s.deploy(simSpec("crashjobs", "{min: 0, max: 4, concurrency: 4}", "retries: 3"))
	const n = 200
	ids := make([]string, 0, n)
	var idsMu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.c.CreatePrediction(context.Background(), api.PredictionRequest{
				Model: "crashjobs", Input: json.RawMessage(fmt.Sprintf(`{"echo": %d, "sleep_ms": 40}`, i)),
				Webhook: hook.URL, WebhookEventsFilter: []string{"completed"},
			}, client.PredictionOptions{})
			if err != nil {
				t.Errorf("submit %d: %v", i, err)
				return
			}
			idsMu.Lock()
			ids = append(ids, p.ID)
			idsMu.Unlock()
		}()
	}
	wg.Wait()
	if len(ids) != n {
		t.Fatalf("accepted %d jobs, want %d", len(ids), n)
	}
	eventually(t, 60*time.Second, "some jobs to complete before the crash", func() bool { return completed() >= 20 })
	s.cmd.Process.Kill()
	<-s.done
	t.Logf("SIGKILL after %d of %d completions were delivered", completed(), n)

	s2 := startServer(t, s.dataDir, "--webhook-allow", "127.0.0.1/32")
	terminal := map[string]string{}
	eventually(t, 120*time.Second, "every job terminal after restart", func() bool {
		for _, id := range ids {
			if _, done := terminal[id]; done {
				continue
			}
			p, err := s2.c.Prediction(context.Background(), id, 0)
			if err != nil {
				t.Fatalf("get %s after restart: %v", id, err)
			}
			switch p.Status {
			case api.PredictionSucceeded, api.PredictionFailed, api.PredictionCanceled, api.PredictionAborted:
				terminal[id] = p.Status
			}
		}
		return len(terminal) == n
	})
	eventually(t, 60*time.Second, "every completed webhook delivered", func() bool { return completed() == n })
	mu.Lock()
	defer mu.Unlock()
	succeeded, doubled := 0, 0
	for _, id := range ids {
		if terminal[id] == api.PredictionSucceeded {
			succeeded++
		}
		if len(completions[id]) != 1 {
			doubled++
			t.Errorf("job %s completed %d times (webhook ids %v)", id, len(completions[id]), completions[id])
		}
	}
	t.Logf("%d jobs: %d terminal (%d succeeded), 0 lost, %d double-completed", n, len(terminal), succeeded, doubled)
	if succeeded != n {
		t.Errorf("%d of %d succeeded; with retries 3 every interrupted job should be retried to success", succeeded, n)
	}
}
