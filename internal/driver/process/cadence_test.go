package process

import (
	"testing"
	"time"

	"github.com/ember-run/ember/internal/driver"
)

// probesUntil counts the health probes made against a server that answers
// 2xx from load on, on the schedule driver.Cadence.Next gives (a virtual
// clock: probe at 0, then after each pause), and how late the last one
// saw readiness.
func probesUntil(load time.Duration, c driver.Cadence) (n int, late time.Duration) {
	var t time.Duration
	pause := c.Initial
	for {
		n++
		if t >= load {
			return n, t - load
		}
		t += pause
		pause = c.Next(pause, t)
	}
}

func TestProbeCadence(t *testing.T) {
	def := New(nil, Options{}).cadence(driver.StartSpec{})
	tests := []struct {
		name     string
		load     time.Duration
		c        driver.Cadence
		maxProbe int
		maxLate  time.Duration
	}{
		// The cold-start case: tight probing, readiness seen within ~3 ms.
		{"ready at 2ms", 2 * time.Millisecond, def, 6, time.Millisecond},
		{"ready at 40ms", 40 * time.Millisecond, def, 20, 3 * time.Millisecond},
		// Backing off: seen at most ~25% late.
		{"ready at 2s", 2 * time.Second, def, 40, 500 * time.Millisecond},
		// The case: a 60 s model load.
		{"ready at 60s", time.Minute, def, 70, 2 * time.Second},
		{"60s, interval 5s", time.Minute, New(nil, Options{}).cadence(driver.StartSpec{HealthInterval: 5 * time.Second}), 60, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, late := probesUntil(tt.load, tt.c)
			t.Logf("%d probes, readiness seen %s late", n, late)
			if n > tt.maxProbe || late > tt.maxLate {
				t.Errorf("%d probes, %s late; want at most %d probes, %s late", n, late, tt.maxProbe, tt.maxLate)
			}
		})
	}
	// The first pauses are what they were: 200µs doubling to 3 ms.
	pause, t0 := def.Initial, time.Duration(0)
	var got []time.Duration
	for range 6 {
		got = append(got, pause)
		t0 += pause
		pause = def.Next(pause, t0)
	}
	want := []time.Duration{200 * time.Microsecond, 400 * time.Microsecond, 800 * time.Microsecond, 1600 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("first pauses %v, want %v", got, want)
		}
	}
}

func TestCadenceFromSpec(t *testing.T) {
	c := New(nil, Options{}).cadence(driver.StartSpec{HealthInterval: 2 * time.Second, HealthTimeout: 300 * time.Millisecond})
	if c.Ceiling != 2*time.Second || c.Timeout != 300*time.Millisecond {
		t.Errorf("cadence = %+v, want ceiling 2s, timeout 300ms", c)
	}
	if c := New(nil, Options{}).cadence(driver.StartSpec{}); c.Ceiling != DefaultProbeInterval || c.Timeout != DefaultProbeTimeout {
		t.Errorf("default cadence = %+v", c)
	}
}
