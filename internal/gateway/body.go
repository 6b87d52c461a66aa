package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/spec"
)

// BodyLimits bound how a request body travels to an instance, so that a
// slow sender cannot hold an instance slot and buffered bodies cannot grow
// the server's memory without bound.
type BodyLimits struct {
	// PreRead: bodies up to this many bytes are read whole before an
	// instance slot is taken (a slow sender then holds no slot). Larger
	// bodies stream to the instance. 0 turns pre-reading off.
	PreRead int64
	// Budget bounds the bytes of pre-read bodies held at once across the
	// server; a caller that would exceed it gets 503 with Retry-After.
	Budget int64
	// MinRate (bytes/s) is the slowest a sender may be, on average, once
	// Grace has passed; a slower one is cut with 408. 0 turns it off.
	MinRate int64
	// Grace is how long a body may take before MinRate applies.
	Grace time.Duration
}

// DefaultBodyLimits are the limits `ember serve` starts with.
func DefaultBodyLimits() BodyLimits {
	return BodyLimits{PreRead: 1 << 20, Budget: 256 << 20, MinRate: 1 << 10, Grace: 10 * time.Second}
}

// byteBudget is a server-wide count of buffered body bytes.
type byteBudget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes, or reports that the budget cannot hold them.
func (b *byteBudget) take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *byteBudget) give(n int64) { b.used.Add(-n) }

// errBodyBudget is the 503 for a full buffer budget.
func errBodyBudget(limit int64) error {
	return &errkind.Error{Kind: errkind.Unavailable, Code: "server_busy", RetryAfter: time.Second,
		Msg: fmt.Sprintf("server busy: request bodies being read already hold the server's buffer budget of %d bytes (--body-buffer-budget); retry shortly", limit)}
}

// errBodySlow is the 408 for a sender below the minimum rate.
func errBodySlow(l BodyLimits) error {
	return &errkind.Error{Kind: errkind.SlowClient, Code: "body_too_slow",
		Msg: fmt.Sprintf("request body arrived slower than %d bytes/s after %s (--min-body-rate)", l.MinRate, l.Grace)}
}

// bodyReader is the request body on its way to an instance: bounded by the
// function's max_body_bytes, under the minimum-rate read deadline, and
// remembering the first read error, so that the gateway can answer 413 or
// 408 when the proxy could not say why the body broke off. The proxy's
// transport may read it from its own goroutine, hence the lock.
type bodyReader struct {
	r       io.Reader
	closer  io.Closer
	rc      http.ResponseController // when deadline: held by value, one allocation less per call
	hasRC   bool                    // false: no read deadline
	start   time.Time
	minRate int64
	grace   time.Duration
	now     func() time.Time

	mu   sync.Mutex
	n    int64
	err  error
	done bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += int64(n)
	if err != nil {
		if err != io.EOF && b.err == nil {
			b.err = err
		}
		b.finishLocked()
		return n, err
	}
	if n > 0 && b.hasRC && !b.done {
		// E.g. MinRate=1 KiB/s, Grace=10s: after 20 KiB the sender has
		// until start+30s; the deadline moves on as bytes arrive.
		_ = b.rc.SetReadDeadline(b.deadlineLocked())
	}
	return n, err
}

func (b *bodyReader) deadlineLocked() time.Time {
	return b.start.Add(b.grace + time.Duration(float64(b.n)/float64(b.minRate)*float64(time.Second)))
}

// finishLocked lifts the read deadline once the body has ended: net/http's
// background read of the connection would otherwise hit it mid-response.
// After a failed read (too slow, too large) the deadline stays: the
// connection closes after the answer, and without a deadline net/http
// would wait for the rest of the body before sending that answer.
func (b *bodyReader) finishLocked() {
	if b.hasRC && !b.done && b.err == nil {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	b.done = true
}

func (b *bodyReader) Close() error {
	b.mu.Lock()
	b.finishLocked()
	b.mu.Unlock()
	return b.closer.Close()
}

// failure maps the body's read error to what the caller should see, or nil.
func (b *bodyReader) failure(l BodyLimits) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var mbe *http.MaxBytesError
	switch {
	case b.err == nil:
		return nil
	case errors.As(b.err, &mbe):
		return mbe
	case errors.Is(b.err, os.ErrDeadlineExceeded):
		return errBodySlow(l)
	}
	return nil
}

// prepareBody bounds r's body by maxBytes and, when it is small enough,
// reads it whole before the caller takes an instance slot. It returns the
// body reader to ask after the call why the body failed (nil when none is
// left to read) and the bytes it holds of the buffer budget, for the
// caller to give back when the call ends (a count, not a release func:
// that was an allocation per call). A body already buffered (GetBody set: OpenAI endpoints, routes) is
// left as it is.
func (g *Gateway) prepareBody(w http.ResponseWriter, r *http.Request, maxBytes int64) (br *bodyReader, held int64, err error) {
	if r.ContentLength > maxBytes {
		return nil, 0, &http.MaxBytesError{Limit: maxBytes}
	}
	if r.Body == nil || r.Body == http.NoBody || r.GetBody != nil {
		return nil, 0, nil
	}
	l := g.bodies
	br = &bodyReader{r: r.Body, closer: r.Body, minRate: l.MinRate, grace: l.Grace, now: g.now}
	if r.ContentLength < 0 {
		// A body of known length is already cut at it by net/http, and
		// that length is within maxBytes (checked above).
		br.r = http.MaxBytesReader(w, r.Body, maxBytes)
	}
	if l.MinRate > 0 {
		br.start = g.now()
		br.rc = *http.NewResponseController(w)
		br.hasRC = br.rc.SetReadDeadline(br.start.Add(l.Grace)) == nil
	}
	r.Body = br
	// How much to read before the slot: the whole body when its length is
	// known and small, else up to PreRead+1 bytes to learn whether a
	// chunked body is small.
	want := min(l.PreRead, maxBytes)
	if r.ContentLength >= 0 {
		if r.ContentLength > l.PreRead {
			return br, 0, nil // streams, under the rate deadline
		}
		want = r.ContentLength
	}
	if want <= 0 && r.ContentLength != 0 {
		return br, 0, nil
	}
	reserve := want
	if r.ContentLength < 0 {
		reserve = want + 1
	}
	if !g.budget.take(reserve) {
		return nil, 0, errBodyBudget(g.budget.max)
	}
	var buf []byte
	if r.ContentLength >= 0 {
		buf = make([]byte, want)
		_, err = io.ReadFull(br, buf)
	} else {
		buf, err = io.ReadAll(io.LimitReader(br, reserve))
	}
	if err != nil {
		g.budget.give(reserve)
		if f := br.failure(l); f != nil {
			return nil, 0, f
		}
		return nil, 0, badRequest("reading request body: "+err.Error(), err)
	}
	if r.ContentLength < 0 && int64(len(buf)) > want {
		// A chunked body larger than PreRead: what was read goes first,
		// the rest streams. The reservation holds until the call ends.
		r.Body = &prefixedBody{Reader: io.MultiReader(bytes.NewReader(buf), br), bodyReader: br}
		return br, reserve, nil
	}
	// Whole body in hand: the instance gets it with a length, and no
	// 100-continue dance (the client already sent it).
	chunked := r.ContentLength < 0
	// io.NopCloser over a bytes.Reader, which net/http's transport knows
	// is in memory: it then sends headers and body in one write.
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.ContentLength = int64(len(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	r.Header.Del("Transfer-Encoding")
	r.Header.Del("Expect")
	if chunked {
		// A known length came with its header. Nothing sends that header
		// on: both proxies write Content-Length from r.ContentLength.
		r.Header.Set("Content-Length", strconv.Itoa(len(buf)))
	}
	if used := int64(len(buf)); used < reserve {
		// Free what a chunked body did not use of its reservation.
		g.budget.give(reserve - used)
		reserve = used
	}
	return nil, reserve, nil
}

// prefixedBody replays the bytes read before the call, then the rest.
type prefixedBody struct {
	io.Reader
	*bodyReader
}

func (p *prefixedBody) Read(b []byte) (int, error) { return p.Reader.Read(b) }

// checkInstanceLimit refuses a spec asking for more instances of one
// function than the server allows, naming the field the author wrote.
func (g *Gateway) checkInstanceLimit(f *spec.Function) error {
	limit := g.maxPerFunction
	if limit <= 0 {
		return nil
	}
	field, n := "scaling.max", f.Scaling.Max
	if f.Scaling.Min > limit {
		field, n = "scaling.min", f.Scaling.Min // max then defaults to min
	}
	if n <= limit {
		return nil
	}
	return &errkind.Error{Kind: errkind.Invalid, Code: "invalid_spec",
		Msg: fmt.Sprintf("invalid spec for %q: %s: %d exceeds this server's limit of %d instances per function (--max-instances-per-function)", f.Name, field, n, limit)}
}
