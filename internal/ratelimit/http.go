package ratelimit

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/problem"
)

// Header names (IETF draft "RateLimit header fields for HTTP").
const (
	HeaderLimit     = "RateLimit-Limit"
	HeaderRemaining = "RateLimit-Remaining"
	HeaderReset     = "RateLimit-Reset"
)

// The same names as net/http's Header map keys them
// (http.CanonicalHeaderKey), for setting them without a Set.
const (
	canonicalLimit     = "Ratelimit-Limit"
	canonicalRemaining = "Ratelimit-Remaining"
	canonicalReset     = "Ratelimit-Reset"
)

// seconds rounds up to whole seconds: a client told "0" would retry at once
// and be refused again.
func seconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}

// SetHeaders writes the RateLimit-* headers (when a rate applies) and, for
// a refusal, Retry-After (at least 1 second).
func (d Decision) SetHeaders(h http.Header) {
	if d.Limit > 0 {
		// One array for the three values: this runs on every limited
		// call, and a Set each would allocate three slices.
		v := &[3]string{}
		reset := seconds(d.Reset)
		if d.Limit < 100 && d.Remaining < 100 && reset < 100 {
			// strconv keeps these as constants: no allocation.
			v[0], v[1], v[2] = strconv.Itoa(d.Limit), strconv.Itoa(d.Remaining), strconv.Itoa(reset)
		} else {
			// One string holds all three runs of digits, each value a
			// substring of it: one allocation, not one per value.
			var buf [3 * 20]byte
			b := strconv.AppendInt(buf[:0], int64(d.Limit), 10)
			i := len(b)
			b = strconv.AppendInt(b, int64(d.Remaining), 10)
			j := len(b)
			s := string(strconv.AppendInt(b, int64(reset), 10))
			v[0], v[1], v[2] = s[:i], s[i:j], s[j:]
		}
		h[canonicalLimit], h[canonicalRemaining], h[canonicalReset] = v[0:1:1], v[1:2:2], v[2:3:3]
	}
	if !d.Allowed {
		h.Set("Retry-After", strconv.Itoa(max(1, seconds(d.RetryAfter))))
	}
}

// Error is a refusal as an error, for handlers that return errors; the
// gateway's renderer maps it with errors.As to 429 + Decision.SetHeaders.
type Error struct{ Decision Decision }

func (e *Error) Error() string {
	what := "rate limit"
	if e.Decision.Reason == "concurrency" {
		what = "concurrency limit"
	}
	name := "request"
	switch d := e.Decision; {
	case d.Kind != "":
		name = d.Kind + " " + strconv.Quote(d.Name)
	case d.Name != "":
		name = d.Name
	}
	return fmt.Sprintf("%s of %s exceeded; retry in %ds", what, name, max(1, seconds(e.Decision.RetryAfter)))
}

// Err returns nil when d allowed the request, else an *Error.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &Error{Decision: d}
}

// WriteTooMany answers 429 with the headers of d and a JSON error body
// (Ember's envelope, which OpenAI clients also read).
func WriteTooMany(w http.ResponseWriter, d Decision) {
	p := problem.Classify(&Error{Decision: d}, time.Time{})
	if d.Reason == "concurrency" {
		p.Code = "concurrency_limited"
	}
	problem.WriteEmber(w, p)
}

// ErrorKind, ErrorCode and SetHeaders give errkind.Classify a 429 with
// the RateLimit-* headers and Retry-After.
func (e *Error) ErrorKind() errkind.Kind  { return errkind.RateLimited }
func (e *Error) ErrorCode() string        { return "rate_limited" }
func (e *Error) SetHeaders(h http.Header) { e.Decision.SetHeaders(h) }

// Middleware limits each request by the spec that spec returns for it
// (ok false: unlimited). Allowed requests get the RateLimit-* headers and
// hold their concurrency slot until the handler returns; refused ones get
// WriteTooMany. now is the clock (time.Now in production). One spec, not a
// slice: this runs on every call, and a returned slice is an allocation.
func (l *Limiter) Middleware(now func() time.Time, spec func(*http.Request) (Spec, bool)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, ok := spec(r)
			if !ok {
				next.ServeHTTP(w, r)
				return
			}
			d, release := l.Acquire(now(), s)
			if !d.Allowed {
				WriteTooMany(w, d)
				return
			}
			defer release()
			d.SetHeaders(w.Header())
			next.ServeHTTP(w, r)
		})
	}
}
