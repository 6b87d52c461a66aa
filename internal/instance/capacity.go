package instance

import (
	"fmt"
	"time"
)

// Capacity: what a function has, growing it toward the controller's
// desired count, keep-warm expiry beyond it, and the instance limits.

// Load reports fn's instances that can take requests now or soon: ready
// ones with their free slots, and starting ones. free is -1 when
// concurrency is unlimited and an instance is ready.
type Load struct {
	Ready, Starting, InFlight, Free int
	// Failing is set while starts are backing off after a failure.
	Failing   error
	RetryAt   time.Time
	Unlimited bool
}

// Load returns fn's current capacity picture.
func (m *Manager) Load(fn string) (Load, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return Load{}, false
	}
	return m.loadLocked(p), true
}

// loadLocked computes p's load; m.mu must be held.
func (m *Manager) loadLocked(p *pool) Load {
	var l Load
	limit := p.fn.Scaling.Concurrency
	l.Unlimited = limit == 0
	for _, in := range p.instances {
		switch in.state {
		case Starting:
			l.Starting++
		case Ready:
			l.Ready++
			l.InFlight += in.inFlight
			if limit > 0 {
				l.Free += limit - in.inFlight
			}
		}
	}
	if p.lastErr != nil && m.now().Before(p.nextStart) {
		l.Failing, l.RetryAt = p.lastErr, p.nextStart
	}
	return l
}

// Reconcile drives fn toward desired instances at now: it starts instances
// up to desired, and stops instances that have been idle for the keep-warm
// window (the spec's fixed scaling.idle_timeout) while more than desired
// are ready. Instances still starting are never stopped for idleness.
func (m *Manager) Reconcile(fn string, desired int, now time.Time) {
	m.ReconcileIdle(fn, desired, -1, -1, now)
}

// ReconcileIdle is Reconcile with the keep-warm window chosen by the caller
// (the learned policy's, keepalive.Windows.IdleHold): an idle instance is
// stopped after extra while other instances of fn remain, after last when
// it is the only one. Negative values mean the spec's idle_timeout.
func (m *Manager) ReconcileIdle(fn string, desired int, extra, last time.Duration, now time.Time) {
	m.mu.Lock()
	p := m.pools[fn]
	if p == nil {
		m.mu.Unlock()
		return
	}
	if extra < 0 {
		extra = p.fn.Scaling.IdleTimeout.D()
	}
	if last < 0 {
		last = p.fn.Scaling.IdleTimeout.D()
	}
	p.hold = extra
	ins, _ := m.growLocked(p, desired)
	ins = append(ins, m.nextRolloutLocked(p)...) // retry a failed rollout after its backoff
	var stop []*Instance
	var why []string
	l := m.loadLocked(p)
	alive := l.Ready + l.Starting
	excess := alive - max(desired, 0)
	// While a rollout runs, its starting instance is not capacity yet: the
	// outdated one it will replace must not be stopped for idleness in
	// favour of an instance that may never become ready.
	if outdated, starting := rolloutProgressLocked(p); outdated {
		excess -= starting
	}
	if p.limit >= 0 && l.Ready+l.Starting > p.limit {
		extra, last = 0, 0 // a budget cap: no keep-warm beyond it
		excess = max(excess, l.Ready+l.Starting-p.limit)
	}
	// Newest idle instances go first: load packs onto the oldest.
	for i := len(p.instances) - 1; i >= 0 && excess > 0; i-- {
		in := p.instances[i]
		idle := extra
		if alive <= 1 {
			idle = last
		}
		if in.state == Ready && in.inFlight == 0 && in.remote == 0 && !in.idleSince.IsZero() && now.Sub(in.idleSince) >= idle {
			if alive <= 1 && p.limit != 0 && !in.outdated {
				// The function goes to zero: a driver that can keep
				// this instance loaded (driver.Parker) may, for the
				// same keep-warm window again.
				in.park = last
			}
			m.setLocked(in, Stopping)
			stop = append(stop, in)
			excess--
			alive--
			why = append(why, fmt.Sprintf("idle for %s", idle))
		}
	}
	m.mu.Unlock()
	m.launch(ins)
	for i, in := range stop {
		m.stopAsync(in, why[i])
	}
}

// growLocked creates starting instances until p has want (bounded by max),
// unless starts are backing off. m.mu must be held; the caller launches them.
func (m *Manager) growLocked(p *pool, want int) ([]*Instance, error) {
	if m.closed {
		return nil, nil
	}
	want = min(want, p.fn.Scaling.Max)
	if m.opts.MaxPerFunction > 0 {
		want = min(want, m.opts.MaxPerFunction)
	}
	if p.limit >= 0 {
		want = min(want, p.limit)
	}
	l := m.loadLocked(p)
	have := l.Ready + l.Starting
	if have >= want {
		if p.limit == 0 && have == 0 {
			return nil, fmt.Errorf("%w: %s", ErrBudgetExceeded, p.limitWhy)
		}
		return nil, nil
	}
	if l.Failing != nil {
		return nil, l.Failing
	}
	if want = m.afterFailureLocked(p, want); have >= want {
		return nil, nil
	}
	room := m.roomLocked()
	if room == 0 {
		return nil, m.limitErr()
	}
	if room > 0 {
		want = min(want, have+room)
	}
	var ins []*Instance
	now := m.now()
	for ; have < want; have++ {
		ins = append(ins, m.newInstanceLocked(p, now))
	}
	return ins, nil
}

// roomLocked is how many more instances MaxTotal allows now (-1: no cap).
// Every instance that may hold a process counts, whatever its function:
// starting, ready, or stopping. m.mu must be held.
func (m *Manager) roomLocked() int {
	if m.opts.MaxTotal <= 0 {
		return -1
	}
	live := 0
	for _, in := range m.byID {
		if !in.state.over() {
			live++
		}
	}
	return max(m.opts.MaxTotal-live, 0)
}

func (m *Manager) limitErr() error {
	return fmt.Errorf("%w: %d instances live (--max-instances)", ErrInstanceLimit, m.opts.MaxTotal)
}

// Health reports fn's live (ready or starting) instances and, while starts
// back off after failures, the last start error and the next allowed try.
func (m *Manager) Health(fn string) (live int, retryAt time.Time, failing error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return 0, time.Time{}, fmt.Errorf("%w %q", ErrUnknownFunction, fn)
	}
	l := m.loadLocked(p)
	if l.Failing == nil && p.limit == 0 {
		l.Failing = fmt.Errorf("%w: %s", ErrBudgetExceeded, p.limitWhy)
	}
	if l.Failing == nil && l.Ready+l.Starting == 0 && m.roomLocked() == 0 {
		// Nothing of fn runs and nothing may start: refuse with the
		// reason rather than queue callers until their timeout.
		l.Failing, l.RetryAt = m.limitErr(), m.now().Add(time.Second)
	}
	return l.Ready + l.Starting, l.RetryAt, l.Failing
}

// Limit caps fn's instances at n below scaling.max (n < 0 lifts the cap);
// why is shown to callers refused because of it.
func (m *Manager) Limit(fn string, n int, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.pools[fn]; p != nil {
		p.limit, p.limitWhy = n, why
		if n == 0 {
			m.releaseLoaded(fn) // a budget stop ends every warm state
		}
	}
}
