package app

import (
	"runtime/debug"
	"testing"
)

func TestSetGCDefault(t *testing.T) {
	tests := []struct {
		name    string
		gogc    string
		applied bool
	}{
		{"unset", "", true},
		{"set by the user", "150", false},
		{"off by the user", "off", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const before = 123
			old := debug.SetGCPercent(before)
			t.Cleanup(func() { debug.SetGCPercent(old) })
			getenv := func(k string) string {
				if k == "GOGC" {
					return tt.gogc
				}
				return ""
			}
			if got := SetGCDefault(getenv); got != tt.applied {
				t.Fatalf("SetGCDefault = %v, want %v", got, tt.applied)
			}
			// SetGCPercent returns the target it replaces: what SetGCDefault left.
			want := before
			if tt.applied {
				want = GCPercent
			}
			if got := debug.SetGCPercent(before); got != want {
				t.Errorf("GC target = %d, want %d", got, want)
			}
		})
	}
}
