package driver

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestLogTail(t *testing.T) {
	tests := []struct {
		keep, add, ask int
		want           []string
	}{
		{keep: 3, add: 0, ask: 5, want: nil},
		{keep: 3, add: 2, ask: 5, want: []string{"0", "1"}},
		{keep: 3, add: 3, ask: 2, want: []string{"1", "2"}},
		{keep: 3, add: 7, ask: 5, want: []string{"4", "5", "6"}},
		{keep: 0, add: 2, ask: 5, want: []string{"1"}},
	}
	for _, tt := range tests {
		lt := NewLogTail(tt.keep)
		for i := range tt.add {
			lt.Add(strconv.Itoa(i))
		}
		if got := lt.Last(tt.ask); !slices.Equal(got, tt.want) {
			t.Errorf("keep %d, add %d, last %d = %q, want %q", tt.keep, tt.add, tt.ask, got, tt.want)
		}
	}
}

func TestTailWriter(t *testing.T) {
	var sink strings.Builder
	tw := &TailWriter{Tail: NewLogTail(10), W: &sink}
	in := "one\r\ntwo\nthr" + "ee\n" + "last"
	for _, part := range []string{in[:5], in[5:12], in[12:]} {
		tw.Write([]byte(part))
	}
	if got := tw.Tail.Last(10); !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Errorf("before Flush: %q", got)
	}
	tw.Flush()
	if got := tw.Tail.Last(10); !slices.Equal(got, []string{"one", "two", "three", "last"}) {
		t.Errorf("after Flush: %q", got)
	}
	if sink.String() != in {
		t.Errorf("sink got %q, want the bytes as written", sink.String())
	}
	long := &TailWriter{Tail: NewLogTail(4)}
	long.Write([]byte(strings.Repeat("x", maxTailLine+10)))
	if got := long.Tail.Last(4); len(got) != 1 || len(got[0]) != maxTailLine {
		t.Errorf("a line without newline past the cap: %d lines, first %d bytes", len(got), len(got[0]))
	}
}
