package spec

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a standard five-field cron expression ("0 9 * * 1-5") or a
// descriptor such as "@daily".
func ParseCron(expr string) (cron.Schedule, error) {
	if expr == "" {
		return nil, fmt.Errorf("required (five-field cron such as \"0 9 * * 1-5\")")
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid cron %q: %w", expr, err)
	}
	return s, nil
}

// EffectiveMin is Min raised by every schedule window active at now. A window
// is active from each firing of its cron until Duration later. Times are
// interpreted in now's location.
func (s Scaling) EffectiveMin(now time.Time) int {
	m := s.Min
	for _, w := range s.Schedule {
		if w.Min <= m {
			continue
		}
		sched, err := ParseCron(w.Cron)
		if err != nil {
			continue // Validate rejects these; a stored spec cannot carry one
		}
		// The first firing after now-Duration is at or before now exactly
		// when a window that covers now has started.
		if fire := sched.Next(now.Add(-w.Duration.D())); !fire.After(now) {
			m = w.Min
		}
	}
	return min(m, s.Max)
}
