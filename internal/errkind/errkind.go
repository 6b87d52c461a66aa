// Package errkind is the error vocabulary: an error carries a Kind (not
// found, rate limited, upstream...) and a stable code that clients match
// on. Packages declare their sentinels with New (or give a typed error
// the ErrorKind and ErrorCode methods) and return them wrapped with %w;
// they never write a response themselves. internal/problem turns a kind
// into a status and a body, once per wire shape. It imports only time, so
// pure packages (spec, and through it route and cost) may use it.
package errkind

import "time"

// Kind is what went wrong, as far as a client is concerned.
type Kind uint8

// The kinds. Each has one HTTP status (Status).
const (
	Internal        Kind = iota // 500: a bug or a broken dependency; the client learns nothing more
	Invalid                     // 400: the request is malformed or breaks a rule
	Unauthenticated             // 401: no usable credential
	Forbidden                   // 403: the credential does not cover this
	NotFound                    // 404
	SlowClient                  // 408: the client sent its body too slowly
	Conflict                    // 409: the name or state is taken
	Gone                        // 410: it existed and has expired
	TooLarge                    // 413
	RateLimited                 // 429: a limit or budget; retry later
	Canceled                    // 499: the client went away
	Upstream                    // 502: the instance or target failed
	Unavailable                 // 503: no capacity now; retry later
	Timeout                     // 504: the call ran past its deadline
	Unprocessable               // 422: well-formed, but the input does not fit the function's declared schema
)

// StatusClientClosed is the de-facto status for a client that went away.
const StatusClientClosed = 499

// statuses are the HTTP statuses of the kinds (net/http's names in the
// comments; the numbers keep this package free of net/http).
var statuses = [...]int{
	Internal:        500, // StatusInternalServerError
	Invalid:         400, // StatusBadRequest
	Unauthenticated: 401, // StatusUnauthorized
	Forbidden:       403, // StatusForbidden
	NotFound:        404, // StatusNotFound
	SlowClient:      408, // StatusRequestTimeout
	Conflict:        409, // StatusConflict
	Gone:            410, // StatusGone
	TooLarge:        413, // StatusRequestEntityTooLarge
	RateLimited:     429, // StatusTooManyRequests
	Canceled:        StatusClientClosed,
	Upstream:        502, // StatusBadGateway
	Unavailable:     503, // StatusServiceUnavailable
	Timeout:         504, // StatusGatewayTimeout
	Unprocessable:   422, // StatusUnprocessableEntity
}

// Status is k's HTTP status.
func (k Kind) Status() int {
	if int(k) < len(statuses) {
		return statuses[k]
	}
	return 500
}

// FromStatus is the kind whose status is s (Internal when none is).
func FromStatus(s int) Kind {
	for k, st := range statuses {
		if st == s {
			return Kind(k)
		}
	}
	return Internal
}

// Error is an error with what the client is told: a kind, a stable code
// and a message. Err, when set, is the cause for the log only: Msg alone
// reaches the client. Without Err, the client reads the error's whole
// text, so a sentinel wrapped as fmt.Errorf("%w %q", ErrUnknown, name)
// keeps its detail.
type Error struct {
	Kind       Kind
	Code       string
	Msg        string
	RetryAfter time.Duration // sets Retry-After when > 0
	Err        error
}

// New is an error of kind with code and msg, for sentinels and replies.
func New(kind Kind, code, msg string) *Error { return &Error{Kind: kind, Code: code, Msg: msg} }

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorKind and ErrorCode make *Error a Kinded error.
func (e *Error) ErrorKind() Kind   { return e.Kind }
func (e *Error) ErrorCode() string { return e.Code }

// Kinded is an error that knows its kind and code: an *Error, or a typed
// error such as activator.StartFailedError or spec.ValidationError. The
// client reads the error's whole text (for an *Error with Err, Msg).
type Kinded interface {
	error
	ErrorKind() Kind
	ErrorCode() string
}
