package instance

import (
	"sync"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/driver"
)

// Endpoints returns fn's instances that may take a request now, oldest
// first: ready (not starting, draining or stopping), with a free slot, and
// whose process has not ended. The activator picks one by its dispatch rule
// and takes a slot with Acquire.
func (m *Manager) Endpoints(fn string) []api.Endpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return nil
	}
	limit := p.fn.Scaling.Concurrency
	var out []api.Endpoint
	for _, in := range p.instances {
		if !m.takesLocked(in, limit) {
			continue
		}
		out = append(out, api.Endpoint{ID: in.id, Addr: in.drv.Addr(), InFlight: in.inFlight,
			Concurrency: limit, ReadyAt: in.readyAt})
	}
	return out
}

// takesLocked reports whether in can take one more request; m.mu must be
// held.
func (m *Manager) takesLocked(in *Instance, limit int) bool {
	if in.state != Ready || (limit > 0 && in.inFlight >= limit) {
		return false
	}
	// Dead, and its watcher has not marked it failed yet: a request sent
	// there would fail for nothing.
	return !exited(in.drv)
}

// Acquire takes a slot on endpoint id of fn, if it can still take one (it
// may have filled, drained or died since Endpoints). release must be called
// exactly once when the request ends.
func (m *Manager) Acquire(fn, id string) (release func(), ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	in := m.byID[id]
	if p == nil || in == nil || in.fn != fn || !m.takesLocked(in, p.fn.Scaling.Concurrency) {
		return nil, false
	}
	in.inFlight++
	in.served++
	p.requests++
	if in.inFlight == 1 {
		in.idleSince = time.Time{}
		if o := m.opts.Observer; o != nil {
			o.Busy(fn, in.id, true, m.now())
		}
	}
	var once sync.Once
	return func() { once.Do(func() { m.release(in) }) }, true
}

func (m *Manager) release(in *Instance) {
	m.mu.Lock()
	in.inFlight--
	idle := in.inFlight == 0
	var stop bool
	if idle {
		now := m.now()
		in.idleSince = now
		stop = in.state == Draining
		if o := m.opts.Observer; o != nil {
			o.Busy(in.fn, in.id, false, now)
		}
	}
	_, removed := m.pools[in.fn]
	m.mu.Unlock()
	if stop {
		why := "replaced by a new version"
		if !removed {
			why = "function removed"
		}
		m.stopAsync(in, why)
	}
	m.opts.Notify(in.fn)
}

// exited reports, without waiting, whether di's process has ended.
func exited(di driver.Instance) bool {
	if di == nil {
		return false
	}
	select {
	case <-di.Done():
		return true
	default:
		return false
	}
}
