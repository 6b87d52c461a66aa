package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// KeyEnsurer stores a key unless one with its id is stored already, in one
// statement (INSERT … ON CONFLICT DO NOTHING): any number of servers may
// bootstrap the same key at once without a race or a duplicate row.
// store/sqlite and store/postgres implement it.
type KeyEnsurer interface {
	KeyStore
	// EnsureKey stores k unless its id exists; created says which.
	EnsureKey(ctx context.Context, k Key) (created bool, err error)
}

// ErrBootstrapKey is wrapped by every error of ReadBootstrapKey and
// BootstrapAdminKey, so the server can say which setting is at fault.
var ErrBootstrapKey = errors.New("admin-key-file")

// maxKeyFileBytes bounds what is read of a key file: a key is 66 bytes.
const maxKeyFileBytes = 4 << 10

// ReadBootstrapKey reads an admin key from path (a mounted Kubernetes
// Secret, --admin-key-file): one Ember key, as `ember keys generate`
// prints it, with optional trailing whitespace. It refuses a file other
// users can read (a Secret volume's default mode 0644 is one; mount it
// with defaultMode 0400 or 0440), an empty or oversized one, and a key
// whose secret is shorter than 256 bits. Errors wrap ErrBootstrapKey and
// never quote the file's content.
func ReadBootstrapKey(path string) (string, error) {
	// Stat follows links: a Secret volume's file is a link into ..data/.
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w %s: %w", ErrBootstrapKey, path, err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%w %s: not a regular file (mode %s)", ErrBootstrapKey, path, fi.Mode())
	case fi.Mode().Perm()&0o004 != 0:
		return "", fmt.Errorf("%w %s: readable by every user (mode %#o); chmod 600 it, or mount the Secret with defaultMode: 0400", ErrBootstrapKey, path, fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w %s: %w", ErrBootstrapKey, path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("%w %s: %w", ErrBootstrapKey, path, err)
	}
	if len(b) > maxKeyFileBytes {
		return "", fmt.Errorf("%w %s: larger than %d bytes; it must hold one Ember key", ErrBootstrapKey, path, maxKeyFileBytes)
	}
	secret := strings.TrimRight(string(b), " \t\r\n")
	if err := checkKeyString(secret); err != nil {
		return "", fmt.Errorf("%w %s: %w", ErrBootstrapKey, path, err)
	}
	return secret, nil
}

// checkKeyString says what is wrong with s as an Ember key, naming the
// part at fault and never echoing s.
func checkKeyString(s string) error {
	const want = "want one line ember_<16 hex digits>_<43 base64url characters>, as `ember keys generate` prints"
	switch {
	case s == "":
		return errors.New("empty; " + want)
	case strings.ContainsAny(s, " \t\r\n"):
		return errors.New("holds more than one word or line; " + want)
	case !strings.HasPrefix(s, KeyPrefix):
		return errors.New("does not start with " + KeyPrefix + "; " + want)
	}
	if _, ok := ParseID(s); !ok {
		return errors.New("the id after " + KeyPrefix + " is not 16 hex digits; " + want)
	}
	_, sec, _ := strings.Cut(strings.TrimPrefix(s, KeyPrefix), "_")
	raw, err := base64.RawURLEncoding.DecodeString(sec)
	if err != nil {
		return errors.New("the secret part is not base64url; " + want)
	}
	if len(raw) < secretBytes {
		return fmt.Errorf("the secret part holds %d bits, fewer than %d; %s", 8*len(raw), 8*secretBytes, want)
	}
	return nil
}

// BootstrapAdminKey makes the key string secret (see ReadBootstrapKey) an
// admin key of store, idempotently: the first server to start stores its
// hash, every other one (at the same moment or later) finds it. It returns
// the key's id and whether this call stored it. A key with the same id
// that is stored with another secret, another scope, revoked or expired is
// an error: the Secret must then hold a new key.
func BootstrapAdminKey(ctx context.Context, store KeyEnsurer, secret string, now time.Time) (id string, created bool, err error) {
	if err := checkKeyString(secret); err != nil {
		return "", false, fmt.Errorf("%w: %w", ErrBootstrapKey, err)
	}
	id, _ = ParseID(secret)
	k := Key{ID: id, Name: "admin (bootstrap)", Hash: Hash(secret), Scope: ScopeAdmin, CreatedAt: now.UTC()}
	created, err = store.EnsureKey(ctx, k)
	if err != nil {
		return id, false, fmt.Errorf("%w: store key %s: %w", ErrBootstrapKey, id, err)
	}
	if created {
		return id, true, nil
	}
	got, err := store.KeyByID(ctx, id)
	switch {
	case err != nil:
		return id, false, fmt.Errorf("%w: read key %s: %w", ErrBootstrapKey, id, err)
	case !got.matches(secret):
		return id, false, fmt.Errorf("%w: key %s is stored with another secret; put a new key in the file (`ember keys generate`)", ErrBootstrapKey, id)
	case !got.Active(now):
		return id, false, fmt.Errorf("%w: key %s is revoked or expired; put a new key in the file (`ember keys generate`)", ErrBootstrapKey, id)
	case got.Scope != ScopeAdmin:
		return id, false, fmt.Errorf("%w: key %s is stored with scope %s, not admin", ErrBootstrapKey, id, got.Scope)
	}
	return id, false, nil
}

// GenerateKeyString returns a new random key string in Ember's format,
// stored nowhere: what `ember keys generate` prints for --admin-key-file.
func GenerateKeyString() (string, error) {
	_, secret, err := Generate(NewKey{Name: "admin", Scope: ScopeAdmin}, time.Time{})
	return secret, err
}
