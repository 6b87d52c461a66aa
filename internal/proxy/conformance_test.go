package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// front is the gateway's shape in miniature: net/http parses the client's
// request, small bodies are read in full and made replayable (as the
// gateway's prepareBody does), and Forward carries it to the instance.
func front(t testing.TB, p *Proxy, upAddr string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength >= 0 && r.ContentLength <= leanMaxBody && r.Body != nil {
			buf, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(buf))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
		}
		err := p.Forward(w, r, upAddr, r.URL.Path)
		var ue *UpstreamError
		if errors.As(err, &ue) {
			http.Error(w, ue.Error(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// seen is one request as a raw upstream read it off the wire.
type seen struct {
	method, path string
	header       http.Header // as sent, framing headers included
	body         string
}

// rawUpstream is an instance that parses what arrives itself, so a test
// sees the exact framing the proxy wrote, and answers each request with
// reply (or "ok").
type rawUpstream struct {
	ln    net.Listener
	mu    sync.Mutex
	reqs  []seen
	bad   []string // framing violations
	reply func(c net.Conn, req *http.Request) bool
	// accepted counts connections; onAccept, if set, sees each (the
	// count, from 1) and closes it at once when it returns false.
	accepted atomic.Int64
	onAccept func(n int64) bool
}

func newRawUpstream(t testing.TB) *rawUpstream {
	t.Helper()
	return newRawUpstreamAccepting(t, nil)
}

// newRawUpstreamAccepting is newRawUpstream with onAccept set before the
// accept loop starts (setting it after would race with the loop).
func newRawUpstreamAccepting(t testing.TB, onAccept func(n int64) bool) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, onAccept: onAccept}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n := u.accepted.Add(1); u.onAccept != nil && !u.onAccept(n) {
				c.Close()
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); u.serve(c) }()
		}
	}()
	return u
}

func (u *rawUpstream) addr() string { return u.ln.Addr().String() }

func (u *rawUpstream) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		u.check(req)
		body, err := io.ReadAll(req.Body)
		if err != nil {
			u.violation("body: " + err.Error())
			return
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{req.Method, req.URL.RequestURI(), req.Header, string(body)})
		u.mu.Unlock()
		if u.reply != nil {
			if !u.reply(c, req) {
				return
			}
			continue
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

// check records framing an instance could read two ways.
func (u *rawUpstream) check(req *http.Request) {
	cl, te := req.Header["Content-Length"], req.TransferEncoding
	switch {
	case len(cl) > 1:
		u.violation("duplicate Content-Length " + strings.Join(cl, ","))
	case len(cl) == 1 && len(te) > 0:
		u.violation("Content-Length with Transfer-Encoding")
	case len(te) > 1 || (len(te) == 1 && te[0] != "chunked"):
		u.violation("Transfer-Encoding " + strings.Join(te, ","))
	}
}

func (u *rawUpstream) violation(s string) {
	u.mu.Lock()
	u.bad = append(u.bad, s)
	u.mu.Unlock()
}

func (u *rawUpstream) got() ([]seen, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...), append([]string(nil), u.bad...)
}

// rawExchange writes raw to the front and reads every response until the
// front closes the connection or stops answering.
func rawExchange(t testing.TB, addr, raw string, want int) []int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	// No half-close: net/http takes it as the client gone.
	var codes []int
	br := bufio.NewReader(c)
	for len(codes) < want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return codes
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	return codes
}

// Whatever framing a client sends, the instance sees one well-framed
// request per request the front accepted, with the body net/http decoded,
// and nothing smuggled behind it.
func TestConformanceFraming(t *testing.T) {
	const hidden = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name   string
		raw    string
		codes  []int    // what the client gets
		bodies []string // what the instance gets, in order
	}{
		{"content-length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", []int{200}, []string{"hello"}},
		{"chunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", []int{200}, []string{"hello"}},
		{"chunked with trailer", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", []int{200}, []string{"abc"}},
		// RFC 9112 6.3: Transfer-Encoding overrides Content-Length; net/http
		// drops the Content-Length, and the instance gets one framing.
		{"te and cl conflict", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", []int{200}, []string{"hello"}},
		{"duplicate content-length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", []int{400}, nil},
		{"content-length list", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!", []int{400}, nil},
		{"te not chunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello", []int{501}, nil},
		{"te chunked twice", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", []int{501}, nil},
		{"pipelined pair", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.1\r\nHost: x\r\n\r\n", []int{200, 200}, []string{"hi", ""}},
		{"body hides a request", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(hidden)) + "\r\n\r\n" + hidden, []int{200}, []string{hidden}},
		// net/http reads a bare LF as a line end; either way one request.
		{"bare LF in header", "POST /a HTTP/1.1\r\nHost: x\r\nX-A: 1\nContent-Length: 0\r\n\r\n", []int{200}, []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newRawUpstream(t)
			p := New()
			defer p.Close()
			fr := front(t, p, up.addr())
			codes := rawExchange(t, fr.Listener.Addr().String(), tc.raw, len(tc.codes))
			if !equalInts(codes, tc.codes) {
				t.Errorf("client got statuses %v, want %v", codes, tc.codes)
			}
			reqs, bad := up.got()
			if len(bad) > 0 {
				t.Errorf("instance saw conflicting framing: %v", bad)
			}
			if len(reqs) != len(tc.bodies) {
				t.Fatalf("instance saw %d requests %+v, want %d", len(reqs), reqs, len(tc.bodies))
			}
			for i, r := range reqs {
				if r.body != tc.bodies[i] {
					t.Errorf("request %d body %q, want %q", i, r.body, tc.bodies[i])
				}
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Hop-by-hop headers, and any header the Connection header names, stay on
// their own hop, both ways.
func TestConformanceHopByHop(t *testing.T) {
	up := newRawUpstream(t)
	up.reply = func(c net.Conn, _ *http.Request) bool {
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: X-Up, keep-alive\r\nX-Up: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	}
	p := New()
	defer p.Close()
	fr := front(t, p, up.addr())
	req, _ := http.NewRequest("GET", fr.URL+"/h", nil)
	req.Header.Set("Connection", "Accept-Language")
	req.Header.Set("Accept-Language", "en")
	req.Header.Set("Keep-Alive", "timeout=1")
	req.Header.Set("Te", "trailers, gzip")
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, k := range []string{"X-Up", "Keep-Alive"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("client got hop-by-hop %s: %q", k, v)
		}
	}
	if resp.Header.Get("X-Kept") != "1" {
		t.Errorf("client lost an end-to-end header: %v", resp.Header)
	}
	reqs, _ := up.got()
	if len(reqs) != 1 {
		t.Fatalf("instance saw %d requests", len(reqs))
	}
	h := reqs[0].header
	for _, k := range []string{"Accept-Language", "Keep-Alive", "Connection"} {
		if v, ok := h[k]; ok {
			t.Errorf("instance got hop-by-hop %s: %q", k, v)
		}
	}
	if got := h.Get("Te"); got != "trailers" {
		t.Errorf("instance got Te %q, want only trailers", got)
	}
	if got := h.Get("Accept"); got != "text/plain" {
		t.Errorf("instance got Accept %q", got)
	}
}

// The response's Date is the front's own on both paths, not the
// instance's (as nginx does).
func TestConformanceDateIsTheFronts(t *testing.T) {
	const stale = "Mon, 01 Jan 2001 00:00:00 GMT"
	up := newRawUpstream(t)
	up.reply = func(c net.Conn, _ *http.Request) bool {
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nDate: "+stale+"\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	}
	p := New()
	defer p.Close()
	fr := front(t, p, up.addr())
	for _, tc := range []struct {
		name string
		body io.Reader
	}{
		{"lean", nil},
		{"transport (streamed body)", io.MultiReader(strings.NewReader("x"))}, // unknown length
	} {
		req, _ := http.NewRequest("POST", fr.URL+"/d", tc.body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Values("Date"); len(got) != 1 || got[0] == stale {
			t.Errorf("%s: Date %q, want the front's own, once", tc.name, got)
		}
		if resp.Header.Get("X-Kept") != "1" {
			t.Errorf("%s: lost an end-to-end header: %v", tc.name, resp.Header)
		}
	}
}

// Response trailers reach the client; 103 Early Hints passes on before the
// final status; a client's Expect: 100-continue is answered by the front
// and never reaches the instance.
func TestConformanceTrailersAnd1xx(t *testing.T) {
	var sawExpect bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawExpect = r.Header.Get("Expect") != ""
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Del("Link")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc")
	}))
	defer up.Close()
	p := New()
	defer p.Close()
	fr := front(t, p, up.Listener.Addr().String())
	var early []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		early = append(early, code)
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", fr.URL+"/t", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	cl := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "body" {
		t.Fatalf("body %q, %v", b, err)
	}
	if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
		t.Errorf("trailer X-Checksum %q, want abc (trailers %v)", got, resp.Trailer)
	}
	if !equalInts(early, []int{100, 103}) {
		t.Errorf("client saw 1xx %v, want [100 103]", early)
	}
	if sawExpect {
		t.Error("instance got the client's Expect header")
	}
}

// An instance may send a few informational responses before its answer,
// as net/http's transport allows, but not an endless run of them (each
// re-arms the bound on response headers).
func TestConformance1xxBounded(t *testing.T) {
	for _, tc := range []struct {
		hints int
		want  int
	}{
		{max1xxResponses, http.StatusOK},
		{max1xxResponses + 1, http.StatusBadGateway},
	} {
		up := newRawUpstream(t)
		up.reply = func(c net.Conn, _ *http.Request) bool {
			_, err := io.WriteString(c, strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", tc.hints)+
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return err == nil
		}
		p := New()
		fr := front(t, p, up.addr())
		var early int
		trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error { early++; return nil }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", fr.URL+"/h", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		p.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%d hints: status %d (%q), want %d", tc.hints, resp.StatusCode, b, tc.want)
		}
		if tc.want == http.StatusOK && (string(b) != "ok" || early != tc.hints) {
			t.Errorf("%d hints: body %q, client saw %d of them", tc.hints, b, early)
		}
	}
}

// A streamed (SSE) answer reaches the client event by event: the first
// event arrives while the instance is still holding the second back.
func TestConformanceStreamingFlush(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "data: two\n\n")
	}))
	defer up.Close()
	defer close(release)
	p := New()
	defer p.Close()
	fr := front(t, p, up.Listener.Addr().String())
	resp, err := http.Get(fr.URL + "/s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event %q, %v: the proxy held it back", line, err)
	}
}

// A client that goes away cancels the instance's request.
func TestConformanceClientCancelReachesInstance(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// net/http notices a closed connection once the body is read.
		_, _ = io.Copy(io.Discard, r.Body)
		close(started)
		<-r.Context().Done()
		close(cancelled)
	}))
	defer up.Close()
	p := New()
	defer p.Close()
	fr := front(t, p, up.Listener.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", fr.URL+"/c", strings.NewReader("{}"))
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-started
	cancel()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the instance's request was not cancelled within 10 s of the client leaving")
	}
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error %v, want context.Canceled", err)
	}
}

// An instance that dies mid-body cuts the client's response: the client
// sees an error, not a short body that looks complete.
func TestConformanceInstanceDiesMidBody(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newRawUpstream(t)
			up.reply = func(c net.Conn, _ *http.Request) bool {
				_, _ = io.WriteString(c, tc.head)
				return false // close mid-body
			}
			p := New()
			defer p.Close()
			fr := front(t, p, up.addr())
			resp, err := http.Post(fr.URL+"/d", "application/json", strings.NewReader("{}"))
			if err != nil {
				return // cut before the buffered head went out: also an error
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("client read %q and a clean end; want an error", b)
			}
		})
	}
}

// A dead instance is a dial error (safe to try elsewhere), and the front
// answers 502.
func TestConformanceDeadInstance(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := New()
	defer p.Close()
	req := httptest.NewRequest("GET", "/x", nil)
	err = p.Forward(httptest.NewRecorder(), req, addr, "/x")
	var ue *UpstreamError
	if !errors.As(err, &ue) || !ue.Dial {
		t.Fatalf("Forward to a closed port: %v, want a dial *UpstreamError", err)
	}
	resp, err := http.Get(front(t, p, addr).URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
}

// An instance that closes idle keep-alive connections (uvicorn does after
// 5 s) costs nothing: the pooled connection is found closed before the
// next request is written on it, and every request is answered once.
func TestConformanceInstanceClosesIdleConnections(t *testing.T) {
	up := newRawUpstream(t)
	answered := make(chan struct{}, 10)
	up.reply = func(c net.Conn, _ *http.Request) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		answered <- struct{}{}
		return false // close without saying so
	}
	p := New()
	defer p.Close()
	addr := up.addr()
	for i := range 5 {
		req := httptest.NewRequest("POST", "/x", strings.NewReader("{}"))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("{}")), nil }
		rec := httptest.NewRecorder()
		if err := p.Forward(rec, req, addr, "/x"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		<-answered
		// The close has reached us once the instance's goroutine ended;
		// wait for the pooled conn to see EOF (polled, bounded).
		waitClosed(t, p, addr)
	}
	reqs, _ := up.got()
	if len(reqs) != 5 {
		t.Errorf("instance saw %d requests, want 5 (none retried, none lost)", len(reqs))
	}
}

// waitClosed polls until the pool's idle connection to addr reads as
// closed, so the next request exercises the stale-connection check.
func waitClosed(t testing.TB, p *Proxy, addr string) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		p.pool.mu.Lock()
		cs := p.pool.idle[addr]
		var c *upConn
		if len(cs) > 0 {
			c = cs[len(cs)-1]
		}
		p.pool.mu.Unlock()
		if c == nil || !c.alive() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("pooled connection never saw the instance's close")
}

// Headers are bounded both ways: net/http refuses an oversized request
// header, and an instance's oversized response header is a 502.
func TestConformanceLargeHeadersBounded(t *testing.T) {
	up := newRawUpstream(t)
	up.reply = func(c net.Conn, _ *http.Request) bool {
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", maxResponseHeaderBytes)+"\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	}
	p := New()
	defer p.Close()
	fr := front(t, p, up.addr())
	resp, err := http.Get(fr.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("oversized response header: status %d, want 502", resp.StatusCode)
	}
	codes := rawExchange(t, fr.Listener.Addr().String(),
		"GET /x HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", http.DefaultMaxHeaderBytes+8192)+"\r\n\r\n", 1)
	if !equalInts(codes, []int{http.StatusRequestHeaderFieldsTooLarge}) {
		t.Errorf("oversized request header: statuses %v, want [431]", codes)
	}
	if reqs, _ := up.got(); len(reqs) != 1 {
		t.Errorf("instance saw %d requests, want 1 (the oversized one never reaches it)", len(reqs))
	}
}

// Upgrades are not on the lean path: they go through the transport, which
// passes the handshake and then the bytes both ways.
func TestConformanceUpgrade(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", http.StatusBadRequest)
			return
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "echo")
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString(line)
		_ = brw.Flush()
	}))
	defer up.Close()
	p := New()
	defer p.Close()
	fr := front(t, p, up.Listener.Addr().String())
	c, err := net.Dial("tcp", fr.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	_, _ = io.WriteString(c, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Errorf("echo %q, %v", line, err)
	}
}

// A header value with a line break (set by code, not parsed: net/http
// refuses it from a client) is never written, so it cannot add a header
// or end the head early.
func TestWriteRequestDropsLineBreaks(t *testing.T) {
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header["Accept"] = []string{"a\r\nContent-Length: 5", "b"}
	r.Header["X-Request-Id"] = []string{"r\n\r\nGET /smuggled HTTP/1.1"}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	if err := writeRequest(bw, r, "127.0.0.1:1", "/x"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(&buf)
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Fatalf("written head does not parse: %v", err)
	}
	if got := req.Header["Accept"]; len(got) != 1 || got[0] != "b" {
		t.Errorf("Accept %q, want only the clean value", got)
	}
	if req.Header.Get("X-Request-Id") != "" || req.ContentLength > 0 {
		t.Errorf("a broken value got through: %v", req.Header)
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("bytes after the head: %q", rest)
	}
}

func TestLeanOK(t *testing.T) {
	get := func() (io.ReadCloser, error) { return http.NoBody, nil }
	for _, tc := range []struct {
		name string
		mod  func(r *http.Request)
		want bool
	}{
		{"small replayable body", func(r *http.Request) { r.ContentLength = 10; r.GetBody = get }, true},
		{"no body", func(r *http.Request) { r.ContentLength = 0 }, true},
		{"unknown length", func(r *http.Request) { r.ContentLength = -1; r.GetBody = get }, false},
		{"too large", func(r *http.Request) { r.ContentLength = leanMaxBody + 1; r.GetBody = get }, false},
		{"not replayable", func(r *http.Request) { r.ContentLength = 10 }, false},
		{"upgrade", func(r *http.Request) { r.Header.Set("Upgrade", "websocket") }, false},
		{"trailers", func(r *http.Request) { r.Trailer = http.Header{"X": nil} }, false},
		{"odd query", func(r *http.Request) { r.URL.RawQuery = "a=\x01" }, false},
	} {
		r := httptest.NewRequest("POST", "/x?"+strconv.Itoa(1), nil)
		r.ContentLength = 0
		tc.mod(r)
		if got := leanOK(r); got != tc.want {
			t.Errorf("%s: leanOK = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// An idle timer that fires just as a request takes the connection must not
// close it under that request; one that fires while it sits idle does.
func TestIdleExpiry(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	p := newConnPool(nil)
	c := &upConn{nc: a, addr: "x", pool: p}
	c.idle = time.AfterFunc(time.Hour, c.expire)
	c.idle.Stop()
	p.put(c)
	if got := p.get("x"); got != c {
		t.Fatalf("get = %v, want the pooled conn", got)
	}
	c.expire() // the timer's late run
	go func() { _, _ = b.Write([]byte("x")) }()
	buf := make([]byte, 1)
	if _, err := a.Read(buf); err != nil {
		t.Fatalf("connection in use was closed by a late idle timer: %v", err)
	}
	p.put(c)
	c.expire()
	if _, err := a.Read(buf); err == nil {
		t.Error("an expired idle connection is still open")
	}
	if n := p.total; n != 0 {
		t.Errorf("pool holds %d connections after expiry, want 0", n)
	}
}
