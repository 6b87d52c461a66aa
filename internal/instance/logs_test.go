package instance

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestFileLogsPrivateAndPruned(t *testing.T) {
	l := &FileLogs{Dir: t.TempDir(), Keep: 2}
	for _, id := range []string{"a-1", "a-2", "a-3"} {
		w, err := l.Open("o/a", id)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("line of " + id + "\n"))
		w.Close()
	}
	dir := filepath.Join(l.Dir, "o-a")
	// An open log is never pruned by another's open: the cold path does
	// no directory scan.
	w, err := l.Open("o/a", "a-4")
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("%d log files with a-4 open, want 3 (pruned at close, not open)", len(entries))
	}
	w.Close()
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("log dir mode = %v, %v; want 0700", st.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d log files kept, want Keep 2", len(entries))
	}
	for _, e := range entries {
		if info, _ := e.Info(); info.Mode().Perm() != fs.FileMode(0o600) {
			t.Errorf("%s mode = %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	lines, err := l.Read("o/a", 1)
	if err != nil || len(lines) != 1 {
		t.Fatalf("Read(tail 1) = %v, %v; want one line", lines, err)
	}
}

// BenchmarkFileLogsOpen: what a cold start pays for its instance's log
// before the spawn, with a function's directory at its Keep of 50 files.
func BenchmarkFileLogsOpen(b *testing.B) {
	l := &FileLogs{Dir: b.TempDir()}
	for i := range 50 {
		w, err := l.Open("fn", "old-"+strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		w.Close()
	}
	var ws []io.WriteCloser
	for i := 0; b.Loop(); i++ {
		w, err := l.Open("fn", "new-"+strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		ws = append(ws, w)
	}
	b.StopTimer()
	for _, w := range ws {
		w.Close()
	}
}
