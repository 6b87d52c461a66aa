package driver

import (
	"slices"
	"strconv"
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
