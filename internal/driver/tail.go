package driver

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

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

// maxTailLine caps one kept line: output without newlines cannot grow a
// line without bound.
const maxTailLine = 16 << 10

// TailWriter passes an instance's output on to W (may be nil) and keeps
// its lines in Tail. Safe for concurrent use; Flush keeps a last line
// that had no newline.
type TailWriter struct {
	Tail *LogTail
	W    io.Writer

	mu  sync.Mutex // guards buf; held across a write so lines never interleave
	buf []byte
}

// Redirect sends the output from now on to w (nil: only the tail). A
// pre-started worker is redirected when it is handed to a function, so
// its lines land in that instance's log.
func (l *TailWriter) Redirect(w io.Writer) {
	l.mu.Lock()
	l.W = w
	l.mu.Unlock()
}

// Write implements io.Writer; it never fails (a failing W is the sink's
// concern, not the instance's).
func (l *TailWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.W != nil {
		l.W.Write(b)
	}
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.Tail.Add(strings.TrimRight(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > maxTailLine {
		l.Tail.Add(string(l.buf[:maxTailLine]))
		l.buf = l.buf[:0]
	}
	return len(b), nil
}

// Flush keeps the unterminated last line, if any.
func (l *TailWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.Tail.Add(string(l.buf))
		l.buf = nil
	}
}
