package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/ember-run/ember/internal/activator"
	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/controller"
	"github.com/ember-run/ember/internal/instance"
	"github.com/ember-run/ember/internal/proxy"
	"github.com/ember-run/ember/internal/ratelimit"
	"github.com/ember-run/ember/internal/spec"
)

// httpError is an error with the status and message the client sees; Err
// is what the log sees.
type httpError struct {
	Status     int
	Code       string
	Type       string // OpenAI error class, set where OpenAI clients read it (auth, limits)
	Msg        string
	RetryAfter time.Duration
	Err        error
	limit      *ratelimit.Decision // sets RateLimit-* headers
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *httpError) Unwrap() error { return e.Err }

func badRequest(msg string, err error) error {
	return &httpError{Status: http.StatusBadRequest, Code: "bad_request", Msg: msg, Err: err}
}

// StatusClientClosed is the de-facto status for a client that went away.
const StatusClientClosed = 499

// classify maps an error to what the client sees. It is the one place
// where error kinds become HTTP statuses.
func classify(err error, now time.Time) *httpError {
	var he *httpError
	var ve *spec.ValidationError
	var qf *activator.QueueFullError
	var sf *activator.StartFailedError
	var ue *proxy.UpstreamError
	var mbe *http.MaxBytesError
	var ae *auth.Error
	var le *ratelimit.Error
	switch {
	case errors.As(err, &ae):
		typ := "authentication_error"
		if ae.Status == http.StatusForbidden {
			typ = "permission_error"
		}
		return &httpError{Status: ae.Status, Code: ae.Code, Type: typ, Msg: ae.Message}
	case errors.As(err, &le):
		return &httpError{Status: http.StatusTooManyRequests, Code: "rate_limited", Type: "rate_limit_error", Msg: le.Error(), RetryAfter: le.Decision.RetryAfter, limit: &le.Decision}
	case errors.As(err, &he):
		return he
	case errors.As(err, &mbe):
		return &httpError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Msg: "request body too large: limit is " + strconv.FormatInt(mbe.Limit, 10) + " bytes"}
	case errors.As(err, &ve):
		return &httpError{Status: http.StatusBadRequest, Code: "invalid_spec", Msg: ve.Error()}
	case errors.Is(err, activator.ErrUnknownFunction), errors.Is(err, controller.ErrNotFound):
		return &httpError{Status: http.StatusNotFound, Code: "unknown_function", Msg: err.Error()}
	case errors.Is(err, controller.ErrPrepare):
		return &httpError{Status: http.StatusBadGateway, Code: "prepare_failed", Msg: err.Error()}
	case errors.As(err, &qf):
		return &httpError{Status: http.StatusServiceUnavailable, Code: "queue_full", Msg: err.Error(), RetryAfter: time.Second}
	case errors.Is(err, instance.ErrBudgetExceeded):
		return &httpError{Status: http.StatusTooManyRequests, Code: "budget_exceeded", Msg: err.Error(), RetryAfter: time.Minute}
	case errors.As(err, &sf):
		ra := max(sf.RetryAt.Sub(now), time.Second)
		return &httpError{Status: http.StatusServiceUnavailable, Code: "start_failed", Msg: err.Error(), RetryAfter: ra}
	case errors.As(err, &ue):
		return &httpError{Status: http.StatusBadGateway, Code: "upstream_error", Msg: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &httpError{Status: http.StatusGatewayTimeout, Code: "timeout", Msg: "request timed out: " + err.Error()}
	case errors.Is(err, context.Canceled):
		return &httpError{Status: StatusClientClosed, Code: "client_closed", Msg: "client closed the request"}
	}
	return &httpError{Status: http.StatusInternalServerError, Code: "internal", Msg: "internal error", Err: err}
}

// writeError renders err as the JSON error envelope.
func (g *Gateway) writeError(w http.ResponseWriter, r *http.Request, err error) int {
	he := classify(err, g.now())
	if he.limit != nil {
		he.limit.SetHeaders(w.Header())
	}
	if he.RetryAfter > 0 && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(he.RetryAfter.Seconds()))))
	}
	level := slog.LevelInfo
	if he.Status >= 500 {
		level = slog.LevelWarn
	}
	g.logger.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "status", he.Status, "err", err)
	writeJSON(w, he.Status, api.Error{Error: api.ErrorBody{Code: he.Code, Message: he.Msg, Type: he.Type}})
	return he.Status
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
