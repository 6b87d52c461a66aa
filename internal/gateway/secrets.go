package gateway

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/spec"
)

// SecretStore keeps secrets (store/sqlite). Values leave it only to start
// an instance (the process driver reads them) or to fill a route's headers.
type SecretStore interface {
	PutSecret(ctx context.Context, name string, value []byte, now time.Time) (api.Secret, bool, error)
	SecretValue(ctx context.Context, name string) ([]byte, bool, error)
	DeleteSecret(ctx context.Context, name string) (bool, error)
	ListSecrets(ctx context.Context) ([]api.Secret, error)
}

// Bounds of the secret store.
const (
	// MaxSecretBytes bounds one secret's value.
	MaxSecretBytes = 64 << 10
	// MaxSecrets bounds how many secrets a server keeps.
	MaxSecrets = 1000
)

// secrets serves /v1/secrets: admin only, and no answer ever holds a value.
type secrets struct {
	store SecretStore
	now   func() time.Time
	putMu sync.Mutex // serialises puts, so the count bound holds
}

func (g *Gateway) secretsEnabled() (*secrets, error) {
	if g.secrets == nil {
		return nil, &errkind.Error{Kind: errkind.NotFound, Code: "secrets_disabled", Msg: "secrets are not enabled on this server"}
	}
	return g.secrets, nil
}

func unknownSecret(name string) error {
	return &errkind.Error{Kind: errkind.NotFound, Code: "unknown_secret", Msg: fmt.Sprintf("unknown secret %q", name)}
}

// putSecret is PUT /v1/secrets/{name}: the body is the value, as is.
func (g *Gateway) putSecret(w http.ResponseWriter, r *http.Request) error {
	s, err := g.secretsEnabled()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if !spec.ValidSecretName(name) {
		return badRequest(fmt.Sprintf("secret name: invalid %q (want %s)", name, spec.SecretNameRule), nil)
	}
	if r.ContentLength > MaxSecretBytes {
		return badRequest(fmt.Sprintf("secret %q: value larger than %d bytes", name, MaxSecretBytes), nil)
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSecretBytes))
	if err != nil {
		return err
	}
	if len(value) == 0 {
		return badRequest(fmt.Sprintf("secret %q: empty value", name), nil)
	}
	if slices.Contains(value, 0) {
		return badRequest(fmt.Sprintf("secret %q: value holds a NUL byte, which no environment variable or header can", name), nil)
	}
	s.putMu.Lock()
	defer s.putMu.Unlock()
	if _, exists, err := s.store.SecretValue(r.Context(), name); err != nil {
		return err
	} else if !exists {
		list, err := s.store.ListSecrets(r.Context())
		if err != nil {
			return err
		}
		if len(list) >= MaxSecrets {
			return &errkind.Error{Kind: errkind.Conflict, Code: "too_many_secrets",
				Msg: fmt.Sprintf("this server keeps at most %d secrets; remove one first (ember secrets rm NAME)", MaxSecrets)}
		}
	}
	rec, created, err := s.store.PutSecret(r.Context(), name, value, s.now())
	if err != nil {
		return err
	}
	g.logger.Info("secret set", "secret", name, "created", created) // never the value
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, api.SecretPutResult{Secret: rec, Created: created})
	return nil
}

// listSecrets is GET /v1/secrets: names and times, never values.
func (g *Gateway) listSecrets(w http.ResponseWriter, r *http.Request) error {
	s, err := g.secretsEnabled()
	if err != nil {
		return err
	}
	list, err := s.store.ListSecrets(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []api.Secret{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// deleteSecret is DELETE /v1/secrets/{name}. Running instances keep the
// value they started with; a later start of a function naming it fails
// with a start error that names the secret.
func (g *Gateway) deleteSecret(w http.ResponseWriter, r *http.Request) error {
	s, err := g.secretsEnabled()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	existed, err := s.store.DeleteSecret(r.Context(), name)
	if err != nil {
		return err
	}
	if !existed {
		return unknownSecret(name)
	}
	g.logger.Info("secret removed", "secret", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// checkSpecSecrets refuses a spec whose env names a secret that does not
// exist, naming the variable and the secret.
func (g *Gateway) checkSpecSecrets(ctx context.Context, f *spec.Function) error {
	refs := f.Env.Secrets()
	if len(refs) == 0 {
		return nil
	}
	var errs []*spec.FieldError
	for _, k := range slices.Sorted(maps.Keys(refs)) {
		name := refs[k]
		field := "env." + k + ".secret"
		if g.secrets == nil {
			errs = append(errs, &spec.FieldError{Field: field, Reason: "secrets are not enabled on this server"})
			continue
		}
		_, ok, err := g.secrets.store.SecretValue(ctx, name)
		if err != nil {
			return err
		}
		if !ok {
			errs = append(errs, &spec.FieldError{Field: field, Reason: fmt.Sprintf("secret %q does not exist (create it with: ember secrets set %s)", name, name)})
		}
	}
	if len(errs) > 0 {
		return &spec.ValidationError{Function: f.Name, Errs: errs}
	}
	return nil
}
