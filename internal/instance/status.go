package instance

import (
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
)

// Instances returns fn's instances, live ones first (oldest first), then
// the most recent failures.
func (m *Manager) Instances(fn string) ([]api.Instance, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return nil, false
	}
	out := make([]api.Instance, 0, len(p.instances)+len(p.failed))
	for _, in := range p.instances {
		out = append(out, m.viewLocked(p, in))
	}
	for i := len(p.failed) - 1; i >= 0; i-- {
		out = append(out, m.viewLocked(p, p.failed[i]))
	}
	return out, true
}

// Instance returns one instance by id.
func (m *Manager) Instance(id string) (api.Instance, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.byID[id]
	if in == nil {
		return api.Instance{}, false
	}
	return m.viewLocked(m.pools[in.fn], in), true
}

// viewLocked renders in; m.mu must be held (p may be nil).
func (m *Manager) viewLocked(p *pool, in *Instance) api.Instance {
	v := api.Instance{
		ID: in.id, Function: in.fn, Version: in.version, Outdated: in.outdated,
		State: in.apiState(), StartedAt: in.startedAt,
		Phases: PhaseMillis(in.startedAt, in.phases), InFlight: in.inFlight, Served: in.served,
	}
	for _, ph := range in.phases {
		v.PhaseOrder = append(v.PhaseOrder, ph.Name)
	}
	if in.drv != nil {
		v.Addr = in.drv.Addr()
	}
	if !in.readyAt.IsZero() {
		t := in.readyAt
		v.ReadyAt = &t
	}
	if in.state == Ready && in.inFlight == 0 && !in.idleSince.IsZero() {
		t := in.idleSince
		v.IdleSince = &t
		if p != nil {
			e := t.Add(p.holdFor())
			v.ExpiresAt = &e
		}
	}
	if in.exitErr != nil {
		v.ExitError = in.exitErr.Error()
		v.LastLogs = in.tail
	}
	return v
}

// PhaseMillis turns phase timestamps into milliseconds spent in each phase,
// the first measured from start.
func PhaseMillis(start time.Time, phases []driver.Phase) map[string]float64 {
	out := make(map[string]float64, len(phases))
	prev := start
	for _, ph := range phases {
		out[ph.Name] = float64(ph.At.Sub(prev).Microseconds()) / 1000
		prev = ph.At
	}
	return out
}

// Summary is fn's pool state for status displays.
type Summary struct {
	// State is one of the api.Function* states (health.go).
	State                             string
	Ready, Starting, Failed, InFlight int
	ColdStarts                        int64
	// Requests counts the slots taken on fn's instances since the
	// server started (or the function was deployed on it).
	Requests int64
	// MeanColdStart is the mean start-to-ready time of those starts.
	MeanColdStart time.Duration
	LastError     string
	MinNow        int
}

// Summary returns fn's pool summary at now.
func (m *Manager) Summary(fn string, now time.Time) (Summary, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return Summary{}, false
	}
	l := m.loadLocked(p)
	s := Summary{Ready: l.Ready, Starting: l.Starting, Failed: len(p.failed), InFlight: l.InFlight,
		ColdStarts: p.coldStarts, MinNow: p.fn.Scaling.EffectiveMin(now),
		State: stateLocked(p), Requests: p.requests}
	if p.coldStarts > 0 {
		s.MeanColdStart = p.startSum / time.Duration(p.coldStarts)
	}
	if p.lastErr != nil {
		s.LastError = p.lastErr.Error()
	}
	return s, true
}

// CountByState counts live instances of all functions by state.
func (m *Manager) CountByState() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{api.StateStarting: 0, api.StateReady: 0, api.StateStopping: 0, api.StateFailed: 0}
	for _, p := range m.pools {
		for _, in := range p.instances {
			out[in.apiState()]++
		}
		out[api.StateFailed] += len(p.failed)
	}
	return out
}

// Names lists the functions the manager runs.
func (m *Manager) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.pools))
	for n := range m.pools {
		out = append(out, n)
	}
	return out
}
