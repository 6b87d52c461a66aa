package gateway

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/problem"
)

func badRequest(msg string, err error) error {
	return &errkind.Error{Kind: errkind.Invalid, Code: "bad_request", Msg: msg, Err: err}
}

// StatusClientClosed is the de-facto status for a client that went away.
const StatusClientClosed = errkind.StatusClientClosed

// writeError renders err in Ember's error envelope (errkind decides the
// status, code and headers) and logs it.
func (g *Gateway) writeError(w http.ResponseWriter, r *http.Request, err error) int {
	p := problem.Classify(err, g.now())
	level := slog.LevelInfo
	if p.Status >= 500 {
		level = slog.LevelWarn
	}
	g.logger.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", err)
	problem.WriteEmber(w, p)
	return p.Status
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
