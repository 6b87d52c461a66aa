package proxy

import "net/http"

// ForwardHeader reports whether a caller's request header (canonical name)
// may travel on to an instance or an external route target. Forwarding is
// by allow-list: whatever is not named here stays at the gateway, so the
// caller's Ember key (Authorization), cookies, Ember's own Ember-* headers
// and forwarding headers a caller might spoof never reach function code,
// and a header Ember reads in future is kept back without anyone having to
// remember to strip it.
//
// Kept: content negotiation and the body's description, conditional and
// range requests, W3C trace context and a request id, Idempotency-Key and
// Prefer (Cog's respond-async), and what net/http/httputil.ReverseProxy
// itself rebuilds for protocol upgrades (Te: trailers, Connection: Upgrade,
// Upgrade) with the WebSocket handshake headers. X-Forwarded-For/-Host/
// -Proto are not kept: the proxy sets them itself, after filtering.
func ForwardHeader(name string) bool {
	switch name {
	case "Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language",
		"Content-Type", "Content-Length", "Content-Encoding",
		"User-Agent", "Cache-Control",
		"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
		"Traceparent", "Tracestate", "X-Request-Id",
		"Idempotency-Key", "Prefer",
		"Te", "Connection", "Upgrade",
		"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions":
		return true
	}
	return false
}

// FilterHeader deletes, in place, every header of h that ForwardHeader
// does not allow. It allocates nothing (it runs on the warm path). Keys
// must be canonical, as net/http makes them for incoming requests; a
// non-canonical key is dropped.
func FilterHeader(h http.Header) {
	for k := range h {
		if !ForwardHeader(k) {
			delete(h, k)
		}
	}
}
