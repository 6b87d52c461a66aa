package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// KeysHandler serves key management, admin scope only:
//
//	POST   /v1/keys        api.KeyCreate → 201 api.KeyCreated (the secret, shown once)
//	GET    /v1/keys        → []api.Key
//	DELETE /v1/keys/{ref}  revoke by id or unique name → 204
//
// Mount it inside Middleware on KeysPatterns() (RightAdmin in a Table), or on
// both "/v1/keys" and "/v1/keys/". It checks admin scope itself too.
func (a *Authenticator) KeysHandler() http.Handler {
	mux := http.NewServeMux()
	p := KeysPatterns()
	mux.HandleFunc(p[0], a.createKey)
	mux.HandleFunc(p[1], a.listKeys)
	mux.HandleFunc(p[2], a.revokeKey)
	return Require(ScopeAdmin)(mux)
}

// KeysPatterns are the routes KeysHandler serves.
func KeysPatterns() []string {
	return []string{"POST /v1/keys", "GET /v1/keys", "DELETE /v1/keys/{ref}"}
}

func badRequest(msg string) error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: msg}
}

func (a *Authenticator) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		a.logger.ErrorContext(r.Context(), "auth: key management failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	a.writeError(w, r, err)
}

func (a *Authenticator) createKey(w http.ResponseWriter, r *http.Request) {
	var req api.KeyCreate
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		a.fail(w, r, badRequest("invalid key request: "+err.Error()))
		return
	}
	rate, err := ParseRate(req.Rate)
	if err != nil {
		a.fail(w, r, badRequest("rate: "+err.Error()))
		return
	}
	ttl, err := ParseTTL(req.Expires)
	if err != nil {
		a.fail(w, r, badRequest("expires: "+err.Error()))
		return
	}
	n := NewKey{Name: req.Name, Scope: Scope(req.Scope), Functions: req.Functions, RatePerSec: rate,
		Burst: req.Burst, MaxConcurrency: req.MaxConcurrency, TTL: ttl}
	if err := n.Validate(); err != nil {
		a.fail(w, r, badRequest(err.Error()))
		return
	}
	k, secret, err := a.Create(r.Context(), n)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.KeyCreated{Key: wireKey(&k), Secret: secret})
}

func (a *Authenticator) listKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := a.store.ListKeys(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]api.Key, 0, len(keys))
	for i := range keys {
		out = append(out, wireKey(&keys[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Authenticator) revokeKey(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	keys, err := a.store.ListKeys(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	now := a.now()
	var target *Key
	var byName []*Key
	for i := range keys {
		k := &keys[i]
		if k.ID == ref {
			target = k
			break
		}
		if k.Name == ref && k.RevokedAt.IsZero() {
			byName = append(byName, k)
		}
	}
	if target == nil {
		switch len(byName) {
		case 0:
			a.fail(w, r, &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf("no key with id or name %q", ref)})
			return
		case 1:
			target = byName[0]
		default:
			a.fail(w, r, &Error{Status: http.StatusConflict, Code: "ambiguous",
				Message: fmt.Sprintf("%d active keys are named %q; revoke one by id", len(byName), ref)})
			return
		}
	}
	if target.Scope == ScopeAdmin && target.Active(now) {
		admins := 0
		for i := range keys {
			if keys[i].Scope == ScopeAdmin && keys[i].Active(now) {
				admins++
			}
		}
		if admins == 1 {
			a.fail(w, r, &Error{Status: http.StatusConflict, Code: "last_admin_key",
				Message: fmt.Sprintf("key %q is the last active admin key; create another admin key first", target.Name)})
			return
		}
	}
	if err := a.Revoke(r.Context(), target.ID); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func wireKey(k *Key) api.Key {
	out := api.Key{ID: k.ID, Name: k.Name, Scope: string(k.Scope), Functions: k.Functions,
		RatePerSec: k.RatePerSec, Burst: k.Burst, MaxConcurrency: k.MaxConcurrency, CreatedAt: k.CreatedAt}
	if !k.ExpiresAt.IsZero() {
		out.ExpiresAt = ptr(k.ExpiresAt)
	}
	if !k.RevokedAt.IsZero() {
		out.RevokedAt = ptr(k.RevokedAt)
	}
	return out
}

func ptr(t time.Time) *time.Time { return &t }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
