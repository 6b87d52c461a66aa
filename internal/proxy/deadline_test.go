package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestForwardUntil: the call's deadline ends an exchange the instance
// does not answer in time, before or after its headers, with the error a
// context with that deadline gives; both paths (lean and the transport's)
// say the same.
func TestForwardUntil(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write([]byte("data: 1\n\n"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(up.Close)
	// First (cleanups run last-in first-out): a handler that has not read
	// its body does not see the proxy close the connection.
	t.Cleanup(func() { close(release) })
	addr := up.Listener.Addr().String()
	for _, tt := range []struct {
		name, path string
		streamBody bool // a body of unknown length: the transport's path
	}{
		{"no answer, lean", "/wait", false},
		{"cut mid-stream, lean", "/stream", false},
		{"no answer, transport", "/wait", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := New()
			t.Cleanup(p.Close)
			req := httptest.NewRequest("POST", "/x", strings.NewReader("{}"))
			if tt.streamBody {
				req.ContentLength = -1
			} else {
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("{}")), nil }
			}
			rec := httptest.NewRecorder()
			err := p.ForwardUntil(rec, req, addr, tt.path, time.Now().Add(50*time.Millisecond))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("ForwardUntil = %v, want context.DeadlineExceeded", err)
			}
		})
	}
}

// TestPooledConnectionOutlivesItsDeadline: a pooled connection whose last
// call's deadline has passed carries the next call; the expired deadline
// is not taken for a dead connection.
func TestPooledConnectionOutlivesItsDeadline(t *testing.T) {
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	addr := up.Listener.Addr().String()
	p := New()
	t.Cleanup(p.Close)
	call := func(deadline time.Time) {
		t.Helper()
		rec := httptest.NewRecorder()
		if err := p.ForwardUntil(rec, httptest.NewRequest("GET", "/x", nil), addr, "/x", deadline); err != nil || rec.Body.String() != "ok" {
			t.Fatalf("ForwardUntil = %v, body %q", err, rec.Body.String())
		}
	}
	call(time.Now().Add(time.Hour))
	// The deadline passes while the connection sits in the pool.
	p.pool.mu.Lock()
	c := p.pool.idle[addr][0]
	p.pool.mu.Unlock()
	c.nc.SetDeadline(aLongTimeAgo)
	c.until = aLongTimeAgo
	call(time.Time{})
	call(time.Now().Add(time.Hour))
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections to the instance, want 1 (the pooled one reused)", n)
	}
}
