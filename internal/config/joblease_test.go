package config

import (
	"strings"
	"testing"
	"time"
)

// TestJobLeaseBounds: --job-lease outside [1s, 10m] is refused, naming the
// flag; the bounds themselves and the default pass.
func TestJobLeaseBounds(t *testing.T) {
	for _, tt := range []struct {
		v  time.Duration
		ok bool
	}{{0, false}, {999 * time.Millisecond, false}, {time.Second, true}, {30 * time.Second, true},
		{10 * time.Minute, true}, {10*time.Minute + time.Second, false}} {
		c := Default()
		c.JobLease = tt.v
		err := c.Validate()
		if tt.ok != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), "job-lease: want a duration in [1s, 10m]")) {
			t.Errorf("job-lease %s: err = %v, want ok=%v", tt.v, err, tt.ok)
		}
	}
	if d := Default().JobLease; d != 30*time.Second {
		t.Errorf("default job-lease %s, want 30s", d)
	}
}
