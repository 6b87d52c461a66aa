package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnsureKey makes memStore a KeyEnsurer: insert unless the id exists.
func (m *memStore) EnsureKey(_ context.Context, k Key) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[k.ID]; ok {
		return false, nil
	}
	m.keys[k.ID] = k
	return true, nil
}

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

func TestReadBootstrapKey(t *testing.T) {
	good, err := GenerateKeyString()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := ParseID(good)
	short := KeyPrefix + id + "_c2hvcnQ" // "short": 40 bits
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string // "" = accepted
	}{
		{"a generated key with a newline", good + "\n", 0o600, ""},
		{"group-readable (fsGroup) is fine", good, 0o440, ""},
		{"world-readable", good, 0o644, "readable by every user (mode 0644)"},
		{"empty", "", 0o600, "empty; want one line ember_"},
		{"only a newline", "\n", 0o400, "empty"},
		{"two lines", good + "\n" + good + "\n", 0o600, "more than one word or line"},
		{"not a key", "hunter2hunter2hunter2", 0o600, "does not start with ember_"},
		{"bad id", "ember_xyz_" + strings.Repeat("A", 43), 0o600, "is not 16 hex digits"},
		{"weak secret", short, 0o600, "holds 40 bits, fewer than 256"},
		{"secret not base64url", KeyPrefix + id + "_" + strings.Repeat("!", 43), 0o600, "not base64url"},
		{"oversized", strings.Repeat("a", 5000), 0o600, "larger than 4096 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeKeyFile(t, tc.content, tc.mode)
			got, err := ReadBootstrapKey(p)
			if tc.want == "" {
				if err != nil || got != good {
					t.Fatalf("ReadBootstrapKey = %q, %v; want the key", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrBootstrapKey) {
				t.Fatalf("err = %v, want it to say %q and wrap ErrBootstrapKey", err, tc.want)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("err = %v, want the path named", err)
			}
			if len(tc.content) > 10 && strings.Contains(err.Error(), strings.TrimSpace(tc.content)) {
				t.Errorf("err quotes the file's content: %v", err)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		_, err := ReadBootstrapKey(filepath.Join(t.TempDir(), "nope"))
		if !errors.Is(err, os.ErrNotExist) || !errors.Is(err, ErrBootstrapKey) {
			t.Fatalf("err = %v, want ErrNotExist and ErrBootstrapKey", err)
		}
	})
	t.Run("a Secret volume's link", func(t *testing.T) {
		// Kubernetes mounts key -> ..data/key; the target's mode counts.
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "..data"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "..data", "key"), []byte(good), 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("..data/key", filepath.Join(dir, "key")); err != nil {
			t.Fatal(err)
		}
		if got, err := ReadBootstrapKey(filepath.Join(dir, "key")); err != nil || got != good {
			t.Fatalf("ReadBootstrapKey = %q, %v", got, err)
		}
	})
}

func TestBootstrapAdminKey(t *testing.T) {
	ctx := t.Context()
	secret, _ := GenerateKeyString()
	id, _ := ParseID(secret)
	st := newMemStore()

	// Every replica starts at once: one stores it, none fails.
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gotID, created, err := BootstrapAdminKey(ctx, st, secret, t0)
			if err != nil || gotID != id {
				t.Errorf("BootstrapAdminKey = %s, %v", gotID, err)
			}
			if created {
				mu.Lock()
				stored++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if stored != 1 || len(st.keys) != 1 {
		t.Fatalf("stored by %d calls, %d keys; want 1 and 1", stored, len(st.keys))
	}
	// The key authenticates as admin.
	p, err := New(st, Options{Now: func() time.Time { return t0 }}).Authenticate(ctx, "Bearer "+secret)
	if err != nil || p.Scope != ScopeAdmin {
		t.Fatalf("Authenticate = %+v, %v; want an admin principal", p, err)
	}

	// A stored key with the same id but another secret, scope or state.
	other, _ := GenerateKeyString()
	_, rest, _ := strings.Cut(strings.TrimPrefix(other, KeyPrefix), "_")
	sameIDOtherSecret := KeyPrefix + id + "_" + rest
	if _, _, err := BootstrapAdminKey(ctx, st, sameIDOtherSecret, t0); err == nil || !strings.Contains(err.Error(), "stored with another secret") {
		t.Fatalf("other secret: err = %v", err)
	}
	if err := st.RevokeKey(ctx, id, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := BootstrapAdminKey(ctx, st, secret, t0); err == nil || !strings.Contains(err.Error(), "revoked or expired") {
		t.Fatalf("revoked: err = %v", err)
	}
	inv, invSecret, _ := Generate(NewKey{Name: "ci", Scope: ScopeInvoke}, t0)
	_ = st.CreateKey(ctx, inv)
	if _, _, err := BootstrapAdminKey(ctx, st, invSecret, t0); err == nil || !strings.Contains(err.Error(), "scope invoke, not admin") {
		t.Fatalf("invoke key: err = %v", err)
	}
	if _, _, err := BootstrapAdminKey(ctx, st, "ember_nope", t0); !errors.Is(err, ErrBootstrapKey) {
		t.Fatalf("malformed: err = %v", err)
	}
}
