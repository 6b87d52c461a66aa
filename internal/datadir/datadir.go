// Package datadir owns the server's data directory as a whole: it is
// created private to the server's user, and one process at a time holds it
// through an advisory lock, so a second server (or an offline command that
// writes the database) cannot run on state a live server is using.
package datadir

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// LockFile is the lock's name inside the data dir.
const LockFile = "lock"

// Prepare creates dir with mode 0700, or tightens an existing dir that
// group or others can reach; loosened reports the mode it had then, so the
// caller can warn (0 when nothing changed). The database, keys and every
// job's input live below it.
func Prepare(dir string) (loosened os.FileMode, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("data dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, fmt.Errorf("data dir: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return 0, fmt.Errorf("data dir %s is %v and could not be made private: %w", dir, fi.Mode(), err)
		}
		return perm, nil
	}
	return 0, nil
}

// InUseError says another live process holds the data dir.
type InUseError struct {
	Dir    string
	PID    int    // 0 when the holder had not written it yet
	Holder string // what holds it, e.g. "ember serve"
}

func (e *InUseError) Error() string {
	who := e.Holder
	if who == "" {
		who = "another ember process"
	}
	pid := "pid unknown"
	if e.PID > 0 {
		pid = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data dir %s is in use by %s (%s); stop it or use another --data-dir", e.Dir, who, pid)
}

// Lock is a held data dir. The kernel releases it when the process dies,
// SIGKILL included, so a restart after a crash finds it free.
type Lock struct {
	f *os.File
}

// Acquire takes the data dir's lock without waiting and records this
// process's PID and holder in it (for the next one's error message). A
// held lock is an *InUseError.
func Acquire(dir, holder string) (*Lock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			e := &InUseError{Dir: dir}
			if b, rerr := os.ReadFile(path); rerr == nil {
				e.PID, e.Holder = parseHolder(b)
			}
			return nil, e
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil { // a lock file left by an older version
		f.Close()
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" "+holder+"\n"), 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("data dir lock: %w", err)
		}
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up. The file stays: removing it would let a
// process that opened it a moment earlier lock a file nobody else sees.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}

// parseHolder reads "PID holder words\n".
func parseHolder(b []byte) (int, string) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	pidText, holder, _ := bytes.Cut(line, []byte(" "))
	pid, err := strconv.Atoi(string(pidText))
	if err != nil || pid <= 0 {
		return 0, ""
	}
	return pid, string(holder)
}

// Tighten removes group and other access from everything under root (dirs
// become 0700-or-less, files 0600-or-less); state written by an older
// version is made private. A missing root is not an error.
func Tighten(root string) (changed int, err error) {
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type()&os.ModeSymlink != 0 {
			return nil // never chmod through a link
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			if err := os.Chmod(path, perm&0o700); err != nil {
				return err
			}
			changed++
		}
		return nil
	})
	if err != nil {
		return changed, fmt.Errorf("data dir: make %s private: %w", root, err)
	}
	return changed, nil
}
