package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// discardWriter is a reusable ResponseWriter, so the benchmark counts the
// forwarder's allocations and the upstream's, not a recorder's.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkForward is one warm request through Forward to a keep-alive
// upstream: a small JSON body up, a small JSON answer down. Its allocs/op
// include the upstream net/http server's own (a constant across versions).
func BenchmarkForward(b *testing.B) {
	answer := []byte(`{"output":"ok"}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	defer up.Close()
	p := New()
	defer p.Close()
	addr := up.Listener.Addr().String()
	const body = `{"input":{"prompt":"hello"}}`
	w := &discardWriter{h: http.Header{}}
	req := httptest.NewRequest("POST", "/v1/run/f/predict", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer ember_x")
	req.Header.Set("User-Agent", "bench")
	req.ContentLength = int64(len(body))
	rd := strings.NewReader(body)
	// As the gateway hands it over: a small body read in full, replayable.
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		clear(w.h)
		if err := p.Forward(w, req, addr, "/predict"); err != nil {
			b.Fatal(err)
		}
	}
}
