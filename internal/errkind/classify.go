package errkind

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Problem is what a client is told about an error, before a wire shape
// gives it a body.
type Problem struct {
	Kind       Kind
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
	var k Kinded
	var mbe *http.MaxBytesError
	var p Problem
	switch {
	case errors.As(err, &k):
		p = Problem{Kind: k.ErrorKind(), Code: k.ErrorCode(), Msg: err.Error()}
		if e, ok := k.(*Error); ok {
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
		p = Problem{Kind: TooLarge, Code: "body_too_large",
			Msg: "request body too large: limit is " + strconv.FormatInt(mbe.Limit, 10) + " bytes"}
	case errors.Is(err, context.DeadlineExceeded):
		p = Problem{Kind: Timeout, Code: "timeout", Msg: "request timed out: " + err.Error()}
	case errors.Is(err, context.Canceled):
		p = Problem{Kind: Canceled, Code: "client_closed", Msg: "client closed the request"}
	default:
		p = Problem{Kind: Internal, Code: "internal", Msg: "internal error"}
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
	if p.Kind == Unauthenticated {
		h.Set("WWW-Authenticate", `Bearer realm="ember"`)
	}
}
