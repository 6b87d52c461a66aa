package instance

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// LogSink keeps what instances print. The manager never opens files
// itself: a driver that keeps logs elsewhere (a container engine, the
// Kubernetes API) can stand behind this instead of FileLogs.
type LogSink interface {
	// Open returns where instance id of fn writes its output.
	Open(fn, id string) (io.WriteCloser, error)
	// Read returns up to tail last lines of fn's instance logs, newest
	// instance last (tail <= 0: all).
	Read(fn string, tail int) ([]api.LogLine, error)
}

// FileLogs keeps one log file per instance under Dir/<function>/, the
// newest Keep per function. Directories are 0700 and files 0600, the
// server's user only: what a model prints may be a caller's input or a
// secret.
type FileLogs struct {
	Dir  string
	Keep int // 0: 50
}

var _ LogSink = (*FileLogs)(nil)

func (l *FileLogs) dir(fn string) string {
	return filepath.Join(l.Dir, strings.ReplaceAll(fn, "/", "-"))
}

// Open creates (or appends to) id's log file. Closing it prunes the
// oldest files of fn beyond Keep: Open runs on every cold start, before
// the spawn, and the prune (a directory read and a stat per file) is not
// worth the caller's wait there.
func (l *FileLogs) Open(fn, id string) (io.WriteCloser, error) {
	dir := l.dir(fn)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("instance log dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("instance log: %w", err)
	}
	keep := l.Keep
	if keep <= 0 {
		keep = 50
	}
	return &logFile{File: f, dir: dir, keep: keep}, nil
}

// logFile is an instance's log; Close prunes its directory.
type logFile struct {
	*os.File
	dir  string
	keep int
}

func (f *logFile) Close() error {
	err := f.File.Close()
	pruneLogs(f.dir, f.keep)
	return err
}

// Logs returns up to tail last lines of fn's instance logs, newest
// instance last, from Options.Logs.
func (m *Manager) Logs(fn string, tail int) ([]api.LogLine, error) {
	if m.opts.Logs == nil {
		return nil, nil
	}
	return m.opts.Logs.Read(fn, tail)
}

// Read returns up to tail last lines of fn's instance logs, oldest file
// first.
func (l *FileLogs) Read(fn string, tail int) ([]api.LogLine, error) {
	dir := l.dir(fn)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read logs of %q: %w", fn, err)
	}
	type file struct {
		name string
		mod  time.Time
	}
	var files []file
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".log") {
			files = append(files, file{e.Name(), info.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return a.mod.Compare(b.mod) })
	var out []api.LogLine
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			continue
		}
		id := strings.TrimSuffix(f.name, ".log")
		for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			if line != "" {
				out = append(out, api.LogLine{Instance: id, Line: line})
			}
		}
	}
	if tail > 0 && len(out) > tail {
		out = out[len(out)-tail:]
	}
	return out, nil
}

// pruneLogs deletes all but the keep newest log files in dir.
func pruneLogs(dir string, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) <= keep {
		return
	}
	type file struct {
		name string
		mod  time.Time
	}
	files := make([]file, 0, len(entries))
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".log") {
			files = append(files, file{e.Name(), info.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return b.mod.Compare(a.mod) })
	for _, f := range files[min(keep, len(files)):] {
		os.Remove(filepath.Join(dir, f.name))
	}
}
