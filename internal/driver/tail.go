package driver

import "sync"

// LogTail keeps an instance's last lines of output, so a start that fails
// can quote them (drivers that read an instance's output share it). Safe
// for concurrent use.
type LogTail struct {
	mu    sync.Mutex // guards the following
	lines []string
	next  int
	full  bool
}

// NewLogTail keeps the last n lines (n ≥ 1).
func NewLogTail(n int) *LogTail { return &LogTail{lines: make([]string, max(n, 1))} }

// Add records one line, dropping the oldest when full.
func (t *LogTail) Add(line string) {
	t.mu.Lock()
	t.lines[t.next] = line
	t.next = (t.next + 1) % len(t.lines)
	t.full = t.full || t.next == 0
	t.mu.Unlock()
}

// Last returns up to n of the newest lines, oldest first.
func (t *LogTail) Last(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var all []string
	if t.full {
		all = append(all, t.lines[t.next:]...)
	}
	all = append(all, t.lines[:t.next]...)
	return append([]string(nil), all[max(0, len(all)-n):]...)
}
