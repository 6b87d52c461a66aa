package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/client"
	"github.com/ember-run/ember/internal/jobs"
)

func submit(t *testing.T, s *server, fn, input string, opts client.PredictionOptions) api.Prediction {
	t.Helper()
	p, err := s.c.CreatePrediction(context.Background(), api.PredictionRequest{Model: fn, Input: json.RawMessage(input)}, opts)
	if err != nil {
		t.Fatalf("submit %s: %v", input, err)
	}
	return p
}

func waitJob(t *testing.T, s *server, id string) api.Prediction {
	t.Helper()
	p, err := s.c.WaitPrediction(context.Background(), id, 60*time.Second)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return p
}

func TestJobLifecycle(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("jobsim", "{min: 0, max: 2, concurrency: 4}", "retries: 2", "timeout: 2s"))

	t.Run("cancel running", func(t *testing.T) {
		p := submit(t, s, "jobsim", `{"sleep_ms": 20000}`, client.PredictionOptions{})
		eventually(t, 20*time.Second, "processing", func() bool {
			got, err := s.c.Prediction(context.Background(), p.ID, 0)
			return err == nil && got.Status == api.PredictionProcessing
		})
		start := time.Now()
		if _, err := s.c.CancelPrediction(context.Background(), p.ID); err != nil {
			t.Fatal(err)
		}
		final := waitJob(t, s, p.ID)
		if final.Status != api.PredictionCanceled {
			t.Errorf("status after cancel = %s, want canceled", final.Status)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("cancel took %s: the instance request was not cut", d)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		p := submit(t, s, "jobsim", `{"sleep_ms": 5000}`, client.PredictionOptions{})
		final := waitJob(t, s, p.ID)
		if final.Status != api.PredictionFailed || final.Error == nil || !strings.Contains(*final.Error, "timeout") && !strings.Contains(*final.Error, "deadline") {
			t.Errorf("timed-out job = %s %v, want failed with a timeout error", final.Status, final.Error)
		}
	})

	t.Run("retry after instance crash", func(t *testing.T) {
		p := submit(t, s, "jobsim", `{"crash": true}`, client.PredictionOptions{})
		final := waitJob(t, s, p.ID)
		if final.Status != api.PredictionFailed || final.Attempts != 3 {
			t.Errorf("crashing job = %s after %d attempts, want failed after 3 (retries: 2)", final.Status, final.Attempts)
		}
		ok := waitJob(t, s, submit(t, s, "jobsim", `{"echo": "after crash"}`, client.PredictionOptions{}).ID)
		if ok.Status != api.PredictionSucceeded {
			t.Errorf("job after the crashes = %s, want succeeded on a fresh instance", ok.Status)
		}
	})

	t.Run("idempotency", func(t *testing.T) {
		a := submit(t, s, "jobsim", `{"echo": 1}`, client.PredictionOptions{IdempotencyKey: "order-42"})
		b := submit(t, s, "jobsim", `{"echo": 2}`, client.PredictionOptions{IdempotencyKey: "order-42"})
		if a.ID != b.ID {
			t.Errorf("same Idempotency-Key gave %s and %s, want one prediction", a.ID, b.ID)
		}
	})

	t.Run("unknown function", func(t *testing.T) {
		_, err := s.c.CreatePrediction(context.Background(), api.PredictionRequest{Model: "nope", Input: json.RawMessage(`{}`)}, client.PredictionOptions{})
		var ce *client.Error
		if !asClientError(err, &ce) || ce.Status != 404 {
			t.Errorf("submit to unknown function: %v, want 404", err)
		}
	})
}

func asClientError(err error, target **client.Error) bool {
	e, ok := err.(*client.Error)
	if ok {
		*target = e
	}
	return ok
}

func TestJobStreamAndWebhooks(t *testing.T) {
	s := startServer(t, "", "--webhook-allow", "127.0.0.1/32") // the receiver is on loopback
	s.deploy(simSpec("streamjob", "{min: 0, max: 1}", "predict_path: /stream"))
	secret, err := s.c.WebhookSecret(context.Background())
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("webhook secret = %q, %v", secret, err)
	}

	// The receiver is down (503) for its first three deliveries, then up; it
	// verifies every signature.
	var mu sync.Mutex
	var attempts atomic.Int32
	verified := map[string]int{}
	var badSig atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := jobs.VerifyWebhook(secret, r.Header, body, 5*time.Minute, time.Now()); err != nil {
			badSig.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if attempts.Add(1) <= 3 {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		verified[r.Header.Get("Ember-Webhook-Event")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	p, err := s.c.CreatePrediction(context.Background(), api.PredictionRequest{Model: "streamjob", Input: json.RawMessage(`{}`),
		Webhook: hook.URL, WebhookEventsFilter: []string{"start", "completed"}}, client.PredictionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	final := waitJob(t, s, p.ID)
	var chunks []map[string]int64
	if final.Status != api.PredictionSucceeded || json.Unmarshal(final.Output, &chunks) != nil || len(chunks) != 5 {
		t.Fatalf("streamed job = %s output %s, want succeeded with the 5 SSE chunks as a list", final.Status, final.Output)
	}
	eventually(t, 60*time.Second, "the completed webhook after the receiver came back", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return verified["completed"] == 1
	})
	if badSig.Load() != 0 {
		t.Errorf("%d webhooks failed signature verification", badSig.Load())
	}

	// A late subscriber gets the whole stream replayed; Last-Event-ID resumes.
	var events []client.StreamEvent
	err = s.c.StreamPrediction(context.Background(), p.ID, "", func(e client.StreamEvent) error {
		events = append(events, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	outputs := 0
	for _, e := range events {
		if e.Event == "output" {
			outputs++
		}
	}
	if outputs != 5 || events[len(events)-1].Event != "done" {
		t.Fatalf("replay = %d output events, last %q; want 5 outputs then done", outputs, events[len(events)-1].Event)
	}
	var resumed []client.StreamEvent
	third := ""
	n := 0
	for _, e := range events {
		if e.Event == "output" {
			if n++; n == 3 {
				third = e.ID
			}
		}
	}
	s.c.StreamPrediction(context.Background(), p.ID, third, func(e client.StreamEvent) error {
		resumed = append(resumed, e)
		return nil
	})
	rest := 0
	for _, e := range resumed {
		if e.Event == "output" {
			rest++
		}
	}
	if rest != 2 {
		t.Errorf("resume after event %s gave %d outputs, want the last 2", third, rest)
	}
}

// TestJobsScaleFromZero: queued jobs count as demand, so 50 jobs for a
// function at zero scale it up to max (and never past it).
func TestJobsScaleFromZero(t *testing.T) {
	s := startServer(t, "")
	s.deploy(simSpec("fanout", "{min: 0, max: 4, concurrency: 1, idle_timeout: 30s}"))
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = submit(t, s, "fanout", `{"sleep_ms": 300}`, client.PredictionOptions{}).ID
	}
	peak := 0
	eventually(t, 60*time.Second, "all 50 jobs done", func() bool {
		live := 0
		for _, in := range s.instances("fanout") {
			if in.State != api.StateFailed {
				live++
			}
		}
		peak = max(peak, live)
		if peak > 4 {
			t.Fatalf("%d instances, want ≤ max 4", peak)
		}
		p, err := s.c.Prediction(context.Background(), ids[len(ids)-1], 0)
		return err == nil && p.Status == api.PredictionSucceeded
	})
	for _, id := range ids {
		if p := waitJob(t, s, id); p.Status != api.PredictionSucceeded {
			t.Errorf("job %s = %s", id, p.Status)
		}
	}
	if peak != 4 {
		t.Errorf("peak instances = %d, want the queued jobs to scale the function to max 4", peak)
	}
}
