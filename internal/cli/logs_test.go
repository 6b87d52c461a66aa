package cli

import (
	"slices"
	"testing"
)

func TestNewLines(t *testing.T) {
	tests := []struct {
		name            string
		prev, cur, want []string
	}{
		{"nothing new", []string{"a", "b"}, []string{"a", "b"}, []string{}},
		{"appended", []string{"a", "b"}, []string{"a", "b", "c"}, []string{"c"}},
		{"window slid", []string{"a", "b", "c"}, []string{"b", "c", "d", "e"}, []string{"d", "e"}},
		{"repeated lines take the longest overlap", []string{"x", "x"}, []string{"x", "x", "x"}, []string{"x"}},
		{"no overlap: all new", []string{"a"}, []string{"b", "c"}, []string{"b", "c"}},
		{"first poll", nil, []string{"a"}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newLines(tt.prev, tt.cur); !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("newLines(%q, %q) = %q, want %q", tt.prev, tt.cur, got, tt.want)
			}
		})
	}
}
