package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepare(t *testing.T) {
	tests := []struct {
		name     string
		existing os.FileMode // 0: the dir does not exist yet
		loosened os.FileMode
	}{
		{"created private", 0, 0},
		{"already private", 0o700, 0},
		{"world-readable tightened", 0o755, 0o755},
		{"group-writable tightened", 0o770, 0o770},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if tt.existing != 0 {
				if err := os.Mkdir(dir, tt.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, tt.existing); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			got, err := Prepare(dir)
			if err != nil || got != tt.loosened {
				t.Fatalf("Prepare = %v, %v; want %v", got, err, tt.loosened)
			}
			fi, err := os.Stat(dir)
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("mode after Prepare = %v (%v), want 0700", fi.Mode(), err)
			}
		})
	}
}

func TestAcquireRefusesWhileHeld(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, "ember serve")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, "ember keys reset-admin")
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() || inUse.Holder != "ember serve" {
		t.Fatalf("second Acquire = %v, want in use by ember serve (pid %d)", err, os.Getpid())
	}
	want := fmt.Sprintf("data dir %s is in use by ember serve (pid %d); stop it or use another --data-dir", dir, os.Getpid())
	if err.Error() != want {
		t.Errorf("message = %q, want %q", err, want)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir, "ember keys reset-admin")
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	defer l2.Release()
	b, _ := os.ReadFile(filepath.Join(dir, LockFile))
	if !strings.HasSuffix(string(b), " ember keys reset-admin\n") {
		t.Errorf("lock file = %q, want the new holder", b)
	}
	if fi, err := os.Stat(filepath.Join(dir, LockFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode = %v, %v; want 0600", fi.Mode(), err)
	}
}
