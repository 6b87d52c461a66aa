package routing

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/proxy"
)

// urlProxy forwards routed calls to external base URLs (an existing vLLM
// cluster, a hosted endpoint). Unlike the instance hop it speaks https and
// sends the target's own Host, and it never passes the caller's Ember key
// on: that key is Ember's, not the external service's. A target's own
// credentials go in its headers.
type urlProxy struct {
	rp *httputil.ReverseProxy
	tr *http.Transport
}

type urlCall struct {
	base    *url.URL
	path    string
	headers map[string]string // the target's own, e.g. its credentials
	err     error
}

type urlCallKey struct{}

func newURLProxy() *urlProxy {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	p := &urlProxy{tr: tr}
	p.rp = &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			c := pr.In.Context().Value(urlCallKey{}).(*urlCall)
			pr.Out.URL.Scheme = c.base.Scheme
			pr.Out.URL.Host = c.base.Host
			pr.Out.URL.Path = strings.TrimSuffix(c.base.Path, "/") + c.path
			pr.Out.URL.RawPath = ""
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			pr.Out.Host = ""
			proxy.FilterHeader(pr.Out.Header) // the caller's Ember key never leaves
			for k, v := range c.headers {
				pr.Out.Header.Set(k, v)
			}
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			c := r.Context().Value(urlCallKey{}).(*urlCall)
			var op *net.OpError
			c.err = &proxy.UpstreamError{Addr: c.base.Host, Dial: errors.As(err, &op) && op.Op == "dial", Err: err}
		},
	}
	return p
}

// forward sends r to base+path and streams the answer to w. It returns an
// error (a *proxy.UpstreamError, or the client's context error) only when
// nothing was written to w.
// The caller's headers pass by proxy.ForwardHeader's allow-list; headers
// are then set on the outgoing request, over the caller's.
func (p *urlProxy) forward(w http.ResponseWriter, r *http.Request, base, path string, headers map[string]string) error {
	u, err := url.Parse(base)
	if err != nil {
		return err // validated at apply; unreachable
	}
	if path == "" {
		path = "/"
	}
	c := &urlCall{base: u, path: path, headers: headers}
	r = r.WithContext(context.WithValue(r.Context(), urlCallKey{}, c))
	sw := &firstByteWriter{ResponseWriter: w}
	p.rp.ServeHTTP(sw, r)
	if c.err != nil && !sw.started.Load() {
		if err := r.Context().Err(); err != nil {
			return err
		}
		return c.err
	}
	return nil
}

// close drops idle connections.
func (p *urlProxy) close() { p.tr.CloseIdleConnections() }
