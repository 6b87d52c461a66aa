package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func forwardOne(t *testing.T, p *Proxy, addr, method string) (*httptest.ResponseRecorder, error) {
	t.Helper()
	req := httptest.NewRequest(method, "/x", strings.NewReader("{}"))
	if method == http.MethodGet {
		req = httptest.NewRequest(method, "/x", nil)
	} else {
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("{}")), nil }
	}
	rec := httptest.NewRecorder()
	return rec, p.Forward(rec, req, addr, "/x")
}

// An adopted connection (the readiness probe's) carries the next request:
// the instance accepts no second connection.
func TestAdoptedConnectionCarriesFirstRequest(t *testing.T) {
	up := newRawUpstream(t)
	p := New()
	defer p.Close()
	nc, err := net.Dial("tcp", up.addr())
	if err != nil {
		t.Fatal(err)
	}
	p.Adopt(up.addr(), nc)
	if _, err := forwardOne(t, p, up.addr(), http.MethodPost); err != nil {
		t.Fatal(err)
	}
	if n := up.accepted.Load(); n != 1 {
		t.Errorf("instance accepted %d connections, want 1 (the adopted one)", n)
	}
	if reqs, _ := up.got(); len(reqs) != 1 {
		t.Errorf("instance saw %d requests, want 1", len(reqs))
	}
}

// An adopted connection the instance closed before the request is found
// dead before anything is written, and the request goes on a new one.
func TestAdoptedConnectionClosedByInstanceNotUsed(t *testing.T) {
	up := newRawUpstreamAccepting(t, func(n int64) bool { return n > 1 }) // the probe's is closed at once
	p := New()
	defer p.Close()
	nc, err := net.Dial("tcp", up.addr())
	if err != nil {
		t.Fatal(err)
	}
	p.Adopt(up.addr(), nc)
	waitClosed(t, p, up.addr())
	if _, err := forwardOne(t, p, up.addr(), http.MethodPost); err != nil {
		t.Fatal(err)
	}
	if n := up.accepted.Load(); n != 2 {
		t.Errorf("instance accepted %d connections, want 2 (the closed one, then a new one)", n)
	}
	if reqs, _ := up.got(); len(reqs) != 1 {
		t.Errorf("instance saw %d requests, want 1", len(reqs))
	}
}

// stale is a reused connection that passes the idle check (it has no fd
// to peek at) but that the instance closed as the request went out.
type stale struct {
	writeErr error // Write fails with nothing sent
	written  int
}

func (s *stale) Read([]byte) (int, error) { return 0, io.EOF }
func (s *stale) Write(b []byte) (int, error) {
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	s.written += len(b)
	return len(b), nil
}
func (s *stale) Close() error                     { return nil }
func (s *stale) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *stale) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *stale) SetDeadline(time.Time) error      { return nil }
func (s *stale) SetReadDeadline(time.Time) error  { return nil }
func (s *stale) SetWriteDeadline(time.Time) error { return nil }

// A reused connection that fails is retried once on a new one only when
// the instance cannot have acted on the request: nothing of it was sent,
// or the method is safe and no answer began. A POST that went out is not.
func TestReusedConnectionRetry(t *testing.T) {
	tests := []struct {
		name      string
		conn      *stale
		method    string
		wantRetry bool
	}{
		{"write failed, nothing sent", &stale{writeErr: syscall.EPIPE}, http.MethodPost, true},
		{"GET sent, closed before any answer", &stale{}, http.MethodGet, true},
		{"POST sent, closed before any answer", &stale{}, http.MethodPost, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newRawUpstream(t)
			p := New()
			defer p.Close()
			p.Adopt(up.addr(), tt.conn)
			rec, err := forwardOne(t, p, up.addr(), tt.method)
			reqs, _ := up.got()
			if tt.wantRetry {
				if err != nil || rec.Code != http.StatusOK {
					t.Fatalf("Forward = %v, code %d; want it retried on a new connection", err, rec.Code)
				}
				if len(reqs) != 1 {
					t.Errorf("instance saw %d requests, want 1", len(reqs))
				}
				return
			}
			var ue *UpstreamError
			if !errors.As(err, &ue) || ue.Dial {
				t.Fatalf("Forward = %v, want an *UpstreamError (not retried)", err)
			}
			if len(reqs) != 0 || up.accepted.Load() != 0 {
				t.Errorf("instance saw %d requests on %d connections, want none: a sent POST is never retried", len(reqs), up.accepted.Load())
			}
			if tt.conn.written == 0 {
				t.Error("the request was never written on the stale connection")
			}
		})
	}
}
