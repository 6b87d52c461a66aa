package process

import (
	"strconv"
	"strings"
	"testing"

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
	copyOutput(strings.NewReader(in), &out, r, nil)

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
