package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The lean path: one warm request with a small, known-length body (what
// the gateway hands over for nearly every inference call) is written and
// its response read on the caller's own goroutine, over a pooled
// keep-alive connection. httputil.ReverseProxy over http.Transport passes
// every request between three goroutines (handler, the connection's write
// loop and read loop) and clones the request; the profile of
// BenchmarkForward had the scheduler and those handoffs as the largest
// cost after the syscalls themselves (bench/README.md).
//
// Framing is never copied from the caller: net/http has already parsed
// and de-chunked the client's request, refusing conflicting or duplicate
// Content-Length and Transfer-Encoding, and the lean path writes its own
// Content-Length from r.ContentLength. So whatever the caller sent, the
// instance sees exactly one request per call. Responses are parsed by
// http.ReadResponse; a connection is reused only when its response ended
// cleanly with nothing more buffered behind it.

// leanMaxBody is the largest request body the lean path writes before
// reading the answer. Bigger or unknown-length bodies go through the
// transport, which writes and reads concurrently, so an instance that
// answers before reading everything cannot stall the write.
const leanMaxBody = 64 << 10

// max1xxResponses bounds the informational responses (103 Early Hints
// and the like) one exchange passes on before its final status, as
// net/http's transport does: each re-arms the header bound, so without
// it an instance could send them until the deadline.
const max1xxResponses = 5

// maxResponseHeaderBytes bounds an instance's response headers (the
// transport's default is 1 MiB; the lean path is stricter).
const maxResponseHeaderBytes = 64 << 10

// upConn is one keep-alive connection to an instance.
type upConn struct {
	nc    net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	req   http.Request // ReadResponse needs the method; reused, never sent
	idle  *time.Timer  // closes the connection after IdleConnTimeout unused
	addr  string
	pool  *connPool
	limit limitedReader   // bounds response headers; reset per response
	sent  sentCounter     // bw's writer: bytes written on nc
	used  bool            // has carried a request before (or came from a probe)
	raw   syscall.RawConn // for alive; nil when the conn has no fd
	until time.Time       // the deadline set on nc (zero: none)

	peekFn   func(fd uintptr) bool // alive's callback, bound once
	peekIdle bool
	abortFn  func() // exchange's AfterFunc callback, bound once

	// A plain response's parts (readResponse), reused: one exchange at a
	// time uses a connection.
	resp http.Response
	body plainBody
}

// abort unblocks whatever an exchange on c waits on: its caller is gone.
func (c *upConn) abort() { c.nc.SetDeadline(aLongTimeAgo) }

// limitedReader is io.LimitedReader that can be re-armed without allocating.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

var errHeaderTooLarge = errors.New("instance response headers exceed 64 KiB")

// connPool keeps idle connections per instance address, newest first.
type connPool struct {
	mu        sync.Mutex
	idle      map[string][]*upConn
	total     int
	maxPerKey int
	maxTotal  int
	timeout   time.Duration
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	closed    bool
}

func newConnPool(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *connPool {
	return &connPool{idle: map[string][]*upConn{}, maxPerKey: 256, maxTotal: 1024, timeout: 90 * time.Second, dial: dial}
}

// get returns a live idle connection to addr, or nil. Connections the
// instance closed while idle (servers time idle keep-alives out, uvicorn
// after 5 s) are found here, before anything is written on them, so no
// request is ever sent on a dead connection and retried.
func (p *connPool) get(addr string) *upConn {
	for {
		p.mu.Lock()
		cs := p.idle[addr]
		if len(cs) == 0 {
			p.mu.Unlock()
			return nil
		}
		c := cs[len(cs)-1]
		cs[len(cs)-1] = nil
		p.idle[addr] = cs[:len(cs)-1]
		p.total--
		c.idle.Stop()
		p.mu.Unlock()
		if !c.until.IsZero() && !time.Now().Before(c.until) {
			// The last call's deadline has passed: alive's peek would
			// fail on it, not on the connection.
			if c.nc.SetDeadline(time.Time{}) != nil {
				c.nc.Close()
				continue
			}
			c.until = time.Time{}
		}
		if c.alive() {
			return c
		}
		c.nc.Close()
	}
}

func (p *connPool) newConn(ctx context.Context, addr string) (*upConn, error) {
	nc, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return p.wrap(nc, addr), nil
}

// wrap makes nc, a connection to addr, one of the pool's.
func (p *connPool) wrap(nc net.Conn, addr string) *upConn {
	c := &upConn{nc: nc, addr: addr, pool: p}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.limit.r = nc
	c.br = bufio.NewReaderSize(&c.limit, 4<<10)
	c.sent.w = nc
	c.bw = bufio.NewWriterSize(&c.sent, 4<<10)
	c.idle = time.AfterFunc(p.timeout, c.expire)
	c.idle.Stop()
	c.abortFn = c.abort
	return c
}

// sentCounter counts the bytes the kernel accepted on a connection, so a
// failed write can tell whether any of a request left Ember.
type sentCounter struct {
	w net.Conn
	n int64
}

func (s *sentCounter) Write(b []byte) (int, error) {
	n, err := s.w.Write(b)
	s.n += int64(n)
	return n, err
}

// put returns c to the pool, or closes it when the pool is full.
func (p *connPool) put(c *upConn) {
	p.mu.Lock()
	if p.closed || p.total >= p.maxTotal || len(p.idle[c.addr]) >= p.maxPerKey {
		p.mu.Unlock()
		c.nc.Close()
		return
	}
	p.idle[c.addr] = append(p.idle[c.addr], c)
	p.total++
	c.idle.Reset(p.timeout)
	p.mu.Unlock()
}

// expire drops c from the pool when it has sat idle too long.
func (c *upConn) expire() {
	p := c.pool
	p.mu.Lock()
	found := false
	cs := p.idle[c.addr]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i], cs[i+1:]...)
			p.total--
			if len(cs) == 0 {
				delete(p.idle, c.addr)
			} else {
				p.idle[c.addr] = cs
			}
			found = true
			break
		}
	}
	p.mu.Unlock()
	// Not found: get took c just as the timer fired; it is in use now.
	if found {
		c.nc.Close()
	}
}

// closeIdle closes every idle connection; with final, the pool accepts no more.
func (p *connPool) closeIdle(final bool) {
	p.mu.Lock()
	all := p.idle
	p.idle = map[string][]*upConn{}
	p.total = 0
	p.closed = p.closed || final
	p.mu.Unlock()
	for _, cs := range all {
		for _, c := range cs {
			c.idle.Stop()
			c.nc.Close()
		}
	}
}

// leanOK reports whether r can take the lean path: a body of known small
// length that can be replayed on a fresh connection, no protocol upgrade,
// and a query that is safe to write on the request line as it is.
func leanOK(r *http.Request) bool {
	if r.ContentLength < 0 || r.ContentLength > leanMaxBody {
		return false
	}
	if r.ContentLength > 0 && r.GetBody == nil {
		return false
	}
	if r.Header["Upgrade"] != nil || len(r.Trailer) > 0 {
		return false
	}
	for i := 0; i < len(r.URL.RawQuery); i++ {
		if b := r.URL.RawQuery[i]; b <= ' ' || b >= 0x7f {
			return false
		}
	}
	return true
}

var aLongTimeAgo = time.Unix(1, 0)

// errBodyShort: the caller's body ended before its Content-Length.
var errBodyShort = errors.New("request body shorter than its Content-Length")

// forwardLean is Forward's fast path (see leanOK). A failure after the
// request went out is never retried (the instance may have run it), with
// one exception that net/http's transport makes too: a reused connection
// the instance closed just as the request went out is retried once on a
// new one when none of the request reached the instance (the write
// failed with nothing sent), or when the method is idempotent and no byte
// of a response came back.
func (p *Proxy) forwardLean(w http.ResponseWriter, r *http.Request, addr, path string, deadline time.Time) error {
	b := bound{ctx: r.Context(), deadline: deadline}
	c := p.pool.get(addr)
	if c == nil {
		var err error
		if c, err = p.dial(b, addr); err != nil {
			return err
		}
	}
	err := p.exchange(b, w, r, c, addr, path)
	var rt *retryable
	if !errors.As(err, &rt) {
		return err
	}
	if r.ContentLength > 0 {
		body, gerr := r.GetBody() // leanOK saw GetBody set
		if gerr != nil {
			return &UpstreamError{Addr: addr, Err: rt.err}
		}
		r.Body = body
	}
	if c, err = p.dial(b, addr); err != nil {
		return err
	}
	err = p.exchange(b, w, r, c, addr, path)
	if errors.As(err, &rt) { // a new connection is never retried
		return &UpstreamError{Addr: addr, Err: rt.err}
	}
	return err
}

// bound is what ends an exchange early: the caller's context (the client
// went away) and the call's deadline (zero: none). The deadline is set on
// the connection rather than carried by a context: a timer context per
// call cost seven allocations and about a microsecond.
type bound struct {
	ctx      context.Context
	deadline time.Time
}

// err is why the exchange must end, or nil: the context's error, or
// context.DeadlineExceeded past the deadline, as a context with that
// deadline would say.
func (b bound) err() error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	if !b.deadline.IsZero() && !time.Now().Before(b.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// dial opens a new connection to addr within b.
func (p *Proxy) dial(b bound, addr string) (*upConn, error) {
	ctx := b.ctx
	if !b.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, b.deadline)
		defer cancel()
	}
	c, err := p.pool.newConn(ctx, addr)
	if err != nil {
		if berr := b.err(); berr != nil {
			return nil, berr
		}
		return nil, &UpstreamError{Addr: addr, Dial: true, Err: err}
	}
	return c, nil
}

// retryable is exchange's failure on a reused connection that the
// instance cannot have acted on (see forwardLean).
type retryable struct{ err error }

func (e *retryable) Error() string { return e.err.Error() }

// Adopt gives the pool nc, an open, idle connection to the instance at
// addr that carried nothing unread (the readiness probe's, through
// driver.ConnHandoff), for the next request to addr. Like any idle
// connection it is checked before use.
func (p *Proxy) Adopt(addr string, nc net.Conn) {
	c := p.pool.wrap(nc, addr)
	c.used = true
	p.pool.put(c)
}

// exchange writes r to c and copies the response to w. c is returned to
// the pool or closed.
func (p *Proxy) exchange(b bound, w http.ResponseWriter, r *http.Request, c *upConn, addr, path string) error {
	ctx := b.ctx
	// Past the deadline, whatever the exchange waits on fails. Set before
	// the AfterFunc below, which must have the last word.
	if !c.until.Equal(b.deadline) {
		if err := c.nc.SetDeadline(b.deadline); err != nil {
			c.nc.Close()
			return &UpstreamError{Addr: addr, Err: err}
		}
		c.until = b.deadline
	}
	// Client gone: unblock whatever the exchange is waiting on. (The
	// callback is bound once per connection: a closure here would be an
	// allocation per call.)
	stop := context.AfterFunc(ctx, c.abortFn)
	keep := false
	defer func() {
		if !stop() || !keep {
			c.nc.Close()
			return
		}
		p.pool.put(c)
	}()

	reused := c.used
	c.used = true
	c.sent.n = 0
	if err := writeRequest(c.bw, r, addr, path); err != nil {
		var be *callerBodyError
		if reused && c.sent.n == 0 && b.err() == nil && !errors.As(err, &be) {
			return &retryable{err}
		}
		return p.failed(b, addr, err)
	}
	c.req.Method = r.Method
	var resp *http.Response
	for informational := 0; ; informational++ {
		first := informational == 0
		if informational > max1xxResponses {
			return &UpstreamError{Addr: addr, Err: fmt.Errorf("instance sent more than %d informational (1xx) responses", max1xxResponses)}
		}
		c.limit.n = maxResponseHeaderBytes
		var err error
		resp, err = c.readResponse(r.Method)
		if err != nil {
			if first && reused && b.err() == nil && safeMethod(r.Method) && c.limit.n == maxResponseHeaderBytes &&
				(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)) {
				return &retryable{err}
			}
			return p.failed(b, addr, err)
		}
		c.limit.n = 1<<63 - 1
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// 1xx: 103 Early Hints and the like go on to the caller; an
		// unasked-for 100 Continue (the lean path never sends Expect)
		// is dropped.
		if resp.StatusCode != http.StatusContinue {
			h := w.Header()
			for k, vv := range resp.Header {
				h[k] = vv
			}
			w.WriteHeader(resp.StatusCode)
			for k := range resp.Header {
				delete(h, k)
			}
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Never asked for (upgrades take the transport path): the
		// connection now speaks something else.
		return &UpstreamError{Addr: addr, Err: errors.New("instance switched protocols on a request that asked for no upgrade")}
	}

	h := w.Header()
	removeHopHeaders(resp.Header)
	delete(resp.Header, "Date") // see dropDate
	for k, vv := range resp.Header {
		if old, ok := h[k]; ok {
			h[k] = append(old, vv...)
		} else {
			h[k] = vv
		}
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	stream := resp.ContentLength < 0 || isEventStream(resp.Header)
	rc := http.NewResponseController(w)
	if stream {
		_ = rc.Flush()
	}
	bp := p.buffers.Get().(*[]byte)
	err := copyBody(w, rc, resp.Body, *bp, stream)
	p.buffers.Put(bp)
	if err != nil {
		if berr := b.err(); berr != nil {
			return berr
		}
		// Headers are out: the caller cannot be told with a status.
		// Abort the client's response so it sees a cut, not a clean
		// end, as httputil.ReverseProxy does.
		if ctx.Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler)
		}
		return &UpstreamError{Addr: addr, Err: err}
	}
	for k, vv := range resp.Trailer {
		h[k] = vv
	}
	keep = !resp.Close && c.br.Buffered() == 0
	return nil
}

// failed turns an exchange error into the caller's: the context's error
// or context.DeadlineExceeded when either ended first, else an
// *UpstreamError.
func (p *Proxy) failed(b bound, addr string, err error) error {
	if berr := b.err(); berr != nil {
		return berr
	}
	return &UpstreamError{Addr: addr, Err: err}
}

// copyBody streams body to w, flushing after each write when stream.
func copyBody(w io.Writer, rc *http.ResponseController, body io.ReadCloser, buf []byte, stream bool) error {
	defer body.Close()
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if stream {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func isEventStream(h http.Header) bool {
	v := h["Content-Type"]
	return len(v) > 0 && strings.HasPrefix(strings.ToLower(strings.TrimSpace(v[0])), "text/event-stream")
}

// hopHeaders are meaningful only on one connection (RFC 9110 7.6.1).
var hopHeaders = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// dropDate drops the instance's Date from its response, on both paths:
// net/http then writes the front's own, as nginx does by default. The
// date is the same to the second, and one header fewer in the response
// map keeps a warm call's headers within the eight a map holds before it
// grows (and net/http clones it at about three times the cost).
func dropDate(resp *http.Response) error {
	delete(resp.Header, "Date")
	return nil
}

// removeHopHeaders deletes hop-by-hop headers and those Connection names.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// connectionNames reports whether the caller's Connection header names k
// (such headers are hop-by-hop: they never go on).
func connectionNames(conn []string, k string) bool {
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(f), k) {
				return true
			}
		}
	}
	return false
}

// writeRequest writes r's request line, allowed headers and body to bw.
// The body's framing is Ember's: Content-Length from r.ContentLength.
func writeRequest(bw *bufio.Writer, r *http.Request, addr, path string) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	if path == "" {
		path = "/"
	}
	bw.WriteString((&url.URL{Path: path}).EscapedPath())
	if r.URL.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(r.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(addr)
	bw.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		switch k {
		case "Connection", "Upgrade", "Content-Length", "Transfer-Encoding":
			continue
		case "Te":
			// Only "trailers" survives a hop (RFC 9110 10.1.4).
			if hasToken(vv, "trailers") {
				bw.WriteString("Te: trailers\r\n")
			}
			continue
		}
		if !ForwardHeader(k) || (conn != nil && connectionNames(conn, k)) {
			continue
		}
		for _, v := range vv {
			if !safeValue(v) {
				continue // net/http refuses these already; never write a line break
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	// X-Forwarded-*, as httputil.ProxyRequest.SetXForwarded sets them.
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(host)
		bw.WriteString("\r\n")
	}
	if r.Host != "" {
		bw.WriteString("X-Forwarded-Host: ")
		bw.WriteString(r.Host)
		bw.WriteString("\r\n")
	}
	if r.TLS != nil {
		bw.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		bw.WriteString("X-Forwarded-Proto: http\r\n")
	}
	if r.ContentLength > 0 || methodHasBody(r.Method) {
		bw.WriteString("Content-Length: ")
		// Formatted into the writer's own buffer: a local array would
		// escape through bw.Write, an allocation per call.
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), r.ContentLength, 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	// The body is read straight into the writer's buffer: exactly
	// ContentLength bytes, no wrapper to allocate.
	for left := r.ContentLength; left > 0; {
		if bw.Available() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		b := bw.AvailableBuffer()
		b = b[:min(int64(cap(b)), left)]
		n, err := r.Body.Read(b)
		bw.Write(b[:n])
		left -= int64(n)
		if err == io.EOF && left > 0 {
			return &callerBodyError{errBodyShort}
		}
		if err != nil && err != io.EOF {
			return &callerBodyError{err}
		}
	}
	return bw.Flush()
}

// safeMethod: a request that changes nothing (RFC 9110 9.2.1), so it may be
// sent again when no answer came; net/http's transport replays the same.
func safeMethod(m string) bool {
	return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE"
}

// callerBodyError is a failure to read the caller's request body, not the
// instance's connection: never a reason to retry.
type callerBodyError struct{ err error }

func (e *callerBodyError) Error() string { return e.err.Error() }
func (e *callerBodyError) Unwrap() error { return e.err }

func methodHasBody(m string) bool { return m == "POST" || m == "PUT" || m == "PATCH" }

func hasToken(vv []string, tok string) bool {
	for _, v := range vv {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(f), tok) {
				return true
			}
		}
	}
	return false
}

// safeValue reports whether v may be written as a header value: no control
// bytes but tab (RFC 9110 5.5), so no value can end its line early.
func safeValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}
