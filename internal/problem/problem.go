// Package problem is where errors become what clients see: Classify reads
// an error's kind (internal/errkind) into a status, code, message and
// headers, and one writer per wire shape (Ember's envelope, OpenAI's,
// Replicate's) renders it. No other package maps errors to statuses.
package problem

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/ember-run/ember/internal/errkind"
)

// retryAfterer is a Kinded error whose Retry-After depends on the time
// (a start that backs off until a moment).
type retryAfterer interface {
	RetryAfter(now time.Time) time.Duration
}

// headerSetter is an error that adds its own headers (RateLimit-*).
type headerSetter interface {
	SetHeaders(h http.Header)
}

// Problem is what a client is told about an error, before a wire shape
// gives it a body.
type Problem struct {
	Kind       errkind.Kind
	Status     int
	Code       string
	Msg        string
	RetryAfter time.Duration
	// header, when set, adds the error's own headers (RateLimit-*).
	header headerSetter
}

// Classify is the one place where errors become what clients see. The
// outermost error in err's chain that has a kind decides; std errors
// (a body over its limit, a deadline, a client gone) have fixed ones;
// anything else is Internal, with no detail.
func Classify(err error, now time.Time) Problem {
	var k errkind.Kinded
	var mbe *http.MaxBytesError
	var p Problem
	switch {
	case errors.As(err, &k):
		p = Problem{Kind: k.ErrorKind(), Code: k.ErrorCode(), Msg: err.Error()}
		if e, ok := k.(*errkind.Error); ok {
			p.RetryAfter = e.RetryAfter
			if e.Err != nil {
				p.Msg = e.Msg // Err is for the log
			}
		}
		if ra, ok := k.(retryAfterer); ok {
			p.RetryAfter = ra.RetryAfter(now)
		}
		if hs, ok := k.(headerSetter); ok {
			p.header = hs
		}
	case errors.As(err, &mbe):
		p = Problem{Kind: errkind.TooLarge, Code: "body_too_large",
			Msg: "request body too large: limit is " + strconv.FormatInt(mbe.Limit, 10) + " bytes"}
	case errors.Is(err, context.DeadlineExceeded):
		p = Problem{Kind: errkind.Timeout, Code: "timeout", Msg: "request timed out: " + err.Error()}
	case errors.Is(err, context.Canceled):
		p = Problem{Kind: errkind.Canceled, Code: "client_closed", Msg: "client closed the request"}
	default:
		p = Problem{Kind: errkind.Internal, Code: "internal", Msg: "internal error"}
	}
	p.Status = p.Kind.Status()
	return p
}

// SetHeaders writes p's headers: the error's own (RateLimit-*) and
// Retry-After in whole seconds, rounded up, unless one is set already.
func (p Problem) SetHeaders(h http.Header) {
	if p.header != nil {
		p.header.SetHeaders(h)
	}
	if p.RetryAfter > 0 && h.Get("Retry-After") == "" {
		h.Set("Retry-After", strconv.Itoa(int((p.RetryAfter+time.Second-1)/time.Second)))
	}
	if p.Kind == errkind.Unauthenticated {
		h.Set("WWW-Authenticate", `Bearer realm="ember"`)
	}
}
