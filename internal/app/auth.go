package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/gateway"
	"github.com/ember-run/ember/internal/ratelimit"
	"github.com/ember-run/ember/internal/store/sqlite"
)

// secure puts API-key authentication and per-key limits in front of the
// gateway (outermost first: authenticate, then per-key rate and concurrency
// limits, then the gateway's own scope checks and per-function limits), and
// makes sure an admin key exists.
func secure(ctx context.Context, cfg config.Config, db *sqlite.DB, gw *gateway.Gateway, logger *slog.Logger) (http.Handler, error) {
	if !cfg.Auth {
		logger.Warn("authentication is OFF (--auth=false): anyone who can reach " + cfg.Addr + " can deploy and run anything")
		return gw, nil
	}
	var open []string
	if cfg.OpenMetrics {
		open = []string{"/metrics", "/healthz", "/readyz"}
	}
	a := auth.New(db, auth.Options{Open: open, Logger: logger.With("component", "auth")})
	path, created, err := auth.EnsureAdminKey(ctx, db, cfg.DataDir, time.Now())
	if err != nil {
		return nil, fmt.Errorf("admin key: %w", err)
	}
	if created {
		logger.Info("created an admin API key; the CLI reads it from this file (or set EMBER_API_KEY)", "path", path)
	} else {
		logger.Info("admin API key file", "path", path)
	}
	gw.RequireAuth()
	keys := a.KeysHandler()
	gw.Handle("/v1/keys", keys)
	gw.Handle("/v1/keys/", keys)
	perKey := gw.Limiter().Middleware(time.Now, func(r *http.Request) []ratelimit.Spec {
		p := auth.FromContext(r.Context())
		if p == nil || (p.RatePerSec == 0 && p.MaxConcurrency == 0) {
			return nil
		}
		return []ratelimit.Spec{{Key: "key:" + p.KeyID, Name: fmt.Sprintf("API key %q", p.Name),
			Limit: ratelimit.Limit{Rate: p.RatePerSec, Burst: p.Burst, MaxConcurrency: p.MaxConcurrency}}}
	})
	return a.Middleware(perKey(gw)), nil
}

// streamTokens loads (creating on first start) the key that signs
// prediction stream tokens.
func streamTokens(ctx context.Context, st *sqlite.Jobs) (*auth.StreamTokens, error) {
	enc, err := st.StreamTokenKey(ctx, auth.GenerateStreamTokenKey)
	if err != nil {
		return nil, fmt.Errorf("stream token key: %w", err)
	}
	key, err := auth.DecodeStreamTokenKey(enc)
	if err != nil {
		return nil, err
	}
	return auth.NewStreamTokens(key, auth.DefaultStreamTokenTTL)
}

// streamTokenAuth lets a request for a prediction's stream that carries
// no API key but a stream token (urls.stream?token=…) skip key
// authentication: the token is verified here and the request reaches gw
// with a capability for that one prediction, which only Subscribe honours.
// Every other request, and any request with an Authorization header, goes
// to authed (key authentication and per-key limits).
func streamTokenAuth(tokens *auth.StreamTokens, gw, authed http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := streamPath(r)
		if !ok || r.Header.Get("Authorization") != "" || !r.URL.Query().Has("token") {
			authed.ServeHTTP(w, r)
			return
		}
		if err := tokens.VerifyStreamToken(id, r.URL.Query().Get("token"), time.Now()); err != nil {
			auth.WriteError(w, err)
			return
		}
		gw.ServeHTTP(w, r.WithContext(auth.WithStreamCapability(r.Context(), id)))
	})
}

// streamPath returns the prediction id of GET /v1/predictions/{id}/stream,
// as the gateway's mux would match it (one clean path segment).
func streamPath(r *http.Request) (string, bool) {
	if r.Method != http.MethodGet {
		return "", false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/predictions/")
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, "/stream")
	if !ok || id == "" || id == "." || id == ".." || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}
