package auth

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/ember-run/ember/internal/api"
)

// Error is an authentication (401) or authorisation (403) failure. Message
// says what is missing and is safe to show the caller.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

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
// status and code; anything else is a 500 without details. The body also
// carries an OpenAI-style "type", so OpenAI clients read it too.
func WriteError(w http.ResponseWriter, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		ae = &Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: "internal error"}
	}
	typ := "authentication_error"
	switch ae.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="ember"`)
	case http.StatusForbidden:
		typ = "permission_error"
	case http.StatusInternalServerError:
		typ = "server_error"
	default:
		typ = "invalid_request_error"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(ae.Status)
	_ = json.NewEncoder(w).Encode(api.Error{Error: api.ErrorBody{Code: ae.Code, Message: ae.Message, Type: typ}})
}
