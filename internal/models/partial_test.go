package models

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// What a SIGKILLed pull left is removed; a pull in progress (its work dir
// locked, here by this process) is not.
func TestCleanPartial(t *testing.T) {
	cache := t.TempDir()
	tmp := filepath.Join(cache, "tmp")
	for _, d := range []string{"pull-stale/unpack", "pull-live/unpack", "unpack-old"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"pull-stale/download.tgz", "pull-live/download.tgz", "download-old.tgz"} {
		if err := os.WriteFile(filepath.Join(tmp, f), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	held, err := lockPath(filepath.Join(tmp, "pull-live"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	n, err := CleanPartial(cache)
	if err != nil || n != 3 {
		t.Errorf("CleanPartial = %d, %v; want 3 removed", n, err)
	}
	ents, _ := os.ReadDir(tmp)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{"pull-live"}) {
		t.Errorf("left in tmp: %v, want only the live pull's dir", left)
	}
	if _, err := os.Stat(filepath.Join(tmp, "pull-live", "download.tgz")); err != nil {
		t.Errorf("live download touched: %v", err)
	}
	if n, err := CleanPartial(filepath.Join(cache, "none")); n != 0 || err != nil {
		t.Errorf("CleanPartial of a cache with no tmp = %d, %v; want 0, nil", n, err)
	}
}
