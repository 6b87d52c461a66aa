package worker

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/ocr/ocrtest"
)

// BenchmarkColdStart execs a real worker (this test binary in worker mode)
// and measures how long until it serves OCR:
//
//	direct: exec → /health 200 (process start + runtime + sessions + warm-up)
//	pool:   a worker pre-started with --pool is specialised by POST /load;
//	        only load → warm counts, as a pooled cold start would see it.
//
// Per-phase times are reported in ms since the first phase counted.
func BenchmarkColdStart(b *testing.B) {
	_, dir := ocrtest.Assets(b)
	b.Run("direct", func(b *testing.B) {
		phases := map[string]float64{}
		var total time.Duration
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			w := startWorker(b, "--model-dir", dir)
			w.waitStatus(b, "/health", http.StatusOK)
			total += time.Since(t0)
			ph := w.phases(b)
			base := ph[PhaseProcessStart]
			for name, at := range ph {
				phases[name] += float64(at-base) / 1e6
			}
			w.stop(b)
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "exec_to_ready_ms")
		for _, name := range []string{PhaseListening, PhaseRuntimeLoaded, PhaseSessionsCreated} {
			b.ReportMetric(phases[name]/float64(b.N), name+"_ms")
		}
	})
	b.Run("pool", func(b *testing.B) {
		phases := map[string]float64{}
		var total time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			w := startWorker(b, "--pool")
			w.waitStatus(b, "/live", http.StatusOK)
			b.StartTimer()
			t0 := time.Now()
			resp, err := http.Post(w.url+"/load", "application/json", strings.NewReader(fmt.Sprintf(`{"task":"ocr","model_dir":%q}`, dir)))
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("POST /load = %d", resp.StatusCode)
			}
			total += time.Since(t0)
			b.StopTimer()
			ph := w.phases(b)
			base := ph[PhaseLoadRequested]
			for _, name := range []string{PhaseSessionsCreated} {
				phases[name] += float64(ph[name]-base) / 1e6
			}
			w.stop(b)
			b.StartTimer()
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "load_to_ready_ms")
		for _, name := range []string{PhaseSessionsCreated} {
			b.ReportMetric(phases[name]/float64(b.N), name+"_ms")
		}
	})
}
