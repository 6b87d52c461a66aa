package instance

import (
	"sync/atomic"
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
	return m.acquireLocked(fn, id)
}

// AcquirePicked is Endpoints, pick and Acquire under one hold of the
// manager's lock: the activator's dispatch of a warm call (activator.
// Picker). pick chooses among fn's endpoints that can take a request now,
// oldest first; its slice is only valid during the call.
func (m *Manager) AcquirePicked(fn string, pick func([]api.Endpoint) (api.Endpoint, bool)) (e api.Endpoint, release func(), ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[fn]
	if p == nil {
		return api.Endpoint{}, nil, false
	}
	limit := p.fn.Scaling.Concurrency
	eps := m.scratch[:0]
	for _, in := range p.instances {
		if m.takesLocked(in, limit) {
			eps = append(eps, api.Endpoint{ID: in.id, Addr: in.drv.Addr(), InFlight: in.inFlight,
				Concurrency: limit, ReadyAt: in.readyAt})
		}
	}
	m.scratch = eps[:0]
	if e, ok = pick(eps); !ok {
		return api.Endpoint{}, nil, false
	}
	if release, ok = m.acquireLocked(fn, e.ID); !ok {
		return api.Endpoint{}, nil, false // not reached: the pick came from what takes a request
	}
	return e, release, true
}

// acquireLocked is Acquire with m.mu held.
func (m *Manager) acquireLocked(fn, id string) (release func(), ok bool) {
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
	s := &slot{m: m, in: in}
	return s.release, true
}

// slot is one request's hold on an instance; release gives it back once,
// however often it is called.
type slot struct {
	m    *Manager
	in   *Instance
	done atomic.Bool
}

func (s *slot) release() {
	if s.done.CompareAndSwap(false, true) {
		s.m.release(s.in)
	}
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
