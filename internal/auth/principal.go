package auth

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// Principal is the authenticated caller of a request: the key's identity,
// rights and limits, without its hash.
type Principal struct {
	KeyID string
	Name  string
	Scope Scope
	// Functions limits an invoke key (see Key.Functions); empty means all.
	Functions      []string
	RatePerSec     float64
	Burst          int
	MaxConcurrency int
}

func principalOf(k *Key) *Principal {
	return &Principal{
		KeyID: k.ID, Name: k.Name, Scope: k.Scope, Functions: k.Functions,
		RatePerSec: k.RatePerSec, Burst: k.Burst, MaxConcurrency: k.MaxConcurrency,
	}
}

// Has reports whether p holds scope. Admin implies every other scope.
func (p *Principal) Has(scope Scope) bool {
	if p == nil {
		return false
	}
	return p.Scope == ScopeAdmin || p.Scope == scope
}

// MayInvoke reports whether p may run fn (a function or route name).
func (p *Principal) MayInvoke(fn string) bool {
	if !p.Has(ScopeInvoke) {
		return false
	}
	if p.Scope == ScopeAdmin || len(p.Functions) == 0 {
		return true
	}
	for _, pat := range p.Functions {
		if ok, _ := path.Match(pat, fn); ok {
			return true
		}
	}
	return false
}

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the request's principal; nil when the request was
// not authenticated (an open path).
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}

// Check returns nil if the request's principal holds scope, else an *Error
// (401 without a principal, 403 with one).
func Check(ctx context.Context, scope Scope) error {
	return checkScope(FromContext(ctx), scope)
}

func checkScope(p *Principal, scope Scope) error {
	switch {
	case p == nil:
		return ErrMissingKey
	case !p.Has(scope):
		return &Error{Status: http.StatusForbidden, Code: "insufficient_scope",
			Message: fmt.Sprintf("API key %q has scope %s; this needs scope %s", p.Name, p.Scope, scope)}
	}
	return nil
}

// AllowFunction returns nil if p may invoke fn, else an *Error: 401 for a
// nil principal, 403 naming the function and what the key covers.
func AllowFunction(p *Principal, fn string) error {
	switch {
	case p == nil:
		return ErrMissingKey
	case p.MayInvoke(fn):
		return nil
	case !p.Has(ScopeInvoke):
		return &Error{Status: http.StatusForbidden, Code: "insufficient_scope",
			Message: fmt.Sprintf("API key %q has scope %s; invoking needs scope invoke", p.Name, p.Scope)}
	}
	quoted := make([]string, len(p.Functions))
	for i, f := range p.Functions {
		quoted[i] = strconv.Quote(f)
	}
	return &Error{Status: http.StatusForbidden, Code: "function_not_allowed",
		Message: fmt.Sprintf("API key %q may not invoke %q (it covers %s)", p.Name, fn, strings.Join(quoted, ", "))}
}

// Require returns middleware that answers 403 (401 without a principal)
// unless the request's principal holds scope. It must run inside
// Authenticator.Middleware.
func Require(scope Scope) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := Check(r.Context(), scope); err != nil {
				WriteError(w, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
