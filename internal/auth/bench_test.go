package auth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/ratelimit"
)

// BenchmarkMiddleware measures what auth + rate limiting add to a trivial
// handler, against the same handler bare, in one run:
//
//	go test -run '^$' -bench Middleware -benchtime 20000x ./internal/auth
//
// "inproc" calls the handler chain directly (the pure added cost); "http"
// goes through a loopback server, as a client would see it. Each reports
// p50/p99 latency next to ns/op.
func BenchmarkMiddleware(b *testing.B) {
	st := newMemStore()
	a := New(st, Options{})
	_, secret, err := a.Create(context.Background(), NewKey{Name: "bench", Scope: ScopeInvoke,
		RatePerSec: 1e9, Burst: 1 << 30, MaxConcurrency: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	trivial := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	rl := ratelimit.New()
	// The key's limit and the function's, as Ember applies them: the
	// per-key middleware, then the function's own.
	byKey := rl.Middleware(time.Now, func(r *http.Request) (ratelimit.Spec, bool) {
		p := FromContext(r.Context())
		return ratelimit.Spec{Kind: ratelimit.KindAPIKey, Key: p.KeyID, Name: p.Name,
			Limit: ratelimit.Limit{Rate: p.RatePerSec, Burst: p.Burst, MaxConcurrency: p.MaxConcurrency}}, true
	})
	byFunction := rl.Middleware(time.Now, func(*http.Request) (ratelimit.Spec, bool) {
		return ratelimit.Spec{Kind: ratelimit.KindFunction, Key: "echo", Name: "echo",
			Limit: ratelimit.Limit{Rate: 1e9, Burst: 1 << 30}}, true
	})
	limited := func(h http.Handler) http.Handler { return byKey(byFunction(h)) }
	chains := []struct {
		name string
		h    http.Handler
	}{
		{"bare", trivial},
		{"auth+ratelimit", a.Middleware(limited(trivial))},
	}
	for _, c := range chains {
		b.Run("inproc/"+c.name, func(b *testing.B) {
			req := httptest.NewRequest("POST", "/v1/run/echo", nil)
			req.Header.Set("Authorization", "Bearer "+secret)
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, req)
				lat = append(lat, time.Since(start))
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			reportLatency(b, lat)
		})
	}
	for _, c := range chains {
		b.Run("http/"+c.name, func(b *testing.B) {
			srv := httptest.NewServer(c.h)
			defer srv.Close()
			client := srv.Client()
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				req, _ := http.NewRequest("POST", srv.URL+"/v1/run/echo", strings.NewReader("{}"))
				req.Header.Set("Authorization", "Bearer "+secret)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(start))
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			reportLatency(b, lat)
		})
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) }
	b.ReportMetric(q(0.50), "p50-ns")
	b.ReportMetric(q(0.99), "p99-ns")
}
