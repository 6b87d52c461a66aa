package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// DefaultCacheTTL is how long a looked-up key is trusted without asking the
// store again. Revocations made through this Authenticator apply at once;
// expiry is checked on every request. Only a revocation written to the
// store behind its back can take this long to apply, unless someone calls
// Forget for it (the server's store watch does, within --store-poll).
const DefaultCacheTTL = 10 * time.Second

// Options configure an Authenticator.
type Options struct {
	// CacheTTL bounds how long a key record is cached; 0 takes
	// DefaultCacheTTL, negative disables the cache.
	CacheTTL time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger gets failures of the store (not of callers' keys).
	Logger *slog.Logger
	// WriteError renders a failure; auth.WriteError when nil.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
}

// Authenticator checks bearer keys against a KeyStore.
type Authenticator struct {
	store      KeyStore
	ttl        time.Duration
	now        func() time.Time
	logger     *slog.Logger
	writeError func(w http.ResponseWriter, r *http.Request, err error)

	mu    sync.Mutex // guards cache
	cache map[string]*cached
}

type cached struct {
	key Key
	// principal is principalOf(&key), made once per fetch and shared by
	// every call the entry serves (read-only): one allocation and two
	// copies of the key fewer per call.
	principal *Principal
	fetched   time.Time
}

// New returns an Authenticator over store.
func New(store KeyStore, opts Options) *Authenticator {
	a := &Authenticator{
		store: store, ttl: opts.CacheTTL, now: opts.Now,
		logger: opts.Logger, writeError: opts.WriteError, cache: map[string]*cached{},
	}
	if a.ttl == 0 {
		a.ttl = DefaultCacheTTL
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	if a.writeError == nil {
		a.writeError = func(w http.ResponseWriter, _ *http.Request, err error) { WriteError(w, err) }
	}
	return a
}

// Middleware identifies the caller: a request with an Authorization header
// gets its Principal in the context (see FromContext), or a 401 at once for
// an unknown, revoked or expired key; a request without one goes on with no
// Principal. It decides nothing else: each route's right (Table) and the
// handler's function checks (AllowFunction) refuse what needs a key.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A node's call that the Cluster guard admitted carries the
		// cluster token, which is no API key.
		if len(r.Header.Values("Authorization")) == 0 || IsCluster(r.Context()) {
			next.ServeHTTP(w, r)
			return
		}
		p, err := a.Authenticate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

// Authenticate checks an Authorization header value ("Bearer <key>").
// Errors are *Error values for the caller's fault (ErrMissingKey,
// ErrInvalidKey, ErrKeyRevoked, ErrKeyExpired) and wrapped store errors
// otherwise.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (*Principal, error) {
	scheme, secret, _ := strings.Cut(strings.TrimSpace(header), " ")
	secret = strings.TrimSpace(secret)
	if header == "" || secret == "" {
		return nil, ErrMissingKey
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, ErrMissingKey
	}
	id, ok := ParseID(secret)
	if !ok {
		return nil, ErrInvalidKey
	}
	now := a.now()
	c, err := a.lookup(ctx, id, now)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrInvalidKey
	}
	if err != nil {
		a.logger.ErrorContext(ctx, "auth: key lookup failed", "key_id", id, "err", err)
		return nil, fmt.Errorf("auth: look up key: %w", err)
	}
	// Compare before saying revoked/expired, so those answers are only
	// given to holders of the real key.
	k := &c.key
	if !k.matches(secret) {
		return nil, ErrInvalidKey
	}
	switch {
	case !k.RevokedAt.IsZero():
		return nil, ErrKeyRevoked
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return nil, ErrKeyExpired
	}
	return c.principal, nil
}

// lookup returns key id's record and principal, from the cache while
// fresh. The entry is shared: callers must not modify it.
func (a *Authenticator) lookup(ctx context.Context, id string, now time.Time) (*cached, error) {
	if a.ttl > 0 {
		a.mu.Lock()
		c, ok := a.cache[id]
		a.mu.Unlock()
		if ok && now.Sub(c.fetched) < a.ttl {
			return c, nil
		}
	}
	k, err := a.store.KeyByID(ctx, id)
	if err != nil {
		return nil, err
	}
	c := &cached{key: k, fetched: now}
	c.principal = principalOf(&c.key)
	if a.ttl > 0 {
		a.mu.Lock()
		a.cache[id] = c
		// Only real key ids enter the cache (unknown ids return above), so
		// it is bounded by the number of keys; still drop stale entries
		// now and then so revoked keys do not linger.
		if len(a.cache) > 1024 {
			for cid, e := range a.cache {
				if now.Sub(e.fetched) >= a.ttl {
					delete(a.cache, cid)
				}
			}
		}
		a.mu.Unlock()
	}
	return c, nil
}

// Create generates a key, stores its hash and returns the record and the
// key string (to show once).
func (a *Authenticator) Create(ctx context.Context, n NewKey) (Key, string, error) {
	k, secret, err := Generate(n, a.now())
	if err != nil {
		return Key{}, "", err
	}
	if err := a.store.CreateKey(ctx, k); err != nil {
		return Key{}, "", fmt.Errorf("store key: %w", err)
	}
	return k, secret, nil
}

// Forget drops key id from the cache, so the next request with it reads
// the store: a revocation written through another server applies at once
// instead of after the cache TTL. id "" drops every key.
func (a *Authenticator) Forget(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if id == "" {
		clear(a.cache)
		return
	}
	delete(a.cache, id)
}

// Revoke revokes key id now; requests with it fail from this moment on.
func (a *Authenticator) Revoke(ctx context.Context, id string) error {
	if err := a.store.RevokeKey(ctx, id, a.now()); err != nil {
		return err
	}
	a.mu.Lock()
	delete(a.cache, id)
	a.mu.Unlock()
	return nil
}
