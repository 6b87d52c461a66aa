package jobs_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/jobs"
)

// BenchmarkSubmitToComplete measures durable jobs per second end to end:
// concurrent submits (each returns after its commit) to a trivial function
// served over real local HTTP, until every job's terminal state is
// committed. It reports jobs/s and the p50/p99 of submit→start (queue_time
// on a warm function). Run: go test -bench . -benchtime 20000x ./internal/jobs/
func BenchmarkSubmitToComplete(b *testing.B) {
	benchJobs(b, 64)
}

// BenchmarkOneAtATime submits the next job when the previous completed: the
// submit→start latency of an idle, warm function.
func BenchmarkOneAtATime(b *testing.B) {
	benchJobs(b, 1)
}

func benchJobs(b *testing.B, submitters int) {
	m := http.NewServeMux()
	m.HandleFunc("POST /trivial", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	})
	e := newEnv(b, m, functions{"trivial": fn("trivial", nil)}, jobs.Options{})
	ctx := context.Background()
	ids := make([]string, b.N)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range submitters {
		wg.Go(func() {
			for i := w; i < b.N; i += submitters {
				p, err := e.svc.Submit(ctx, jobs.SubmitRequest{Function: "trivial", Input: []byte(`{"n":1}`)})
				if err != nil {
					b.Error(err)
					return
				}
				ids[i] = p.ID
				if submitters == 1 {
					e.svc.Wait(ctx, p.ID, time.Minute)
				}
			}
		})
	}
	wg.Wait()
	queue := make([]float64, 0, b.N)
	for _, id := range ids {
		p, err := e.svc.Wait(ctx, id, time.Minute)
		if err != nil || p.Status != api.PredictionSucceeded {
			b.Fatalf("%s: %v %v", id, p.Status, err)
		}
		queue = append(queue, *p.Metrics.QueueTime*1000)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(queue)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	b.ReportMetric(queue[len(queue)/2], "p50-start-ms")
	b.ReportMetric(queue[len(queue)*99/100], "p99-start-ms")
}
