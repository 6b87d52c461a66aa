package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// HealthCheck is how readiness is probed. In a spec it is either the path
// alone (`health: /health`) or `{path, interval, timeout}`.
type HealthCheck struct {
	// Path is probed with GET until it answers 2xx.
	Path string `json:"path,omitempty"`
	// Interval caps the pause between probes: probing starts tight
	// (sub-millisecond) and backs off to it (0: the runtime's default,
	// 2s for the process runtime).
	Interval Duration `json:"interval,omitempty"`
	// Timeout bounds one probe (0: the runtime's default, 1s).
	Timeout Duration `json:"timeout,omitempty"`
}

// Bounds of the health probe's knobs.
const (
	MinHealthInterval = 10 * time.Millisecond
	MaxHealthInterval = time.Minute
	MinHealthTimeout  = 10 * time.Millisecond
	MaxHealthTimeout  = time.Minute
)

// UnmarshalJSON accepts a path string or an object; an object's unknown
// fields are refused, like the spec's own.
func (h *HealthCheck) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*h = HealthCheck{}
		return json.Unmarshal(b, &h.Path)
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("health: want a path such as /health or {path, interval, timeout}, got %s", b)
	}
	type plain HealthCheck
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	*h = HealthCheck(p)
	return nil
}

// MarshalJSON writes the short form when only the path is set, so a spec
// deployed as `health: /health` reads back the same.
func (h HealthCheck) MarshalJSON() ([]byte, error) {
	if h.Interval == 0 && h.Timeout == 0 {
		return json.Marshal(h.Path)
	}
	type plain HealthCheck
	return json.Marshal(plain(h))
}

func validateHealth(h HealthCheck, add func(field, format string, args ...any)) {
	if !pathRE.MatchString(h.Path) {
		add("health", "must be an absolute path such as /health (got %q)", h.Path)
	}
	if d := h.Interval.D(); d != 0 && (d < MinHealthInterval || d > MaxHealthInterval) {
		add("health.interval", "must be between %s and %s (got %s)", MinHealthInterval, MaxHealthInterval, d)
	}
	if d := h.Timeout.D(); d != 0 && (d < MinHealthTimeout || d > MaxHealthTimeout) {
		add("health.timeout", "must be between %s and %s (got %s)", MinHealthTimeout, MaxHealthTimeout, d)
	}
}
