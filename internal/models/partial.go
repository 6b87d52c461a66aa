package models

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockPath opens path (a file or a directory) and takes an exclusive flock
// on it, held until the returned file is closed or the process dies.
func lockPath(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// CleanPartial removes what interrupted pulls left in <cacheDir>/tmp (a
// SIGKILL mid-download leaves the work dir behind): every entry that no
// live pull holds. A pull in progress, in this process or another one
// sharing the cache, keeps its work dir locked and is left alone. It
// returns how many entries it removed.
func CleanPartial(cacheDir string) (int, error) {
	tmpRoot := filepath.Join(cacheDir, "tmp")
	ents, err := os.ReadDir(tmpRoot)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("models: clean partial downloads: %w", err)
	}
	removed := 0
	for _, e := range ents {
		path := filepath.Join(tmpRoot, e.Name())
		held, err := lockPath(path)
		if err != nil {
			continue // a live pull holds it (or it vanished meanwhile)
		}
		err = os.RemoveAll(path)
		held.Close()
		if err != nil {
			return removed, fmt.Errorf("models: clean partial downloads: %w", err)
		}
		removed++
	}
	return removed, nil
}
