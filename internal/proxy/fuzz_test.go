package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzForward feeds raw client bytes to net/http and the forwarder, in
// front of an instance that parses what it gets itself. Whatever the
// client sends, the instance must never see framing it could read two
// ways (duplicate Content-Length, Content-Length with Transfer-Encoding,
// a coding other than chunked), nor a request the front did not accept:
// what it sees is, in order, a subsequence of the front's requests.
//
//	go test ./internal/proxy -run '^$' -fuzz FuzzForward -fuzztime 60s
func FuzzForward(f *testing.F) {
	for _, s := range []string{
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\n\r\n",
		"GET /a%0d%0aX:y HTTP/1.1\r\nHost: x\r\nTe: trailers\r\nConnection: te, upgrade\r\nUpgrade: h2c\r\n\r\n",
		"POST /a?q=1 HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\nx",
	} {
		f.Add([]byte(s))
	}
	// Each iteration gets its own instance (listener), so nothing a
	// previous input left in flight can be counted against this one.
	var cur struct {
		sync.Mutex
		up *fuzzUpstream
	}
	current := func() *fuzzUpstream { cur.Lock(); defer cur.Unlock(); return cur.up }
	p := New()
	f.Cleanup(p.Close)
	// Count the forwarder's connections, so an iteration waits until the
	// instance has accepted and finished every one of them.
	dial := p.pool.dial
	counted := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if up := current(); err == nil && up != nil && addr == up.ln.Addr().String() {
			up.mu.Lock()
			up.dialed++
			up.mu.Unlock()
		}
		return c, err
	}
	p.pool.dial = counted
	p.rp.Transport.(*http.Transport).DialContext = counted
	var mu sync.Mutex
	var accepted []string
	fr := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accepted = append(accepted, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.ContentLength >= 0 && r.ContentLength <= leanMaxBody {
			buf, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(buf))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
		}
		_ = p.Forward(w, r, current().ln.Addr().String(), r.URL.Path)
	}))
	fr.Config.ReadTimeout = 2 * time.Second
	fr.Start()
	f.Cleanup(fr.Close)

	f.Fuzz(func(t *testing.T, raw []byte) {
		mu.Lock()
		accepted = accepted[:0]
		mu.Unlock()
		up := newFuzzUpstream(t)
		cur.Lock()
		cur.up = up
		cur.Unlock()
		c, err := net.Dial("tcp", fr.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(raw)
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c) // until the front closes: every handler has returned
		c.Close()
		// Close the forwarder's idle connections and wait until the
		// instance has read everything sent on them.
		p.pool.closeIdle(false)
		p.rp.Transport.(*http.Transport).CloseIdleConnections()
		got, bad := up.wait(t)
		if len(bad) > 0 {
			t.Fatalf("instance saw conflicting framing %v for %q", bad, raw)
		}
		mu.Lock()
		acc := append([]string(nil), accepted...)
		mu.Unlock()
		i := 0
		for _, g := range got {
			for i < len(acc) && acc[i] != g {
				i++
			}
			if i == len(acc) {
				t.Fatalf("instance saw %q (all: %q), which the front never accepted (front: %q) for %q", g, got, acc, raw)
			}
			i++
		}
	})
}

// fuzzUpstream is rawUpstream's framing check with per-iteration state and
// a count of open connections, so an iteration can wait for it to finish.
type fuzzUpstream struct {
	ln       net.Listener
	mu       sync.Mutex
	open     int
	dialed   int // by the forwarder
	accepted int
	reqs     []string
	bad      []string
}

func newFuzzUpstream(tb testing.TB) *fuzzUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := &fuzzUpstream{ln: ln}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.open++
			u.accepted++
			u.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				u.serve(c)
				c.Close()
				u.mu.Lock()
				u.open--
				u.mu.Unlock()
			}()
		}
	}()
	return u
}

func (u *fuzzUpstream) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		cl, te := req.Header["Content-Length"], req.TransferEncoding
		var bad string
		switch {
		case len(cl) > 1:
			bad = "duplicate Content-Length " + strings.Join(cl, ",")
		case len(cl) == 1 && len(te) > 0:
			bad = "Content-Length with Transfer-Encoding"
		case len(te) > 1 || (len(te) == 1 && te[0] != "chunked"):
			bad = "Transfer-Encoding " + strings.Join(te, ",")
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, req.Method+" "+req.URL.Path)
		if bad != "" {
			u.bad = append(u.bad, bad)
		}
		u.mu.Unlock()
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

// wait polls, with a deadline, until every connection the forwarder made
// has been accepted and closed.
func (u *fuzzUpstream) wait(t *testing.T) (reqs, bad []string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		u.mu.Lock()
		// A dial cut short by a cancelled context may still have
		// connected (and carried nothing): accepted can exceed dialed.
		open := u.open + max(0, u.dialed-u.accepted)
		reqs, bad = append([]string(nil), u.reqs...), append([]string(nil), u.bad...)
		u.mu.Unlock()
		if open == 0 {
			return reqs, bad
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance connections still open after 5 s: open %d dialed %d accepted %d", u.open, u.dialed, u.accepted)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
