package process

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// ringLines is how many output lines an instance keeps for Tail.
	ringLines = 200
	// maxLineBytes caps one kept line, so a process that prints a huge
	// blob cannot make the ring hold megabytes.
	maxLineBytes = 2 << 10
	// outputPace is how long the copier of a ready instance lets output
	// gather after a read that did not fill its buffer (pacer).
	outputPace = 5 * time.Millisecond
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
// pace, if not nil, runs before the next read after each read that
// returned bytes but did not fill the buffer (pacer).
func copyOutput(r io.Reader, out io.Writer, logs *ring, onOutput func(), pace func()) {
	buf := make([]byte, 64<<10)
	n := 0 // bytes held: at most one incomplete line
	for {
		m, err := r.Read(buf[n:])
		n += m
		if m > 0 && onOutput != nil {
			onOutput()
		}
		// A read that returned bytes without filling the buffer: the
		// next one waits for pace, after these are written out.
		small := m > 0 && err == nil && n < len(buf)
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
		if small && pace != nil {
			pace()
		}
	}
}

// pacer paces an instance's output copier once the instance is ready. A
// server that logs every request writes one line per call, and each line
// would wake the copier for a read, a write to the log sink and the ring:
// two syscalls per call on the warm path, and the largest item of
// bench/core's profile of Ember after the proxy (bench/README.md, sixth
// round). Paced, a busy instance's lines are read in batches: at most one
// read per outputPace while output keeps coming. Before the instance is
// ready nothing waits, since output then is the readiness loop's hint
// that the port may be open. A read that fills the buffer is followed at
// once by the next, so a flood of output is never slowed to the pace; and
// the pipe holds 64 KiB, so an instance writing less than 13 MB/s never
// blocks on it. (Linux gives a user's pipes 8 KiB instead once that user
// holds 64 MiB of pipe buffers, some 500 instances' worth; a burst larger
// than that then waits up to 5 ms.)
type pacer struct {
	ready  atomic.Bool
	exited chan struct{} // closed by the reaper: the rest of the output is read at once
	// wait waits d, or less once stop closes; waitOrStop, tests replace it.
	wait func(d time.Duration, stop <-chan struct{})
}

func newPacer() pacer { return pacer{exited: make(chan struct{}), wait: waitOrStop} }

func (p *pacer) pace() {
	if p.ready.Load() {
		p.wait(outputPace, p.exited)
	}
}

func waitOrStop(d time.Duration, stop <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
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
