// Package auth is Ember's API-key authentication and authorisation: keys are
// random secrets shown once, stored only as a SHA-256 hash, and carry a scope
// (admin, invoke or metrics), the functions they may call, limits and an expiry.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Scope is what a key may do.
type Scope string

const (
	// ScopeAdmin may do everything: manage functions, routes and keys, and invoke.
	ScopeAdmin Scope = "admin"
	// ScopeInvoke may only run the functions (and their jobs) it covers.
	ScopeInvoke Scope = "invoke"
	// ScopeMetrics may only read /metrics (a Prometheus scraper's key).
	ScopeMetrics Scope = "metrics"
)

// Valid reports whether s is a known scope.
func (s Scope) Valid() bool { return s == ScopeAdmin || s == ScopeInvoke || s == ScopeMetrics }

// KeyPrefix starts every Ember key so that secret scanners and people can
// recognise one. A key reads ember_<id>_<secret>: id is 16 hex digits
// (64 bits, public, used to find the record) and secret is 32 random bytes
// in base64url (256 bits).
const KeyPrefix = "ember_"

const (
	idBytes     = 8
	secretBytes = 32
)

// Key is a stored API key. It holds the hash of the key, never the key.
type Key struct {
	ID   string
	Name string
	// Hash is the hex SHA-256 of the whole key string. A fast hash is enough
	// because keys carry 256 random bits: there is nothing to brute-force.
	Hash  string
	Scope Scope
	// Functions limits an invoke key to these function or route names;
	// entries are path.Match patterns ("team-a/*"). Empty means all.
	Functions []string
	// RatePerSec and Burst form the key's token bucket; 0 means unlimited.
	RatePerSec float64
	Burst      int
	// MaxConcurrency caps the key's requests in flight; 0 means unlimited.
	MaxConcurrency int
	CreatedAt      time.Time
	ExpiresAt      time.Time // zero: never
	RevokedAt      time.Time // zero: not revoked
}

// Active reports whether k may authenticate at now.
func (k *Key) Active(now time.Time) bool {
	return k.RevokedAt.IsZero() && (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt))
}

// ErrNotFound is returned by a KeyStore for an unknown key id.
var ErrNotFound = errors.New("auth: key not found")

// KeyStore persists keys. store/sqlite implements it.
type KeyStore interface {
	CreateKey(ctx context.Context, k Key) error
	// KeyByID returns ErrNotFound (possibly wrapped) for an unknown id.
	KeyByID(ctx context.Context, id string) (Key, error)
	ListKeys(ctx context.Context) ([]Key, error)
	// RevokeKey marks the key revoked at at; ErrNotFound for an unknown id.
	// Revoking a revoked key keeps the first time.
	RevokeKey(ctx context.Context, id string, at time.Time) error
}

// NewKey is what to create; Generate fills in the secret parts.
type NewKey struct {
	Name           string
	Scope          Scope
	Functions      []string
	RatePerSec     float64
	Burst          int
	MaxConcurrency int
	// TTL is the key's lifetime from now; 0 means it never expires.
	TTL time.Duration
}

// Validate names the first field at fault.
func (n *NewKey) Validate() error {
	switch {
	case strings.TrimSpace(n.Name) == "":
		return errors.New("name: required")
	case len(n.Name) > 100:
		return fmt.Errorf("name: at most 100 characters (got %d)", len(n.Name))
	case !n.Scope.Valid():
		return fmt.Errorf("scope: must be admin, invoke or metrics (got %q)", n.Scope)
	case n.RatePerSec < 0:
		return fmt.Errorf("rate: must be ≥ 0 (got %g)", n.RatePerSec)
	case n.Burst < 0:
		return fmt.Errorf("burst: must be ≥ 0 (got %d)", n.Burst)
	case n.MaxConcurrency < 0:
		return fmt.Errorf("max_concurrency: must be ≥ 0 (got %d)", n.MaxConcurrency)
	case n.TTL < 0:
		return fmt.Errorf("expires: must be in the future (got %s)", n.TTL)
	}
	for _, f := range n.Functions {
		if _, err := path.Match(f, ""); err != nil || f == "" {
			return fmt.Errorf("functions: bad pattern %q", f)
		}
	}
	return nil
}

// Generate makes a new random key at now. It returns the record to store
// and the key string, which is shown to the user once and never stored.
func Generate(n NewKey, now time.Time) (Key, string, error) {
	if err := n.Validate(); err != nil {
		return Key{}, "", err
	}
	buf := make([]byte, idBytes+secretBytes)
	if _, err := rand.Read(buf); err != nil {
		return Key{}, "", fmt.Errorf("generate key: %w", err)
	}
	id := hex.EncodeToString(buf[:idBytes])
	secret := KeyPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(buf[idBytes:])
	k := Key{
		ID: id, Name: n.Name, Hash: Hash(secret), Scope: n.Scope, Functions: n.Functions,
		RatePerSec: n.RatePerSec, Burst: n.Burst, MaxConcurrency: n.MaxConcurrency,
		CreatedAt: now.UTC(),
	}
	if k.RatePerSec > 0 && k.Burst == 0 {
		// A bucket of 0 would refuse everything; one second of rate (at
		// least 1) is the least surprising default.
		k.Burst = max(1, int(k.RatePerSec))
	}
	if n.TTL > 0 {
		k.ExpiresAt = now.Add(n.TTL).UTC()
	}
	return k, secret, nil
}

// Hash returns the hex SHA-256 of a key string.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ParseID returns the id part of a key string, or false if s does not look
// like an Ember key.
func ParseID(s string) (string, bool) {
	rest, ok := strings.CutPrefix(s, KeyPrefix)
	if !ok {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 2*idBytes || secret == "" {
		return "", false
	}
	for i := 0; i < len(id); i++ {
		if _, ok := unhex(id[i]); !ok {
			return "", false
		}
	}
	return id, true
}

// unhex is one hex digit's value. ParseID and matches run on every call
// with a key; decoding by hand keeps both free of allocations.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// matches compares the presented key with the stored hash in constant time,
// so response timing says nothing about how much of a guess was right.
func (k *Key) matches(secret string) bool {
	var want [sha256.Size]byte
	if len(k.Hash) != 2*len(want) {
		return false
	}
	for i := range want {
		hi, ok1 := unhex(k.Hash[2*i])
		lo, ok2 := unhex(k.Hash[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		want[i] = hi<<4 | lo
	}
	// Hashed from a stack buffer: []byte(secret) of a key's length would
	// be a heap allocation on every call.
	var buf [128]byte
	got := sha256.Sum256(append(buf[:0], secret...))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}
