package auth

import (
	"errors"
	"net/http"
	"time"

	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/problem"
)

// Error is an authentication (401) or authorisation (403) failure. Message
// says what is missing and is safe to show the caller.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// ErrorKind and ErrorCode give errkind.Classify the status and code.
func (e *Error) ErrorKind() errkind.Kind { return errkind.FromStatus(e.Status) }
func (e *Error) ErrorCode() string       { return e.Code }

// The 401 errors. Callers match them with errors.Is; the gateway's error
// renderer can use errors.As(err, **Error) for any auth failure.
var (
	ErrMissingKey = &Error{Status: http.StatusUnauthorized, Code: "missing_api_key",
		Message: "missing API key: send the header Authorization: Bearer <key>"}
	ErrInvalidKey = &Error{Status: http.StatusUnauthorized, Code: "invalid_api_key",
		Message: "invalid API key"}
	ErrKeyRevoked = &Error{Status: http.StatusUnauthorized, Code: "api_key_revoked",
		Message: "API key has been revoked"}
	ErrKeyExpired = &Error{Status: http.StatusUnauthorized, Code: "api_key_expired",
		Message: "API key has expired"}
)

// WriteError writes err as Ember's JSON error envelope. An *Error keeps its
// status and code; anything else is a 500 without details.
func WriteError(w http.ResponseWriter, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		err = &errkind.Error{Kind: errkind.Internal, Code: "internal_error", Msg: "internal error", Err: err}
	}
	problem.WriteEmber(w, problem.Classify(err, time.Time{}))
}
