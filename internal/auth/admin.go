package auth

import (
	"context"
	"fmt"
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
	k, secret, err := Generate(NewKey{Name: "admin", Scope: ScopeAdmin}, now)
	if err != nil {
		return path, false, fmt.Errorf("ensure admin key: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return path, false, fmt.Errorf("ensure admin key: %w", err)
	}
	tmp, err := os.CreateTemp(dataDir, ".admin.key-*") // created with mode 0600
	if err != nil {
		return path, false, fmt.Errorf("ensure admin key: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return path, false, fmt.Errorf("ensure admin key: %w", err)
	}
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return path, false, fmt.Errorf("ensure admin key: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return path, false, fmt.Errorf("ensure admin key: write %s: %w", tmp.Name(), err)
	}
	if err := store.CreateKey(ctx, k); err != nil {
		return path, false, fmt.Errorf("ensure admin key: store: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		// Nobody can read the key, so it must not stay valid.
		if rerr := store.RevokeKey(ctx, k.ID, now); rerr != nil {
			return path, false, fmt.Errorf("ensure admin key: %w (and revoking the unwritten key failed: %v)", err, rerr)
		}
		return path, false, fmt.Errorf("ensure admin key: %w", err)
	}
	return path, true, nil
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
