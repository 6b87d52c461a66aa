package instance

import (
	"io/fs"
	"os"
	"path/filepath"
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
