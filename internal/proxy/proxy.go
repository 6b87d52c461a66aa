// Package proxy is the reverse-proxy hop from the gateway to one instance.
// Request headers pass by allow-list (ForwardHeader), so nothing of
// Ember's (the caller's key, Ember-* headers) reaches the instance.
// Responses stream through unbuffered: chunked bodies and
// text/event-stream are flushed as each write arrives.
//
// Two paths: the lean one (lean.go) for the warm inference call, a small
// body of known length, written and answered on the caller's goroutine;
// httputil.ReverseProxy over http.Transport for everything else (large or
// streamed bodies, request trailers, protocol upgrades).
package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// UpstreamError is a failure to get a response from the instance. Nothing
// has been written to the client when it is returned.
type UpstreamError struct {
	Addr string
	// Dial is true when the connection could not be made: nothing was sent,
	// so trying another instance is safe.
	Dial bool
	Err  error
}

func (e *UpstreamError) Error() string {
	if e.Dial {
		return "cannot connect to instance at " + e.Addr + ": " + e.Err.Error()
	}
	return "instance at " + e.Addr + " failed before responding: " + e.Err.Error()
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// Proxy forwards requests to instances over pooled keep-alive connections.
type Proxy struct {
	pool    *connPool
	buffers sync.Pool // *[]byte, 32 KiB response copy buffers
	rp      *httputil.ReverseProxy
	client  *http.Client // Do's: follows redirects as jobs always have
}

type ctxKey struct{}

type target struct {
	addr, path, rawQuery string
	err                  error
}

// New returns a Proxy.
func New() *Proxy {
	dial := (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr := &http.Transport{
		DialContext:           dial,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
	}
	p := &Proxy{pool: newConnPool(dial)}
	p.buffers.New = func() any { b := make([]byte, 32<<10); return &b }
	p.rp = &httputil.ReverseProxy{
		Transport:  tr,
		BufferPool: newBufferPool(),
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(ctxKey{}).(*target)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = t.addr
			pr.Out.URL.Path = t.path
			pr.Out.URL.RawPath = ""
			pr.Out.URL.RawQuery = t.rawQuery
			pr.Out.Host = t.addr
			FilterHeader(pr.Out.Header)
			pr.SetXForwarded()
		},
		ModifyResponse: dropDate,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t := r.Context().Value(ctxKey{}).(*target)
			var op *net.OpError
			t.err = &UpstreamError{Addr: t.addr, Dial: errors.As(err, &op) && op.Op == "dial", Err: err}
		},
		ErrorLog: nil,
	}
	p.client = &http.Client{Transport: tr}
	return p
}

// Forward sends r to the instance at addr, at path, and streams the
// response to w. It returns an *UpstreamError when no response came (the
// caller writes the error), the request context's error when the client
// went away first, or nil.
func (p *Proxy) Forward(w http.ResponseWriter, r *http.Request, addr, path string) error {
	return p.ForwardUntil(w, r, addr, path, time.Time{})
}

// ForwardUntil is Forward with the exchange bounded by deadline (zero:
// none): past it, it ends with context.DeadlineExceeded, as if r's context
// had that deadline. On the lean path that costs a connection deadline
// instead of a context and a timer per call.
func (p *Proxy) ForwardUntil(w http.ResponseWriter, r *http.Request, addr, path string, deadline time.Time) error {
	if leanOK(r) {
		return p.forwardLean(w, r, addr, path, deadline)
	}
	if !deadline.IsZero() {
		ctx, cancel := context.WithDeadline(r.Context(), deadline)
		defer cancel()
		r = r.WithContext(ctx)
	}
	t := &target{addr: addr, path: path, rawQuery: r.URL.RawQuery}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, t))
	p.rp.ServeHTTP(w, r)
	if t.err != nil {
		if err := r.Context().Err(); err != nil {
			return err
		}
		return t.err
	}
	return nil
}

// Do sends r to the instance at addr, path and query unchanged, over the
// same pooled connections as Forward, and returns the response for the
// caller to read (async jobs read the whole answer). r's headers go as
// they are: the caller builds the request. A failure to get a response is
// an *UpstreamError; the caller closes the body.
func (p *Proxy) Do(ctx context.Context, addr string, r *http.Request) (*http.Response, error) {
	out := r.Clone(ctx)
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = "http", addr, addr, ""
	resp, err := p.client.Do(out)
	if err != nil {
		var op *net.OpError
		return nil, &UpstreamError{Addr: addr, Dial: errors.As(err, &op) && op.Op == "dial", Err: err}
	}
	return resp, nil
}

// Close drops idle connections.
func (p *Proxy) Close() {
	p.pool.closeIdle(true)
	if tr, ok := p.rp.Transport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// bufferPool reuses copy buffers: without it ReverseProxy allocates and
// zeroes 32 KiB per response, the largest allocation on the warm path.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }
