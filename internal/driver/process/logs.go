package process

import (
	"bytes"
	"io"
	"sync"
)

const (
	// ringLines is how many output lines an instance keeps for Tail.
	ringLines = 200
	// maxLineBytes caps one kept line, so a process that prints a huge
	// blob cannot make the ring hold megabytes.
	maxLineBytes = 2 << 10
)

// copyOutput reads the instance's combined stdout and stderr until EOF,
// passing its lines to out (if any) and keeping each in logs. Only whole
// lines go to out, so output from many instances sharing one writer
// interleaves by line, not mid-line; all the whole lines one read returns
// go in one write. A server that logs every request would otherwise cost
// a write syscall and a sink lock per request on the warm path (the
// largest item in bench/core's profile of Ember after the proxy itself).
// onOutput, if not nil, is called after each read that returned bytes
// (the readiness loop takes output as a hint that the port may be open).
func copyOutput(r io.Reader, out io.Writer, logs *ring, onOutput func()) {
	buf := make([]byte, 64<<10)
	n := 0 // bytes held: at most one incomplete line
	for {
		m, err := r.Read(buf[n:])
		n += m
		if m > 0 && onOutput != nil {
			onOutput()
		}
		end := bytes.LastIndexByte(buf[:n], '\n') + 1
		if err != nil || (end == 0 && n == len(buf)) {
			end = n // the last unterminated line, or one longer than buf: kept as several
		}
		if end > 0 {
			chunk := buf[:end]
			if out != nil {
				// A failing log sink must not stall or stop the
				// instance; its lines are still in the ring.
				_, _ = out.Write(chunk)
			}
			for len(chunk) > 0 {
				line, rest, _ := bytes.Cut(chunk, []byte("\n"))
				logs.add(line)
				chunk = rest
			}
			n = copy(buf, buf[end:n])
		}
		if err != nil {
			return
		}
	}
}

// ring keeps the last lines written to it.
type ring struct {
	mu    sync.Mutex // guards the following
	lines []string   // circular once full; next is the oldest
	next  int
}

func newRing(size int) *ring { return &ring{lines: make([]string, 0, size)} }

func (r *ring) add(b []byte) {
	b = bytes.TrimRight(b, "\r\n")
	if len(b) > maxLineBytes {
		b = append(b[:maxLineBytes:maxLineBytes], "…"...)
	}
	s := string(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) < cap(r.lines) {
		r.lines = append(r.lines, s)
		return
	}
	r.lines[r.next] = s
	r.next = (r.next + 1) % len(r.lines)
}

// last returns up to n of the newest lines, oldest first.
func (r *ring) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n = min(max(n, 0), len(r.lines))
	out := make([]string, 0, n)
	for k := len(r.lines) - n; k < len(r.lines); k++ {
		out = append(out, r.lines[(r.next+k)%len(r.lines)])
	}
	return out
}

// switchWriter is an output sink that can be replaced while lines flow.
type switchWriter struct {
	mu sync.Mutex // guards w; held across a write so a swap never splits one
	w  io.Writer
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (s *switchWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return len(b), nil
	}
	return s.w.Write(b)
}
