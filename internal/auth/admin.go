package auth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// AdminKeyFile is the name of the file under the data dir that holds the
// first admin key.
const AdminKeyFile = "admin.key"

// EnsureAdminKey makes a fresh server secure by default: when the store has
// no active admin key it creates one, stores only its hash and writes the
// key to <dataDir>/admin.key with mode 0600. It returns the file's path and
// whether a key was created. With an active admin key already stored it
// changes nothing (path is returned either way).
//
// The file is written before the key is stored and renamed into place
// after, so a failure never leaves an admin key that nobody holds.
func EnsureAdminKey(ctx context.Context, store KeyStore, dataDir string, now time.Time) (path string, created bool, err error) {
	path = filepath.Join(dataDir, AdminKeyFile)
	keys, err := store.ListKeys(ctx)
	if err != nil {
		return path, false, fmt.Errorf("ensure admin key: %w", err)
	}
	for i := range keys {
		if keys[i].Scope == ScopeAdmin && keys[i].Active(now) {
			return path, false, nil
		}
	}
	if err := writeAdminKey(ctx, store, path, now); err != nil {
		return path, false, fmt.Errorf("ensure admin key: %w", err)
	}
	return path, true, nil
}

// ResetAdminKey is the recovery for a lost or corrupt admin.key: it creates
// a new admin key and writes it to <dataDir>/admin.key (0600), replacing
// the file. Other keys, admin ones included, stay valid; revoke them with
// `ember keys revoke` if the old file may have leaked. The caller must hold
// the data dir (no server may be running on it).
func ResetAdminKey(ctx context.Context, store KeyStore, dataDir string, now time.Time) (path string, err error) {
	path = filepath.Join(dataDir, AdminKeyFile)
	if err := writeAdminKey(ctx, store, path, now); err != nil {
		return path, fmt.Errorf("reset admin key: %w", err)
	}
	return path, nil
}

// ErrAdminKeyFile is wrapped by CheckAdminKeyFile's errors.
var ErrAdminKeyFile = errors.New("admin key file")

// CheckAdminKeyFile reports whether <dataDir>/admin.key holds an active
// admin key of store: nil when it does, an error wrapping ErrAdminKeyFile
// that says what is wrong (missing, unreadable, not a key, unknown,
// revoked or expired, not admin) when it does not.
func CheckAdminKeyFile(ctx context.Context, store KeyStore, dataDir string, now time.Time) error {
	path := filepath.Join(dataDir, AdminKeyFile)
	secret, err := ReadKeyFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w %s is missing", ErrAdminKeyFile, path)
		}
		return fmt.Errorf("%w %s: %w", ErrAdminKeyFile, path, err)
	}
	id, ok := ParseID(secret)
	if !ok {
		return fmt.Errorf("%w %s does not hold an Ember key (corrupt?)", ErrAdminKeyFile, path)
	}
	k, err := store.KeyByID(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w %s holds key %s, which this database does not know", ErrAdminKeyFile, path, id)
	case err != nil:
		return fmt.Errorf("%w %s: %w", ErrAdminKeyFile, path, err)
	case !k.matches(secret):
		return fmt.Errorf("%w %s holds a wrong secret for key %s (corrupt?)", ErrAdminKeyFile, path, id)
	case !k.Active(now):
		return fmt.Errorf("%w %s holds key %s, which is revoked or expired", ErrAdminKeyFile, path, id)
	case k.Scope != ScopeAdmin:
		return fmt.Errorf("%w %s holds key %s, which is not an admin key", ErrAdminKeyFile, path, id)
	}
	return nil
}

// writeAdminKey creates an admin key and writes it to path. The file is
// written before the key is stored and renamed into place after, so a
// failure never leaves an admin key that nobody holds.
func writeAdminKey(ctx context.Context, store KeyStore, path string, now time.Time) error {
	dataDir := filepath.Dir(path)
	k, secret, err := Generate(NewKey{Name: "admin", Scope: ScopeAdmin}, now)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dataDir, ".admin.key-*") // created with mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := store.CreateKey(ctx, k); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		// Nobody can read the key, so it must not stay valid.
		if rerr := store.RevokeKey(ctx, k.ID, now); rerr != nil {
			return fmt.Errorf("%w (and revoking the unwritten key failed: %v)", err, rerr)
		}
		return err
	}
	return nil
}

// ReadKeyFile reads a key written by EnsureAdminKey (trailing space
// trimmed). The CLI uses it when neither --api-key nor EMBER_API_KEY is set.
func ReadKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s, nil
}
