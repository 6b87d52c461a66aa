package problem

import (
	"encoding/json"
	"net/http"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/errkind"
)

// openAIType is OpenAI's error class for a status; Ember's envelope
// carries it for the errors OpenAI clients act on (keys, limits).
func openAIType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// WriteEmber answers with p in Ember's envelope,
// {"error": {"code", "message", "type"}}; type only for 401, 403 and 429.
func WriteEmber(w http.ResponseWriter, p Problem) {
	p.SetHeaders(w.Header())
	body := api.ErrorBody{Code: p.Code, Message: p.Msg}
	switch p.Kind {
	case errkind.Unauthenticated, errkind.Forbidden, errkind.RateLimited:
		body.Type = openAIType(p.Status)
	}
	writeJSON(w, p.Status, api.Error{Error: body})
}

// WriteOpenAI answers with p in OpenAI's shape,
// {"error": {"message", "type", "code"}}, type from the status.
func WriteOpenAI(w http.ResponseWriter, p Problem) {
	p.SetHeaders(w.Header())
	writeJSON(w, p.Status, api.Error{Error: api.ErrorBody{Message: p.Msg, Type: openAIType(p.Status), Code: p.Code}})
}

// replicateBody is Ember's envelope plus Replicate's "detail" and
// "status", which Replicate clients print.
type replicateBody struct {
	api.Error
	Detail string `json:"detail"`
	Status int    `json:"status"`
}

// WriteReplicate answers with p in Replicate's shape: Ember's envelope
// plus "detail" and "status".
func WriteReplicate(w http.ResponseWriter, p Problem) {
	p.SetHeaders(w.Header())
	writeJSON(w, p.Status, replicateBody{Error: api.Error{Error: api.ErrorBody{Code: p.Code, Message: p.Msg}}, Detail: p.Msg, Status: p.Status})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
