package instance

import (
	"time"

	"github.com/ember-run/ember/internal/api"
)

// Health a user can see: a function's state, its rollout, and the rule
// that a failed start is retried only when something asks for it.

// stateLocked sums p up as one of the api.Function* states. A failed
// start of the current version with none of it ready is "failing", even
// while an older version still serves: the last error says why. m.mu must
// be held.
func stateLocked(p *pool) string {
	var ready, readyCur, starting int
	outdated := false
	for _, in := range p.instances {
		switch in.state {
		case Ready:
			ready++
			if in.version == p.version {
				readyCur++
			}
			outdated = outdated || in.outdated
		case Starting:
			starting++
		}
	}
	switch {
	case p.failures > 0 && readyCur == 0:
		return api.FunctionFailing
	case outdated:
		return api.FunctionUpdating
	case ready > 0:
		return api.FunctionReady
	case starting > 0:
		return api.FunctionStarting
	}
	return api.FunctionScaledToZero
}

// Demanded records that requests of fn wait for an instance at now (the
// controller calls it on an activator's poke, before it reconciles).
func (m *Manager) Demanded(fn string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.pools[fn]; p != nil {
		p.demandAt = now
	}
}

// afterFailureLocked bounds growth to want after failed starts: the
// autoscaler keeps a function's desired count up for its idle timeout
// after traffic, and without this rule a function that failed once would
// start (and fail) again after every backoff for that whole window with
// nobody asking. After a failure only scaling.min, or requests that
// waited since (Demanded), start another. m.mu must be held.
func (m *Manager) afterFailureLocked(p *pool, want int) int {
	if p.failures == 0 || p.demandAt.After(p.lastErrAt) {
		return want
	}
	return min(want, p.fn.Scaling.EffectiveMin(m.now()))
}

// Prove starts one instance of fn's version if none of it is ready or
// starting, so that a deploy that waits (`ember deploy --wait`) learns
// whether the version starts even at min 0. The instance is an ordinary
// one: metered, and stopped once idle for the idle timeout like any
// other. Nothing starts while starts back off, under a budget that holds
// fn at zero, or at the server's instance limit; Rollout then reports why.
func (m *Manager) Prove(fn string, version int64) {
	m.mu.Lock()
	p := m.pools[fn]
	if p == nil || p.version != version || m.closed || p.limit == 0 || m.now().Before(p.nextStart) || m.roomLocked() == 0 {
		m.mu.Unlock()
		return
	}
	for _, in := range p.instances {
		if in.version == version && (in.state == Ready || in.state == Starting) {
			m.mu.Unlock()
			return
		}
	}
	in := m.newInstanceLocked(p, m.now())
	m.mu.Unlock()
	m.launch([]*Instance{in})
}

// Rollout reports how far fn's current version is from complete: at
// least max(1, min now) instances of it ready and no older one serving.
// It has failed once a start of the version failed while none of it is
// ready (starts go on with backoff; a new deploy resets it).
func (m *Manager) Rollout(fn string) (api.Rollout, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return api.Rollout{}, false
	}
	r := api.Rollout{Function: fn, Version: p.version, Want: max(1, p.fn.Scaling.EffectiveMin(m.now()))}
	for _, in := range p.instances {
		switch {
		case in.outdated && in.state == Ready:
			r.Outdated++
		case in.version == p.version && in.state == Ready:
			r.Ready++
		case in.version == p.version && in.state == Starting:
			r.Starting++
		}
	}
	switch {
	case r.Ready >= r.Want && r.Outdated == 0:
		r.State = api.RolloutComplete
	case p.failures > 0 && r.Ready == 0:
		r.State = api.RolloutFailed
		if p.lastErr != nil {
			r.Error = p.lastErr.Error()
		}
		if n := len(p.failed); n > 0 && p.failed[n-1].version == p.version {
			r.LastLogs = p.failed[n-1].tail
		}
	default:
		r.State = api.RolloutProgressing
	}
	return r, true
}
