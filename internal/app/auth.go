package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/config"
	"github.com/ember-run/ember/internal/gateway"
	"github.com/ember-run/ember/internal/ratelimit"
)

// secure builds the two middlewares that go in front of the gateway, the
// authenticator (identifies the caller) and the per-key rate and
// concurrency limits, mounts the keys API, and makes sure an admin key
// exists; it also returns the authenticator (nil when auth is off), whose
// key cache the store watch clears. With auth off both are the identity.
func secure(ctx context.Context, cfg config.Config, db auth.KeyEnsurer, gw *gateway.Gateway, logger *slog.Logger) (authenticate, limitKeys func(http.Handler) http.Handler, authn *auth.Authenticator, err error) {
	if !cfg.Auth {
		logger.Warn("authentication is OFF (--auth=false): anyone who can reach " + cfg.Addr + " can deploy and run anything")
		same := func(h http.Handler) http.Handler { return h }
		return same, same, nil, nil
	}
	a := auth.New(db, auth.Options{Logger: logger.With("component", "auth")})
	if err := adminKey(ctx, cfg, db, logger); err != nil {
		return nil, nil, nil, err
	}
	keys := a.KeysHandler()
	for _, p := range auth.KeysPatterns() {
		gw.Register(p, auth.RightAdmin, keys)
	}
	perKey := gw.Limiter().Middleware(time.Now, func(r *http.Request) (ratelimit.Spec, bool) {
		p := auth.FromContext(r.Context())
		if p == nil || (p.RatePerSec == 0 && p.MaxConcurrency == 0) {
			return ratelimit.Spec{}, false
		}
		return ratelimit.Spec{Kind: ratelimit.KindAPIKey, Key: p.KeyID, Name: p.Name,
			Limit: ratelimit.Limit{Rate: p.RatePerSec, Burst: p.Burst, MaxConcurrency: p.MaxConcurrency}}, true
	})
	return a.Middleware, perKey, a, nil
}

// adminKey makes sure an admin key exists. With --admin-key-file (a
// mounted Secret) that key is stored if absent, on every replica at once
// without a race, and nothing is written to the data dir. Otherwise the
// first start writes <data-dir>/admin.key.
func adminKey(ctx context.Context, cfg config.Config, db auth.KeyEnsurer, logger *slog.Logger) error {
	if cfg.AdminKeyFile != "" {
		secret, err := auth.ReadBootstrapKey(cfg.AdminKeyFile)
		if err != nil {
			return err
		}
		id, created, err := auth.BootstrapAdminKey(ctx, db, secret, time.Now())
		if err != nil {
			return fmt.Errorf("%w (from %s)", err, cfg.AdminKeyFile)
		}
		logger.Info("admin API key from --admin-key-file", "key_id", id, "stored_now", created, "path", cfg.AdminKeyFile)
		return nil
	}
	path, created, err := auth.EnsureAdminKey(ctx, db, cfg.DataDir, time.Now())
	if err != nil {
		return fmt.Errorf("admin key: %w", err)
	}
	if created {
		logger.Info("created an admin API key; the CLI reads it from this file (or set EMBER_API_KEY)", "path", path)
	} else if err := auth.CheckAdminKeyFile(ctx, db, cfg.DataDir, time.Now()); err != nil {
		// The keys in the database still work; only the CLI's default
		// credential is gone. Say how to get one back.
		how := "stop the server and run `ember keys reset-admin --data-dir " + cfg.DataDir + "` to write a new admin key"
		if kind, _, _ := cfg.StoreKind(); kind == "postgres" {
			// Another server on the database made the first admin key.
			how = "copy admin.key from the server that created it, or run `ember keys reset-admin --data-dir " + cfg.DataDir + "` with EMBER_STORE set"
		}
		logger.Warn(err.Error()+": the CLI cannot use it; "+how, "path", path)
	} else {
		logger.Info("admin API key file", "path", path)
	}
	return nil
}

// clusterToken returns the token gateways and controllers present to each
// other (--cluster-token-file or EMBER_CLUSTER_TOKEN), nil when neither
// is set; a token that is too short or readable by every user is an
// error naming the setting. Mount auth.Cluster(token) on /internal/v1/.
func clusterToken(cfg config.Config) (*auth.ClusterToken, error) {
	switch {
	case cfg.ClusterTokenFile != "":
		t, err := auth.ReadClusterTokenFile(cfg.ClusterTokenFile)
		if err != nil {
			return nil, fmt.Errorf("cluster-token-file: %w", err)
		}
		return t, nil
	case cfg.ClusterToken != "":
		t, err := auth.NewClusterToken(cfg.ClusterToken)
		if err != nil {
			return nil, fmt.Errorf("EMBER_CLUSTER_TOKEN: %w", err)
		}
		return t, nil
	}
	return nil, nil
}

// streamTokens loads (creating on first start) the key that signs
// prediction stream tokens.
func streamTokens(ctx context.Context, st jobStore) (*auth.StreamTokens, error) {
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
