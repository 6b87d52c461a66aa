package process

import (
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRing(t *testing.T) {
	lines := func(from, to int) []string {
		var out []string
		for k := from; k <= to; k++ {
			out = append(out, "line "+strconv.Itoa(k))
		}
		return out
	}
	tests := []struct {
		name  string
		size  int
		added int // lines "line 1".."line N"
		n     int
		want  []string
	}{
		{name: "empty", size: 3, added: 0, n: 2, want: []string{}},
		{name: "fewer than asked", size: 3, added: 2, n: 5, want: lines(1, 2)},
		{name: "last of partial", size: 5, added: 3, n: 2, want: lines(2, 3)},
		{name: "exactly full", size: 3, added: 3, n: 3, want: lines(1, 3)},
		{name: "wrapped", size: 3, added: 7, n: 3, want: lines(5, 7)},
		{name: "wrapped, fewer asked", size: 3, added: 7, n: 2, want: lines(6, 7)},
		{name: "negative n", size: 3, added: 2, n: -1, want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(tt.size)
			for k := 1; k <= tt.added; k++ {
				r.add([]byte("line " + strconv.Itoa(k) + "\r\n"))
			}
			if diff := cmp.Diff(tt.want, r.last(tt.n)); diff != "" {
				t.Errorf("last(%d) (-want +got):\n%s", tt.n, diff)
			}
		})
	}
}

func TestCopyOutput(t *testing.T) {
	long := strings.Repeat("x", 100<<10) // longer than the reader's buffer
	in := "first\nsecond\n" + long + "\nno newline at end"
	var out strings.Builder
	r := newRing(ringLines)
	copyOutput(strings.NewReader(in), &out, r, nil, nil)

	if got := out.String(); got != in {
		t.Errorf("Output got %d bytes, want the %d bytes written, unchanged", len(got), len(in))
	}
	got := r.last(ringLines)
	if len(got) < 4 {
		t.Fatalf("ring holds %d lines, want at least 4", len(got))
	}
	if diff := cmp.Diff([]string{"first", "second"}, got[:2]); diff != "" {
		t.Errorf("first lines (-want +got):\n%s", diff)
	}
	if last := got[len(got)-1]; last != "no newline at end" {
		t.Errorf("last line = %q, want the unterminated tail", last)
	}
	for _, l := range got {
		if len(l) > maxLineBytes+len("…") {
			t.Errorf("kept a %d-byte line, want at most %d", len(l), maxLineBytes)
		}
	}
}

// chunks is a reader that returns one scripted chunk per Read.
type chunks struct{ parts []string }

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.parts[0])
	if c.parts[0] = c.parts[0][n:]; c.parts[0] == "" {
		c.parts = c.parts[1:]
	}
	return n, nil
}

// TestCopyOutputPaced: a ready instance's copier pauses after each read
// that did not fill its buffer, never after one that did, and not at all
// before the instance is ready; what it copies is unchanged either way.
func TestCopyOutputPaced(t *testing.T) {
	full := strings.Repeat("x", 64<<10-1) + "\n" // exactly the copier's buffer
	parts := []string{"one\n", "two\n", full, "three\n"}
	for _, tc := range []struct {
		name  string
		ready bool
		want  int // pauses
	}{
		{"starting", false, 0},
		{"ready", true, 3}, // after one, two and three; not after the full read
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pauses []time.Duration
			p := &pacer{wait: func(d time.Duration, _ <-chan struct{}) { pauses = append(pauses, d) }}
			p.ready.Store(tc.ready)
			var out strings.Builder
			copyOutput(&chunks{parts: slices.Clone(parts)}, &out, newRing(ringLines), nil, p.pace)
			if want := strings.Join(parts, ""); out.String() != want {
				t.Errorf("copied %d bytes, want the %d written", out.Len(), len(want))
			}
			if len(pauses) != tc.want {
				t.Errorf("%d pauses, want %d", len(pauses), tc.want)
			}
			for _, d := range pauses {
				if d != outputPace {
					t.Errorf("paused %v, want %v", d, outputPace)
				}
			}
		})
	}
}

// TestPacerStopsAtExit: once the process has exited, a pause in progress
// ends, so the copier reads what is left without waiting out the pace.
func TestPacerStopsAtExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer()
		p.ready.Store(true)
		start := time.Now()
		ended := make(chan time.Duration)
		go func() { p.pace(); ended <- time.Since(start) }()
		time.Sleep(outputPace / 5)
		synctest.Wait()
		close(p.exited)
		if got := <-ended; got != outputPace/5 {
			t.Fatalf("pause ended after %v, want %v (at the exit)", got, outputPace/5)
		}
		p.pace() // after the exit: no pause at all
		if got := time.Since(start); got != outputPace/5 {
			t.Fatalf("a pause after the exit took %v", got-outputPace/5)
		}
	})
}
